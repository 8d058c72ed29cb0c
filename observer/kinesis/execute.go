package kinesis

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sauna-io/sauna/observer/backoff"
	"github.com/sauna-io/sauna/observer/deadletter"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/responders/delivery"
	"github.com/sauna-io/sauna/responders/fence"
)

// Result is the final outcome of one record. The values label metrics.
type Result string

// Results.
const (
	// Executed: the responder did it.
	Executed Result = "executed"
	// Rejected: the record can never run as sent (Reason says why).
	Rejected Result = "rejected"
	// Duplicate: a redelivered command that already ran; skipped.
	Duplicate Result = "duplicate"
	// DeadLettered: failed permanently or ran out of retry budget, and went
	// to the dead-letter stream.
	DeadLettered Result = "dead_lettered"
	// Failed: failed permanently with no dead-letter stream configured; the
	// outcome table and the log keep it.
	Failed Result = "failed"
)

// Outcome is the final result of one record.
type Outcome struct {
	Observer  string
	Shard     string
	Sequence  string
	CommandID string
	// Digest identifies what the command asks (responders.Digest); set
	// when the outcomes table is on.
	Digest string
	// Responder is the module serving the command, when known.
	Responder string
	Result    Result
	// Reason is set for rejections.
	Reason   responders.Reason
	Err      error
	Attempts int
	// Latency is the time spent in responder calls.
	Latency time.Duration
}

// Claims is the idempotency table (outcomes.Table).
type Claims interface {
	Claim(ctx context.Context, c outcomes.Claim) error
	Extend(ctx context.Context, id outcomes.Identity) error
	Finish(ctx context.Context, id outcomes.Identity, f outcomes.Final) error
	Release(ctx context.Context, id outcomes.Identity) error
	Reject(ctx context.Context, r outcomes.Rejection) error
}

// DeadLetters is the dead-letter stream (deadletter.Writer).
type DeadLetters interface {
	Put(ctx context.Context, l deadletter.Letter) error
}

