package command

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sauna-io/sauna/observer/backoff"
	"github.com/sauna-io/sauna/observer/outcomes"
)

// lateFinish is the outcome of a claimed command whose run had to end
// before its Finish landed (record), or before the previous record of its
// key ended (settle): the command ran, and its claim is still this
// worker's until it expires.
type lateFinish struct {
	ledger Ledger
	id     outcomes.Identity
	final  outcomes.Final
	// expires is when the claim runs out by this worker's clock, which
	// the ledger's expiry is never before.
	expires time.Time
	// prior is the end of the previous record of the key, when its
	// outcome was not known yet as the run ended: Finish waits for it to
	// be recorded, as a key's outcomes are recorded in order.
	prior      *Mark
	shard, seq string
}

// lateResult is how a late Finish ended, for the next record of the key
// whose own late Finish waits for it (Mark.awaitOutcome).
type lateResult struct {
	// recorded is set before done is closed: whether Finish landed.
	recorded bool
	done     chan struct{}
}

// finishLate tries f's Finish again, on a goroutine of the Batcher's own,
// with backoff, until it lands, finds the claim taken over, the claim
// expires or the Batcher's context ends (Stop's deadline); Stop waits for
// it. When f has a prior, that record's outcome is awaited first, within
// the same bounds. It returns how the Finish ends, or nil, starting
// nothing, once the Batcher has stopped. There is one such goroutine per
// run that handed its outcome over, and each ends by its claim's expiry:
// they are as many as the claimed runs that were recording outcomes, or
// waiting to, when their lease was lost or the hard stop came. They hold
// none of the write slots of the bulk outcomes. Each waits only for the
// one of an earlier record of its key, so none waits in a cycle.
func (b *Batcher) finishLate(f lateFinish) *lateResult {
	return b.late(func() bool { return b.retryFinish(f) })
}

// late runs record, which reports whether an outcome landed, on a
// goroutine of the Batcher's own that Stop waits for (finishing), and
// returns how it ends; nil, starting nothing, once the Batcher has
// stopped.
func (b *Batcher) late(record func() bool) *lateResult {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return nil
	}
	b.finishing++
	b.mu.Unlock()
	late := &lateResult{done: make(chan struct{})}
	go func() {
		late.recorded = record()
		close(late.done)
		b.mu.Lock()
		b.finishing--
		poke := b.stopping && b.finishing == 0
		b.mu.Unlock()
		if poke {
			b.poke()
		}
	}()
	return late
}

// retryFinish is finishLate's goroutine. Each try is Finish, fenced on the
// claim token: where another worker took the claim over (only possible once
// it expired) the write fails and changes nothing. That fence, not the
// clock, keeps the outcome off the next owner's claim, so a try that starts
// just before the expiry and lands after it is safe, and the expiry only
// bounds the retries: after it the next owner may take the claim over and
// run the command, recording its own outcome. The claim is released only
// once the retries end without an outcome, past its expiry or at Stop's
// deadline: by then releasing changes nothing in the table that expiry has
// not, and it lets the ledger forget the claim, which it would otherwise
// keep refusing this process's later claims of the command for. It
// reports whether the outcome landed.
func (b *Batcher) retryFinish(f lateFinish) (recorded bool) {
	log := b.log.With("shard", f.shard, "seq", f.seq, "command_id", f.id.CommandID)
	retries, cancel := context.WithDeadline(b.ctx, f.expires)
	defer cancel()
	if f.prior != nil && !b.priorRecorded(retries, f, log) {
		_ = f.ledger.Release(b.ctx, f.id)
		return false
	}
	for attempt := 1; ; attempt++ {
		err := f.ledger.Finish(b.ctx, f.id, f.final)
		switch {
		case err == nil:
			log.Info("recorded the outcome of a claimed command after its run ended (shard lease lost or hard stop)",
				"verdict", f.final.Verdict, "attempts", attempt)
			return true
		case errors.Is(err, outcomes.ErrClaimedElsewhere):
			// Expected once the claim expired: the new owner records the
			// outcome. It runs the command again, so the next record of
			// the key must too (recorded false), after it, as after a
			// run's own Finish that finds the claim taken over (record).
			// An earlier try of this Finish that landed though its answer
			// was lost is not this: Finish finds its own outcome and
			// returns nil.
			log.Info("not recording the outcome of a claimed command after its run ended: another worker took its claim over",
				"verdict", f.final.Verdict)
			return false
		case errors.Is(err, outcomes.ErrNotClaimed):
			log.Error("cannot record the outcome of a claimed command after its run ended", "err", err)
			return false
		}
		if retries.Err() == nil {
			log.Warn("recording the outcome of a claimed command after its run ended failed; retrying until its claim expires",
				"attempt", attempt, "claim_expires", f.expires.UTC(), "err", err)
		}
		if !backoff.Sleep(retries, backoff.Policy{First: firstBackoff, Max: 5 * time.Second}.Delay(attempt)) {
			if b.ctx.Err() != nil {
				log.Error("recording the outcome of a claimed command stopped with the observer; the shard's next owner runs it again once its claim expires", "err", err)
			} else {
				log.Warn("the claim of a command expired before its outcome could be recorded; the shard's next owner runs it again", "err", err)
			}
			// Past the expiry the write changes nothing another worker can
			// tell; after Stop's deadline it is not even sent (b.ctx ended),
			// and the claim is forgotten here all the same.
			_ = f.ledger.Release(b.ctx, f.id)
			return false
		}
	}
}

