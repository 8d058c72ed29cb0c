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
// reports it. It returns false when the run had to stop first.
func (c *run) settle(reason string) bool {
	if c.Ledger != nil && !c.record(reason) {
		return false
	}
	c.Settled(c.out)
	return true
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
	if !c.rejectDeadLetter(err) {
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
		c.Log.Error("writing to the dead-letter stream failed; the record stays unfinished", "seq", l.SequenceNumber, "err", err)
		return false
	}
	return true
}