// execute runs one record to a final outcome and reports it. It returns
// false when it had to stop first (shutdown, lost lease); the record then
// stays uncheckpointed.
func (p *shardProcessor) execute(r *types.Record) bool {
	out := Outcome{Observer: p.o.cfg.ID, Shard: p.shardID, Sequence: aws.ToString(r.SequenceNumber)}
	letter := deadletter.Letter{
		Observer: p.o.cfg.ID, Stream: p.o.cfg.StreamName, Shard: p.shardID,
		SequenceNumber: out.Sequence, PartitionKey: aws.ToString(r.PartitionKey), Record: r.Data,
	}
	if orig, why, ok := IsDefusedAggregate(r.Data); ok {
		letter.Record = orig
		return p.reject(out, letter, &responders.RejectError{Reason: responders.ReasonCorruptAggregate, Err: errors.New(why)})
	}
	cmd, err := responders.Decode(r.Data)
	if err == nil {
		out.CommandID, out.Responder = cmd.ID, cmd.Module
		letter.CommandID, letter.CommandSchema, letter.Responder = cmd.ID, cmd.Schema.String(), cmd.Module
		// Expired or unroutable commands are rejected before anything is
		// claimed: nothing would run them.
		_, err = p.o.dispatch.Resolve(cmd)
	}
	if err == nil && p.o.claims != nil {
		// Only the outcomes table needs it: a commandId names a command
		// together with what it asks.
		if out.Digest, err = cmd.Digest(); err != nil {
			err = &responders.RejectError{Reason: responders.ReasonInvalidData, CommandID: cmd.ID, Err: err}
		}
	}
	if err != nil {
		return p.reject(out, letter, err)
	}
	id := outcomes.Identity{CommandID: cmd.ID, Digest: out.Digest}

	// A call that has started is let finish even if the lease is lost
	// meanwhile: its claim still fences the command, and cutting it short
	// after the vendor acted would leave no outcome and run it again.
	ctx, cancel := context.WithCancel(p.o.hard)
	defer cancel()
	claimed := false
	// claimedAt is when the claim was last taken or extended, read before
	// the write: the table's expiry is at least ClaimTimeout after it.
	var claimedAt time.Time
	if c := p.o.claims; c != nil {
		dup, at, ok := p.claim(ctx, cmd, out)
		if !ok {
			return false
		}
		if dup {
			out.Result = Duplicate
			p.log.Info("command already executed; skipped", "seq", out.Sequence, "command_id", cmd.ID, "responder", cmd.Module)
			p.o.report(out)
			return true
		}
		claimed, claimedAt = true, at
	}
	release := func() {
		if claimed {
			// Best effort, outside the cancelled context: another worker then
			// need not wait for the claim to time out.
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer rcancel()
			_ = p.o.claims.Release(rctx, id)
		}
	}

	first := time.Now()
	budgetSpent := false
	for attempt := 1; ; attempt++ {
		// No new side effect once the shard may belong to another worker: a
		// worker that was frozen wakes before any renewal tells it so. The
		// end of intake stops retries but not a first attempt: every
		// admitted record runs, so no later record that ran is left behind
		// the final checkpoint to be run again.
		if !p.awaitLease() || ctx.Err() != nil || attempt > 1 && p.stopping(ctx) {
			release()
			return false
		}
		stale := time.Since(claimedAt) > p.o.cfg.Idempotency.ClaimTimeout/2
		if claimed && (attempt > 1 || stale) {
			extending := time.Now()
			if err := p.o.claims.Extend(ctx, id); err != nil {
				if errors.Is(err, outcomes.ErrClaimedElsewhere) {
					p.log.Warn("command claimed by another worker; this worker stops the shard", "command_id", cmd.ID, "err", err)
					return false
				}
				if time.Since(claimedAt) >= p.o.cfg.Idempotency.ClaimTimeout {
					// The claim may have expired and been taken: running the
					// command now could run it twice.
					p.log.Warn("cannot renew an expired command claim; leaving the command to be read again", "command_id", cmd.ID, "err", err)
					release()
					return false
				}
				p.log.Warn("renewing the command claim failed; trying anyway", "command_id", cmd.ID, "err", err)
			} else {
				claimedAt = extending
			}
		}
		out.Attempts = attempt
		actx := p.fence(ctx, claimed, claimedAt)
		start := time.Now()
		err := fence.Check(actx)
		if err == nil {
			_, err = p.o.dispatch.Dispatch(actx, cmd)
		}
		took := time.Since(start)
		out.Latency += took
		verdict, after := responders.Classify(err)
		p.o.countAttempt(cmd.Module, verdict, took)
		if verdict == responders.Retry && p.stopping(ctx) {
			release()
			return false
		}
		switch verdict {
		case responders.Done:
			out.Result = Executed
			// Asked first: the arguments cost allocations even when the
			// line is dropped, on the path every command takes.
			if p.log.Enabled(ctx, slog.LevelDebug) {
				p.log.Debug("command executed", "seq", out.Sequence, "command_id", cmd.ID, "responder", cmd.Module, "attempts", attempt)
			}
			return p.settle(ctx, out, first, "", release)
		case responders.Fail:
			var rej *responders.RejectError
			if errors.As(err, &rej) {
				// The TTL passed or the responder config went away while
				// retrying: the command is rejected after all, and its
				// claim ends with that outcome.
				if !p.rejectDeadLetter(&out, &letter, err) {
					release()
					return false
				}
				return p.settle(ctx, out, first, err.Error(), release)
			}
			out.Err = err
			letter.Reason, letter.Error = "failed_permanently", err.Error()
			return p.deadLetterOrFail(ctx, out, letter, first, release)
		}
		if p.o.cfg.RetryBudget > 0 && time.Since(first) >= p.o.cfg.RetryBudget {
			if p.o.deadLetters != nil {
				out.Err = err
				letter.Reason, letter.Error = "retry_budget_exhausted", err.Error()
				return p.deadLetterOrFail(ctx, out, letter, first, release)
			}
			if !budgetSpent {
				budgetSpent = true
				p.log.Error("retry budget exhausted and no dead-letter stream configured; retrying until the responder recovers",
					"seq", out.Sequence, "command_id", cmd.ID, "responder", cmd.Module, "budget", p.o.cfg.RetryBudget)
			}
		}
		after = min(after, maxResponderDelay)
		if left := p.o.cfg.RetryBudget - time.Since(first); p.o.deadLetters != nil && p.o.cfg.RetryBudget > 0 && after >= left {
			// The responder may not be called again before the budget ends:
			// wait out what is left of it, then dead-letter without a call
			// the vendor asked not to get.
			p.log.Warn("command failed; the responder's delay outlasts the retry budget", "seq", out.Sequence, "command_id", cmd.ID,
				"responder", cmd.Module, "attempt", attempt, "retry_in", after.Round(time.Millisecond), "budget_left", left.Round(time.Millisecond), "err", err)
			if !p.sleep(p.o.intake, left) {
				release()
				return false
			}
			out.Err = err
			letter.Reason, letter.Error = "retry_budget_exhausted", err.Error()
			return p.deadLetterOrFail(ctx, out, letter, first, release)
		}
		delay := backoff.Policy{First: firstBackoff, Floor: after, Max: 30 * time.Second}.Delay(attempt)
		p.log.Warn("command failed; retrying", "seq", out.Sequence, "command_id", cmd.ID, "responder", cmd.Module,
			"attempt", attempt, "retry_in", delay.Round(time.Millisecond), "err", err)
		if !p.sleep(p.o.intake, delay) {
			release()
			return false
		}
	}
}

