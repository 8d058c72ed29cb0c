package command

import (
	"context"
	"errors"
	"time"

	"github.com/sauna-io/sauna/observer/backoff"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
)

// settle records the final outcome in the ledger, when there is one, and
// reports it, once the previous record of the key has its own recorded
// (conclude). It returns false when the run had to stop first, or the
// previous record ended unrecorded.
//
// The command ran either way. After a previous record that ended
// unrecorded the claim is released: that record runs again, and this one
// after it, so that the key's last effect stays its latest command's. When
// this run must stop before it knows how the previous record ends, its
// claim is kept, as record keeps it: releasing it would let the shard's
// next owner claim and run the command again at once. The Batcher then
// learns how the previous record ends, and Finishes or releases this one
// as this run would have (finishLate).
func (c *run) settle(reason string) bool {
	if c.Ledger != nil && c.fast {
		return c.settleDone(reason)
	}
	switch c.conclude() {
	case priorUnrecorded:
		c.release()
		return false
	case priorUnknown:
		if !c.finishLate(c.final(reason), c.turn.Prior) {
			c.release()
		}
		return false
	}
	if c.Ledger != nil {
		if !c.record(reason) {
			return false
		}
		c.recorded = true
	}
	c.Settled(c.out)
	return true
}

// settleDone settles a run made without a claim: it tells the source the
// key is released, hands its outcome to the Batcher once the previous
// record of the key ended recorded or queued its own there (behind it:
// a key's outcomes are written in order, several to a write when they
// wait), waits until it is written, and then until the previous record
// ended with its outcome recorded. It returns false when the previous
// record ended unrecorded (this one runs again after it, as its record is
// read again), or the run must stop first (the observer's hard stop, a
// lost lease).
//
// The command ran, and no claim keeps the shard's next owner from running
// it again: only its outcome does. So a run that must stop before it knows
// its outcome recorded hands it to the Batcher (doneLate), which outlives
// the run: it records it, where no item holds its id, once the previous
// record's outcome is recorded (never where that one is not, as after one
// that ended unrecorded), or learns whether the write it was in recorded
// it, and tells the next record of the key (Mark.handOff). A lost answer
// or a stop leaves it unrecorded: at least once, never lost.
func (c *run) settleDone(reason string) bool {
	c.releaseKey()
	after, end := c.awaitPrior(true)
	d := c.done(reason)
	switch end {
	case priorUnrecorded:
		return false
	case priorUnknown:
		c.doneLate(lateDone{done: d, prior: c.turn.Prior})
		return false
	}
	bt, err := c.writeDone(d, after)
	var prior *Mark
	if after != nil {
		// Written after the previous record's outcome: that run ends
		// soon, and this one counts as recorded only if it did.
		prior = c.turn.Prior
	}
	if err != nil {
		c.stoppedBecause(ErrOutcomeNotRecorded, err)
		c.Log.Warn("the command ran but its outcome is not known recorded as its run ends; the record is read again, and the outcome may still be recorded where no item holds its id",
			"seq", c.out.Sequence, "command_id", c.out.CommandID, "err", err)
		c.doneLate(lateDone{done: d, queued: bt, prior: prior})
		return false
	}
	if prior != nil {
		switch _, end := c.awaitPrior(false); end {
		case priorUnrecorded:
			return false
		case priorUnknown:
			c.doneLate(lateDone{done: d, written: true, prior: prior})
			return false
		}
	}
	c.recorded = true
	c.Settled(c.out)
	return true
}

// done is the outcome of a run made without a claim, as the ledger
// records it.
func (c *run) done(reason string) outcomes.Done {
	// The outcome is the last attempt's: it settles as that attempt ends.
	last := c.last
	if last.IsZero() {
		last = time.Now()
	}
	return outcomes.Done{
		Claim: outcomes.Claim{
			CommandID: c.cmd.ID, Digest: c.out.Digest, Schema: c.letter.CommandSchema,
			Shard: c.Shard, Sequence: c.out.Sequence, Responder: c.cmd.Module,
		},
		Final: outcomes.Final{Verdict: c.out.Verdict, Attempts: c.out.Attempts, FirstAttempt: c.first, LastAttempt: last, Reason: reason},
	}
}

// writeDone has the Batcher write d, behind after, and waits until it is
// written; an error when it could not be, or the run must stop first. bt
// is the batch d is in, also when the run wrote it alone and lost its
// lease meanwhile (nil: written by the run, or not at all).
func (c *run) writeDone(d outcomes.Done, after *batch) (bt *batch, err error) {
	bt, alone := c.Batcher.add(d, c.letter.PartitionKey, c.Lease, c.counted, c.HardOrLost != nil, after)
	c.counted = false
	if alone {
		// Written by this run, in no batch: the next record of the key
		// waits for this one to end rather than queue behind it.
		return c.Batcher.writeAlone(c.HardOrLost, d, c.Lease)
	}
	if c.turn.Mark != nil {
		c.turn.Mark.queue(bt)
	}
	_, err = bt.wait(c.ctx, c.Lease.Lost)
	return bt, err
}