// priorRecorded waits, until retries ends, for the outcome of f's prior
// record of the key, and reports whether it was recorded. Where it was
// not, that record is read and run again, and so must f's, after it: the
// caller releases the claim, as a run that learns of it in time does
// (settle).
func (b *Batcher) priorRecorded(retries context.Context, f lateFinish, log *slog.Logger) bool {
	recorded, err := f.prior.awaitOutcome(retries)
	switch {
	case recorded:
		return true
	case err == nil:
		log.Info("an earlier command of the partition key has no recorded outcome; releasing the claim of this one, which runs again after it",
			"verdict", f.final.Verdict)
	case b.ctx.Err() != nil:
		log.Error("waiting for an earlier command of the partition key stopped with the observer; the shard's next owner runs this one again once its claim expires")
	default:
		log.Warn("the claim of a command expired before an earlier command of its partition key had its outcome recorded; the shard's next owner runs it again")
	}
	return false
}

// lateDone is the outcome of a command run without a claim whose run had
// to end (lease lost, hard stop) before it knew the outcome recorded: the
// command ran, and nothing but a recorded outcome keeps the shard's next
// owner from running it again.
type lateDone struct {
	done outcomes.Done
	// queued is the batch the loop writes it in; written is set when its
	// run wrote it already. With neither, recordDoneLate writes it.
	queued  *batch
	written bool
	// prior is the end of the previous record of the key, when its
	// outcome was not known as the run ended: this one is written only
	// once that one is recorded, and counts as recorded only then.
	prior *Mark
	// until bounds the wait and the retries (doneLate).
	until time.Time
}

// doneLate has d recorded, on a goroutine of the Batcher's own (late),
// where no item holds its id, after its prior's outcome is recorded;
// once it was queued or written, it only learns whether it was
// recorded. It returns how that ends, or nil once the Batcher has stopped.
func (b *Batcher) doneLate(d lateDone) *lateResult {
	return b.late(func() bool { return b.recordDoneLate(d) })
}

// recordDoneLate is doneLate's goroutine; it reports whether d counts as
// recorded, for the next record of the key (Mark.awaitOutcome). The write
// never lands on another worker's item, so it would be safe at any time;
// it is bounded by Stop's deadline and by d.until, a claim's timeout
// after the run ended, for the goroutine's sake: a claimed command's next
// owner runs it again after that, and this one's, which needs no claim
// expiry, has most likely read the record by then and run it again, or
// found it recorded.
func (b *Batcher) recordDoneLate(d lateDone) bool {
	c := d.done.Claim
	log := b.log.With("shard", c.Shard, "seq", c.Sequence, "command_id", c.CommandID)
	ctx, cancel := context.WithDeadline(b.ctx, d.until)
	defer cancel()
	written := d.written
	if !written && d.queued != nil {
		// The loop writes it: in bulk while the lease is held, else where
		// no item holds its id (writeLost).
		if !d.queued.recorded(ctx, c.Identity()) {
			return false
		}
		written = true
	}
	if d.prior != nil && !b.priorDone(ctx, d.prior, written, log) {
		return false
	}
	return written || len(b.writeLost(ctx, []outcomes.Done{d.done}, nil, nil)) == 0
}

// priorDone waits, until ctx ends, for the outcome of the previous record
// of the key of a command run without a claim, and reports whether it was
// recorded. Where it was not, that record runs again, and so must this
// one, after it: its outcome is not written, so that the key's last effect
// stays its latest command's. One written already (written) does not count
// as recorded, so that the next record of the key runs again after it.
func (b *Batcher) priorDone(ctx context.Context, prior *Mark, written bool, log *slog.Logger) bool {
	recorded, err := prior.awaitOutcome(ctx)
	switch {
	case recorded:
		return true
	case err == nil && written:
		log.Info("an earlier command of the partition key has no recorded outcome; this one's, recorded already, does not count, and the next command of the key runs again after it")
	case err == nil:
		log.Info("an earlier command of the partition key has no recorded outcome; not recording this one, which runs again after it")
	case b.ctx.Err() != nil:
		log.Error("waiting for an earlier command of the partition key stopped with the observer; the shard's next owner runs this one again")
	default:
		log.Warn("an earlier command of the partition key had no recorded outcome within a claim's timeout; the shard's next owner runs this one again")
	}
	return false
}
