package command

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sauna-io/sauna/observer/backoff"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/responders/delivery"
	"github.com/sauna-io/sauna/responders/fence"
)

// firstBackoff is the longest wait before the first retry of a command or
// of a ledger write; it doubles with each further attempt.
const firstBackoff = 200 * time.Millisecond

// maxRetryWait bounds the backoff between two attempts of a command (a
// vendor's own Retry-After may ask for longer). Each attempt is one request,
// so a command retried through a long outage would otherwise reach waits of
// half a minute, and a vendor that comes back would wait that long for its
// backlog; at 5 s it is retried within seconds, as it was when every call
// made its own short burst of requests.
const maxRetryWait = 5 * time.Second

// maxResponderDelay caps the delay a responder asks for (a vendor's
// Retry-After): a command waiting holds its partition key and its source's
// checkpoint.
const maxResponderDelay = delivery.MaxVendorDelay

// attempts calls the responder until the command is done, fails for good
// or runs out of retry budget, waiting between attempts; then it settles.
func (c *run) attempts() bool {
	for attempt := 1; ; attempt++ {
		// No new side effect once the source may belong to another worker:
		// a worker that was frozen wakes before any renewal tells it so.
		// The end of intake stops retries but not a first attempt: every
		// admitted record runs, so no later record that ran is left behind
		// the final checkpoint to be run again.
		if !c.Lease.Await(c.Intake) || c.ctx.Err() != nil || attempt > 1 && c.stopping() {
			c.release()
			return false
		}
		if c.fast && attempt > 1 {
			// A retry is no longer a matter of milliseconds: the command
			// is claimed like any other, so that no other worker runs it
			// meanwhile and the attempts count.
			switch c.convert() {
			case claimStopped:
				return false
			case claimDuplicate:
				return c.duplicate()
			}
		}
		if !c.renew(attempt) {
			return false
		}
		if c.fast {
			c.Batcher.begin()
			c.counted = true
		}
		v, after, err := c.send(attempt)
		if v == responders.Retry {
			c.uncount()
		}
		if v == responders.Retry && c.stopping() {
			c.release()
			return false
		}
		switch v {
		case responders.Done:
			c.out.Verdict = verdict.Executed
			// Asked first: the arguments cost allocations even when the
			// line is dropped, on the path every command takes.
			if c.Log.Enabled(c.ctx, slog.LevelDebug) {
				c.Log.Debug("command executed", "seq", c.out.Sequence, "command_id", c.cmd.ID, "responder", c.cmd.Module, "attempts", attempt)
			}
			return c.settle("")
		case responders.Fail:
			return c.failed(err)
		}
		if c.budgetSpent() {
			if c.DeadLetters != nil {
				return c.giveUp(verdict.RetryBudgetExhausted, err)
			}
			c.logBudgetSpent()
		}
		delay, last := c.delay(attempt, after, err)
		if !c.Lease.Sleep(c.Intake, delay) {
			c.release()
			return false
		}
		if last {
			return c.giveUp(verdict.RetryBudgetExhausted, err)
		}
	}
}

// convert takes the claim of a command that ran its first attempt without
// one.
func (c *run) convert() claimResult {
	c.fast = false
	return c.claim()
}

// uncount tells the Batcher that this run will not record an outcome
// through it soon.
func (c *run) uncount() {
	if c.counted {
		c.counted = false
		c.Batcher.abandon()
	}
}

// send makes one attempt, fenced where this worker's hold on the command
// ends, and classifies its result.
func (c *run) send(attempt int) (responders.Verdict, time.Duration, error) {
	c.out.Attempts = attempt
	actx := c.fence()
	start := time.Now()
	if attempt == 1 {
		c.first = start
	}
	err := fence.CheckAt(actx, start)
	if err == nil {
		err = c.Dispatcher.Send(actx, &c.route)
	}
	c.last = time.Now()
	took := c.last.Sub(start)
	c.out.Latency += took
	v, after := responders.Classify(err)
	c.Attempted(c.cmd.Module, v, took)
	return v, after, err
}

// fence returns the run's context fenced at the moment this worker must
// stop starting side effects for the command: the lease's fence (which
// renewals move on while a call waits) or the claim's, whichever comes
// first.
func (c *run) fence() context.Context {
	leaseFence := c.Lease.Fence
	if !c.claimed {
		if c.ctx != c.Hard {
			return fence.With(c.ctx, leaseFence)
		}
		return c.leaseFencedContext()
	}
	claimEnd := c.claimEnd()
	return fence.With(c.ctx, func() time.Time {
		if until := leaseFence(); until.Before(claimEnd) {
			return until
		}
		return claimEnd
	})
}

// leaseFencedContext is Hard fenced by the lease alone, shared by the runs:
// the fence is a function of the lease, evaluated at every check, so one
// context serves every attempt made without a claim.
func (c *run) leaseFencedContext() context.Context {
	if f := c.leaseFenced.Load(); f != nil {
		return f.ctx
	}
	f := &sharedContext{ctx: fence.With(c.Hard, c.Lease.Fence)}
	// Runs racing here make equal contexts: whichever is kept serves.
	c.leaseFenced.CompareAndSwap(nil, f)
	return f.ctx
}

// failed ends a command that failed for good. A rejection (the TTL passed or
// the responder config went away while retrying) is still a rejection, and
// its claim ends with that outcome.
func (c *run) failed(err error) bool {
	var rej *responders.RejectError
	if !errors.As(err, &rej) {
		return c.giveUp(verdict.FailedPermanently, err)
	}
	if !c.rejectDeadLetter(err) {
		c.release()
		return false
	}
	return c.settle(err.Error())
}

func (c *run) budgetSpent() bool {
	return c.RetryBudget > 0 && time.Since(c.first) >= c.RetryBudget
}

// logBudgetSpent says once that, without a dead-letter stream, a command
// past its budget is retried until the responder recovers.
func (c *run) logBudgetSpent() {
	if c.budgetLogged {
		return
	}
	c.budgetLogged = true
	c.Log.Error("retry budget exhausted and no dead-letter stream configured; retrying until the responder recovers",
		"seq", c.out.Sequence, "command_id", c.cmd.ID, "responder", c.cmd.Module, "budget", c.RetryBudget)
}

// delay is the wait before the next attempt: backoff, never shorter than
// the responder asked (capped at maxResponderDelay). last is set when the
// responder may not be called again before the budget ends: the run waits
// out what is left of the budget, then dead-letters without a call the
// vendor asked not to get.
func (c *run) delay(attempt int, after time.Duration, err error) (d time.Duration, last bool) {
	after = min(after, maxResponderDelay)
	if left := c.RetryBudget - time.Since(c.first); c.DeadLetters != nil && c.RetryBudget > 0 && after >= left {
		c.Log.Warn("command failed; the responder's delay outlasts the retry budget", "seq", c.out.Sequence, "command_id", c.cmd.ID,
			"responder", c.cmd.Module, "attempt", attempt, "retry_in", after.Round(time.Millisecond), "budget_left", left.Round(time.Millisecond), "err", err)
		return left, true
	}
	d = backoff.Policy{First: firstBackoff, Floor: after, Max: maxRetryWait}.Delay(attempt)
	c.Log.Warn("command failed; retrying", "seq", c.out.Sequence, "command_id", c.cmd.ID, "responder", c.cmd.Module,
		"attempt", attempt, "retry_in", d.Round(time.Millisecond), "err", err)
	return d, false
}