// stopping reports whether the observer is stopping or the lease is lost.
func (p *shardProcessor) stopping(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	case <-p.o.intake.Done():
		return true
	case <-p.lost:
		return true
	default:
		return false
	}
}

// fence returns ctx fenced at the moment this worker must stop starting
// side effects for the command: fenceMargin before its shard lease runs out
// by its own clock (renewals move that on while a call waits) or before its
// command claim does, whichever comes first.
func (p *shardProcessor) fence(ctx context.Context, claimed bool, claimedAt time.Time) context.Context {
	var claimEnd time.Time
	if claimed {
		timeout := p.o.cfg.Idempotency.ClaimTimeout
		if timeout <= 0 {
			timeout = outcomes.DefaultClaimTimeout // as the table has it
		}
		claimEnd = claimedAt.Add(timeout - fenceMargin(timeout))
	}
	return fence.With(ctx, func() time.Time {
		until := p.leaseFence()
		if claimed && claimEnd.Before(until) {
			until = claimEnd
		}
		return until
	})
}

// leaseFence is fenceMargin before the shard lease runs out by this
// worker's clock; zero when the lease is not held.
func (p *shardProcessor) leaseFence() time.Time {
	until := p.o.leaseUntil(p.shardID)
	if until.IsZero() {
		return until
	}
	return until.Add(-fenceMargin(p.o.cfg.LeaseDuration))
}

// awaitLease waits while the shard lease is past its fence by this worker's
// clock but not known lost: a renewal that comes late (a loaded machine, a
// slow DynamoDB) moves it on, and the worker carries on instead of giving
// up the shard. It returns false once the lease is lost or the observer
// stops; the KCL ends a consumer whose renewal fails, so the wait is bounded.
func (p *shardProcessor) awaitLease() bool {
	for attempt := 1; !time.Now().Before(p.leaseFence()); attempt++ {
		if p.o.leaseUntil(p.shardID).IsZero() || !p.sleep(p.o.intake, backoff.Policy{First: firstBackoff, Max: time.Second}.Delay(attempt)) {
			return false
		}
	}
	return true
}

// fenceMargin is how long before a lease or claim runs out by this worker's
// clock it stops sending under it: room for another host, which judges the
// expiry by its own wall clock, to be ahead of ours. A fifth of the duration,
// at most 5 s.
func fenceMargin(d time.Duration) time.Duration { return min(d/5, 5*time.Second) }

