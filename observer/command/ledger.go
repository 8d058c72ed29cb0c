package command

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sauna-io/sauna/observer/backoff"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/responders/fence"
)

type claimResult int

// claimRetryMax is the longest wait between tries of a claim (claim).
const claimRetryMax = 5 * time.Second

const (
	claimHeld claimResult = iota
	claimDuplicate
	claimStopped
)

// claim takes the command's claim in the ledger, waiting while another
// worker holds a live one. The wait is tried again at least every
// claimRetryMax: a claim held elsewhere usually ends with that worker's
// outcome landing (its late Finish once DynamoDB answers again, after a
// lost lease), and the command's key, and its shard's checkpoint, wait
// for this one until it is found done.
func (c *run) claim() claimResult {
	for attempt := 1; ; attempt++ {
		at := time.Now()
		err := c.Ledger.Claim(c.ctx, outcomes.Claim{
			CommandID: c.cmd.ID, Digest: c.out.Digest, Schema: c.letter.CommandSchema,
			Shard: c.Shard, Sequence: c.out.Sequence, Responder: c.cmd.Module,
		})
		switch {
		case err == nil:
			c.claimed, c.claimedAt = true, at
			return claimHeld
		case errors.Is(err, outcomes.ErrDuplicate):
			return claimDuplicate
		case errors.Is(err, outcomes.ErrClaimedElsewhere):
			// Once at INFO: a claim can be held elsewhere for its whole
			// lifetime (2 minutes by default), tried again every few seconds.
			level := slog.LevelDebug
			if attempt == 1 {
				level = slog.LevelInfo
			}
			c.Log.Log(c.ctx, level, "command claimed by another worker; waiting", "seq", c.out.Sequence, "command_id", c.cmd.ID, "attempt", attempt)
		default:
			c.Log.Warn("claiming the command failed; retrying", "seq", c.out.Sequence, "command_id", c.cmd.ID, "err", err)
		}
		if !c.Lease.Sleep(c.Intake, backoff.Policy{First: firstBackoff, Floor: time.Second, Max: claimRetryMax}.Delay(attempt)) {
			return claimStopped
		}
	}
}

// renew extends the claim before a retry, and before a first attempt when
// the claim is half way to its timeout. It returns false when the run must
// stop, having released the claim where another worker may take it.
func (c *run) renew(attempt int) bool {
	if !c.claimed || attempt == 1 && time.Since(c.claimedAt) <= c.ClaimTimeout/2 {
		return true
	}
	extending := time.Now()
	err := c.Ledger.Extend(c.ctx, c.id)
	switch {
	case err == nil:
		c.claimedAt = extending
	case errors.Is(err, outcomes.ErrClaimedElsewhere):
		c.stoppedBecause(ErrClaimTakenOver, err)
		c.Log.Warn("command claimed by another worker; this worker stops the shard", "command_id", c.cmd.ID, "err", err)
		return false
	case time.Since(c.claimedAt) >= c.ClaimTimeout:
		// The claim may have expired and been taken: running the command
		// now could run it twice.
		c.stoppedBecause(ErrClaimExpired, err)
		c.Log.Warn("cannot renew an expired command claim; leaving the command to be read again", "command_id", c.cmd.ID, "err", err)
		c.release()
		return false
	default:
		c.Log.Warn("renewing the command claim failed; trying anyway", "command_id", c.cmd.ID, "err", err)
	}
	return true
}

// claimEnd is when this worker must stop sending under its claim: the
// fence margin before the claim runs out by its own clock.
func (c *run) claimEnd() time.Time {
	timeout := c.claimTimeout()
	return c.claimedAt.Add(timeout - fence.Margin(timeout))
}

// claimTimeout is how long a claim holds without an extension.
func (c *run) claimTimeout() time.Duration {
	if c.ClaimTimeout <= 0 {
		return outcomes.DefaultClaimTimeout // as the ledger has it
	}
	return c.ClaimTimeout
}