// doneLate hands the outcome of this run, made without a claim, to the
// Batcher (Batcher.doneLate), which outlives the run, and tells the next
// record of the key to wait for it there (Mark.handOff). The Batcher
// waits for it no longer than a claim's timeout from now.
func (c *run) doneLate(d lateDone) {
	d.until = time.Now().Add(c.claimTimeout())
	late := c.Batcher.doneLate(d)
	if late != nil && c.turn.Mark != nil {
		c.turn.Mark.handOff(late)
	}
}

// giveUp ends a command that cannot succeed (reason is
// verdict.FailedPermanently or verdict.RetryBudgetExhausted): on the
// dead-letter stream when there is one, else as a logged permanent failure.
func (c *run) giveUp(reason string, err error) bool {
	c.out.Err = err
	l := &c.letter
	l.Reason, l.Error = reason, err.Error()
	l.Attempts, l.FirstAttempt, l.LastAttempt = c.out.Attempts, c.first, time.Now()
	if c.DeadLetters == nil {
		c.out.Verdict = verdict.Failed
		c.Log.Error("command failed permanently", "seq", c.out.Sequence, "command_id", c.out.CommandID, "responder", c.out.Responder,
			"attempts", c.out.Attempts, "err", err)
		return c.settle(l.Reason + ": " + l.Error)
	}
	if !c.putDeadLetter(c.ctx) {
		c.release()
		return false
	}
	c.out.Verdict = verdict.DeadLettered
	c.Log.Warn("command dead-lettered", "seq", c.out.Sequence, "command_id", c.out.CommandID, "responder", c.out.Responder,
		"reason", l.Reason, "attempts", c.out.Attempts, "dead_letter_stream", c.DeadLetterStream, "err", err)
	return c.settle(l.Reason + ": " + l.Error)
}

// reject ends a record that can never run as sent, before any claim:
// dead-lettered when a dead-letter stream is configured, and recorded in the
// ledger when its commandId is known (so that it can be looked up and
// searched). It returns false, leaving the record unfinished, when it had
// to stop before both were written.
func (c *run) reject(err error) bool {
	if !c.rejectDeadLetter(err) || c.conclude() != priorRecorded {
		return false
	}
	if c.Ledger != nil && c.out.CommandID != "" {
		ctx, cancel := c.Lease.Context(c.Hard)
		defer cancel()
		r := outcomes.Rejection{CommandID: c.out.CommandID, Shard: c.out.Shard, Sequence: c.out.Sequence,
			Responder: c.out.Responder, Schema: c.letter.CommandSchema, Reason: err.Error()}
		for attempt := 1; ; attempt++ {
			rerr := c.Ledger.Reject(ctx, r)
			if rerr == nil {
				break
			}
			c.Log.Warn("recording the rejection failed; retrying", "command_id", c.out.CommandID, "err", rerr)
			if !c.Lease.Sleep(ctx, backoff.Policy{First: firstBackoff, Max: 5 * time.Second}.Delay(attempt)) {
				return false
			}
		}
	}
	c.Settled(c.out)
	return true
}

// rejectDeadLetter marks the outcome rejected, logs it, and puts the dead
// letter when a dead-letter stream is configured; false when that put could
// not be made before stopping.
func (c *run) rejectDeadLetter(err error) bool {
	var rej *responders.RejectError
	if errors.As(err, &rej) {
		c.out.Reason = rej.Reason
		if c.out.CommandID == "" {
			c.out.CommandID = rej.CommandID
		}
	}
	c.out.Verdict, c.out.Err = verdict.Rejected, err
	c.Log.Warn("command rejected", "seq", c.out.Sequence, "command_id", c.out.CommandID, "reason", c.out.Reason, "err", err)
	l := &c.letter
	l.Reason, l.Error = verdict.RejectedBecause(c.out.Reason), err.Error()
	if l.CommandID == "" {
		l.CommandID = c.out.CommandID
	}
	if c.DeadLetters == nil {
		return true
	}
	ctx, cancel := c.Lease.Context(c.Hard)
	defer cancel()
	return c.putDeadLetter(ctx)
}

func (c *run) putDeadLetter(ctx context.Context) bool {
	l := c.letter
	l.DeadLetteredAt = time.Now()
	if err := c.DeadLetters.Put(ctx, l); err != nil {
		c.stoppedBecause(ErrDeadLetterNotWritten, err)
		c.Log.Error("writing to the dead-letter stream failed; the record stays unfinished", "seq", l.SequenceNumber, "err", err)
		return false
	}
	return true
}