// claim takes the command's idempotency claim, waiting while another worker
// holds a live one. It returns (duplicate, at, ok): at is read before the
// claim's write; ok is false when it had to stop first.
func (p *shardProcessor) claim(ctx context.Context, cmd *responders.Command, out Outcome) (bool, time.Time, bool) {
	for attempt := 1; ; attempt++ {
		at := time.Now()
		err := p.o.claims.Claim(ctx, outcomes.Claim{
			CommandID: cmd.ID, Digest: out.Digest, Schema: cmd.Schema.String(),
			Shard: p.shardID, Sequence: out.Sequence, Responder: cmd.Module,
		})
		switch {
		case err == nil:
			return false, at, true
		case errors.Is(err, outcomes.ErrDuplicate):
			return true, at, true
		case errors.Is(err, outcomes.ErrClaimedElsewhere):
			p.log.Info("command claimed by another worker; waiting", "seq", out.Sequence, "command_id", cmd.ID)
		default:
			p.log.Warn("claiming the command failed; retrying", "seq", out.Sequence, "command_id", cmd.ID, "err", err)
		}
		if !p.sleep(p.o.intake, backoff.Policy{First: firstBackoff, Floor: time.Second, Max: 30 * time.Second}.Delay(attempt)) {
			return false, time.Time{}, false
		}
	}
}

// settle records a final outcome in the claims table (retrying: the claim
// must not be left to expire, or the command would run again) and reports it.
func (p *shardProcessor) settle(ctx context.Context, out Outcome, first time.Time, reason string, release func()) bool {
	if c := p.o.claims; c != nil {
		f := outcomes.Final{Verdict: string(out.Result), Attempts: out.Attempts, FirstAttempt: first, LastAttempt: time.Now(), Reason: reason}
		for attempt := 1; ; attempt++ {
			err := c.Finish(ctx, outcomes.Identity{CommandID: out.CommandID, Digest: out.Digest}, f)
			if err == nil {
				break
			}
			if errors.Is(err, outcomes.ErrClaimedElsewhere) {
				// Another worker took the command over: ours ran, and it
				// records its own outcome.
				p.log.Warn("command claim taken over before its outcome was recorded", "command_id", out.CommandID, "err", err)
				break
			}
			p.log.Warn("recording the command outcome failed; retrying", "command_id", out.CommandID, "err", err)
			if !p.sleep(p.o.hard, backoff.Policy{First: firstBackoff, Max: 5 * time.Second}.Delay(attempt)) {
				// The command ran; without its outcome a restart runs it again
				// once the claim expires. At least once, never lost.
				release()
				return false
			}
		}
	}
	p.o.report(out)
	return true
}

// deadLetterOrFail ends a command that cannot succeed: on the dead-letter
// stream when there is one, else as a logged permanent failure.
func (p *shardProcessor) deadLetterOrFail(ctx context.Context, out Outcome, l deadletter.Letter, first time.Time, release func()) bool {
	l.Attempts, l.FirstAttempt, l.LastAttempt = out.Attempts, first, time.Now()
	if p.o.deadLetters == nil {
		out.Result = Failed
		p.log.Error("command failed permanently", "seq", out.Sequence, "command_id", out.CommandID, "responder", out.Responder,
			"attempts", out.Attempts, "err", out.Err)
		return p.settle(ctx, out, first, l.Reason+": "+l.Error, release)
	}
	if !p.putDeadLetter(ctx, l) {
		release()
		return false
	}
	out.Result = DeadLettered
	p.log.Warn("command dead-lettered", "seq", out.Sequence, "command_id", out.CommandID, "responder", out.Responder,
		"reason", l.Reason, "attempts", out.Attempts, "dead_letter_stream", p.o.cfg.DeadLetterStream, "err", out.Err)
	return p.settle(ctx, out, first, l.Reason+": "+l.Error, release)
}