// release gives the claim up, best effort and outside the run's context
// (which may be cancelled): another worker then need not wait for the claim
// to time out.
func (c *run) release() {
	if !c.claimed {
		return
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(c.ctx), 5*time.Second)
	defer rcancel()
	_ = c.Ledger.Release(rctx, c.id)
}

// claimExpiry is when the claim runs out by this worker's clock: the
// ledger's expiry is at least this late (claimedAt is read before the write).
func (c *run) claimExpiry() time.Time { return c.claimedAt.Add(c.claimTimeout()) }

// record records the final outcome in the ledger, retrying: the claim must
// not be left to expire, or the command would run again. It returns false
// when the run had to stop first (a lost lease, the hard stop), or found
// its claim taken over (the command runs again elsewhere). The command
// ran all the same, so the claim is not released, which would let the
// shard's next owner claim it and run it again at once: the Batcher, which
// outlives the run, goes on trying Finish (finishLate). Finish is fenced on
// this worker's claim token, so it lands only while no other worker has
// taken the claim over, which keeps it off the next owner's claim or
// outcome. Only without a Batcher to hand it to is the claim released.
func (c *run) record(reason string) bool {
	f := c.final(reason)
	for attempt := 1; ; attempt++ {
		err := c.Ledger.Finish(c.ctx, c.id, f)
		if err == nil {
			return true
		}
		if errors.Is(err, outcomes.ErrClaimedElsewhere) {
			// Another worker took the claim over (only possible once it
			// expired: this one was frozen, or cut off from the ledger)
			// and runs the command again, recording its own outcome. The
			// run ends unrecorded, as a late Finish that finds the claim
			// taken over does (retryFinish), so that the next record of
			// the key is not recorded before that run but runs again
			// after it; the claim is no longer this worker's to release.
			// A retry after an earlier try landed with its answer lost
			// is not this: Finish finds its own outcome and returns nil.
			c.stoppedBecause(ErrClaimTakenOver, err)
			c.Log.Warn("command claim taken over before its outcome was recorded; this worker stops the shard", "command_id", c.out.CommandID, "err", err)
			return false
		}
		c.Log.Warn("recording the command outcome failed; retrying", "command_id", c.out.CommandID, "err", err)
		if !c.Lease.Sleep(c.Hard, backoff.Policy{First: firstBackoff, Max: 5 * time.Second}.Delay(attempt)) {
			// The previous record of the key ended recorded (conclude):
			// nothing to wait for.
			if !c.finishLate(f, nil) {
				c.release()
			}
			return false
		}
	}
}

// final is the outcome the ledger records.
func (c *run) final(reason string) outcomes.Final {
	return outcomes.Final{Verdict: c.out.Verdict, Attempts: c.out.Attempts, FirstAttempt: c.first, LastAttempt: time.Now(), Reason: reason}
}

// finishLate hands the claimed run's Finish of f to the Batcher, which
// outlives the run: after prior's outcome is known (nil: nothing to wait
// for), it Finishes f or releases the claim (Batcher.finishLate). The run's
// own Mark tells the next record of the key to wait for that. It returns
// false, handing nothing, when the run holds no claim or there is no
// Batcher to hand it to, or it stopped: no one can try again then, and the
// caller lets the claim go for the next owner to run the command again at
// once rather than after the claim expires. At least once, never lost.
func (c *run) finishLate(f outcomes.Final, prior *Mark) bool {
	if !c.claimed || c.Batcher == nil {
		return false
	}
	late := c.Batcher.finishLate(lateFinish{
		ledger: c.Ledger, id: c.id, final: f, expires: c.claimExpiry(), prior: prior,
		shard: c.Shard, seq: c.out.Sequence,
	})
	if late == nil {
		return false
	}
	if c.turn.Mark != nil {
		c.turn.Mark.handOff(late)
	}
	return true
}