func (p *shardProcessor) putDeadLetter(ctx context.Context, l deadletter.Letter) bool {
	l.DeadLetteredAt = time.Now()
	if err := p.o.deadLetters.Put(ctx, l); err != nil {
		p.log.Error("writing to the dead-letter stream failed; the record stays unfinished", "seq", l.SequenceNumber, "err", err)
		return false
	}
	return true
}

// reject reports a record that can never run as sent, dead-lettering it
// when a dead-letter stream is configured, and records it in the outcomes
// table when its commandId is known (so that it can be looked up and
// searched). It returns false, leaving the record unfinished, when it had to
// stop before both were written.
func (p *shardProcessor) reject(out Outcome, l deadletter.Letter, err error) bool {
	if !p.rejectDeadLetter(&out, &l, err) {
		return false
	}
	if c := p.o.claims; c != nil && out.CommandID != "" {
		ctx, cancel := p.stopContext(p.o.hard)
		defer cancel()
		r := outcomes.Rejection{CommandID: out.CommandID, Shard: out.Shard, Sequence: out.Sequence,
			Responder: out.Responder, Schema: l.CommandSchema, Reason: err.Error()}
		for attempt := 1; ; attempt++ {
			rerr := c.Reject(ctx, r)
			if rerr == nil {
				break
			}
			p.log.Warn("recording the rejection failed; retrying", "command_id", out.CommandID, "err", rerr)
			if !p.sleep(ctx, backoff.Policy{First: firstBackoff, Max: 5 * time.Second}.Delay(attempt)) {
				return false
			}
		}
	}
	p.o.report(out)
	return true
}

// rejectDeadLetter marks out as rejected, logs it, and puts the dead letter
// when a dead-letter stream is configured; false when that put could not
// be made before stopping.
func (p *shardProcessor) rejectDeadLetter(out *Outcome, l *deadletter.Letter, err error) bool {
	var rej *responders.RejectError
	if errors.As(err, &rej) {
		out.Reason = rej.Reason
		if out.CommandID == "" {
			out.CommandID = rej.CommandID
		}
	}
	out.Result, out.Err = Rejected, err
	p.log.Warn("command rejected", "seq", out.Sequence, "command_id", out.CommandID, "reason", out.Reason, "err", err)
	l.Reason, l.Error = "rejected:"+string(out.Reason), err.Error()
	if l.CommandID == "" {
		l.CommandID = out.CommandID
	}
	if p.o.deadLetters == nil {
		return true
	}
	ctx, cancel := p.stopContext(p.o.hard)
	defer cancel()
	return p.putDeadLetter(ctx, *l)
}

// maxResponderDelay caps the delay a responder asks for (a vendor's
// Retry-After): a command waiting holds its partition key and its shard's
// checkpoint.
const maxResponderDelay = delivery.MaxVendorDelay

// firstBackoff is the longest wait before the first retry of a command or of
// a table write; it doubles with each further attempt.
const firstBackoff = 200 * time.Millisecond

// runQueue passes started records to runner goroutines. A runner takes
// records until none is left, then ends; one is started whenever a record
// would otherwise wait for a busy runner, so every started record runs at
// once, as with a goroutine per record. Reusing runners under load keeps
// their grown stacks: a fresh goroutine per record spent about a sixth of
// its CPU growing its stack through decoding and validation.
type runQueue struct {
	// ready, runners: guarded by shardProcessor.mu.
	ready   []*entry
	runners int
	// busy counts the runners holding a record. A runner stops counting
	// before it finishes its record, so that the record finish starts next
	// (the next one of its key, usually) goes to it, not to a new runner.
	busy atomic.Int32
}

func (p *shardProcessor) run() {
	p.mu.Lock()
	for len(p.runq.ready) > 0 {
		e := p.runq.ready[0]
		p.runq.ready[0] = nil
		p.runq.ready = p.runq.ready[1:]
		p.runq.busy.Add(1)
		p.mu.Unlock()
		final := p.execute(e.rec)
		p.runq.busy.Add(-1)
		p.finish(e, final)
		p.wg.Done()
		p.mu.Lock()
	}
	p.runq.runners--
	p.mu.Unlock()
}
