package command

import (
	"context"
	"sync"
)

// Turn is a record's place among the records of its partition key, which
// its source runs in order (Execute). The command of the next record of the
// key may start once this one's effect is final (Released); the outcomes of
// a key's records are recorded in order (Prior), so that a redelivery after
// a crash never runs an earlier command of a key again after a later one
// of the key was recorded. The zero Turn is a record with nothing to tell
// and nothing to wait for.
type Turn struct {
	// Released, when set, is told once the command's effect is final:
	// its verdict is known and any dead letter written (or it is a
	// duplicate), before its outcome is recorded. The source may then start
	// the next record of the key; this one stays unfinished until it
	// returns. It may block, as back-pressure on the source, and is told
	// at most once: not at all by a run that stops before. An interface
	// rather than a func, so that a source passes what it already holds
	// (its record's entry) instead of a closure per command.
	Released Releaser
	// Prior is the end of the previous record of the key, when that one
	// is still unfinished (nil: none is). This run's outcome is written
	// only after Prior's: once Prior ended with its own recorded or, for an
	// outcome written by the Batcher, behind Prior's in the Batcher
	// (Batcher.add). It counts as recorded only once Prior ended with its
	// own recorded; if Prior ended without one, this run ends unfinished
	// too. A run that must stop before Prior's outcome is known hands its
	// own to the Batcher, which records it after Prior's lands, or not at
	// all once Prior's will not: a claimed run keeps its claim till then
	// (finishLate), and one without a claim has its outcome written only
	// where no item holds its id (doneLate).
	Prior *Mark
	// Mark, when set, is this run's own end, which the next record of the
	// key has as its Prior: the run tells it when its outcome is queued in
	// the Batcher, so that the next one's queues behind it without waiting
	// for this run to end. The source ends it (Mark.End) once the run
	// returned.
	Mark *Mark
	// Stopped, when set, is told why the run stopped short (Execute
	// returns false) when it knows a cause other than a stop, a hard stop
	// or a lost lease: an error matching ErrClaimTakenOver,
	// ErrClaimExpired, ErrDeadLetterNotWritten, ErrOutcomeNotRecorded or
	// ErrEarlierUnfinished. It is told before Execute returns, on the
	// run's goroutine, and must not block.
	Stopped Stopper
}

// Releaser is told once a command's effect is final (Turn.Released).
type Releaser interface{ Release() }

// ReleaseFunc is a func as a Releaser.
type ReleaseFunc func()

// Release calls f.
func (f ReleaseFunc) Release() { f() }

// Mark is the end of one record's run, as the next record of its key waits
// for it. The zero Mark is that of a run that has not ended; a source keeps
// one in each record's own state, and a Mark is not copied once in use.
type Mark struct {
	mu sync.Mutex
	// ended and recorded are set once, by End.
	ended, recorded bool
	// queued is the Batcher's batch holding the run's outcome, once it
	// was handed to the Batcher.
	queued *batch
	// late is set, before End, by a run that ran its command and handed
	// its outcome to the Batcher (finishLate, doneLate): it ends
	// unrecorded, but its outcome may still land, and the next record's,
	// handed over as well, waits for that (awaitOutcome).
	late *lateResult
	// done is made only when a run has to wait for this one (most records
	// of a key end before the next one concludes), and closed at the
	// next change: by queue or End.
	done chan struct{}
}

// NewMark returns the mark of a run that has not ended.
func NewMark() *Mark { return &Mark{} }

// End marks the run ended; recorded tells whether it ended with its outcome
// final and recorded (Execute returned true). Call it once.
func (m *Mark) End(recorded bool) {
	m.mu.Lock()
	m.ended, m.recorded = true, recorded
	done := m.done
	m.mu.Unlock()
	if done != nil {
		close(done)
	}
}

// queue tells that the run's outcome is queued in bt.
func (m *Mark) queue(bt *batch) {
	m.mu.Lock()
	m.queued = bt
	done := m.done
	m.done = nil
	m.mu.Unlock()
	if done != nil {
		close(done)
	}
}

// handOff tells that the run's outcome is being recorded in the Batcher,
// as late.
func (m *Mark) handOff(late *lateResult) {
	m.mu.Lock()
	m.late = late
	m.mu.Unlock()
}

// state returns whether the run ended and with its outcome recorded, the
// batch its outcome is queued in (nil: none yet), and its late Finish
// (handOff); if it has not ended, done is closed at its next change (the
// state is then read again).
func (m *Mark) state() (ended, recorded bool, queued *batch, late *lateResult, done <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.ended && m.done == nil {
		m.done = make(chan struct{})
	}
	return m.ended, m.recorded, m.queued, m.late, m.done
}

// awaitOutcome waits until the run ended and, when it handed its outcome
// to the Batcher, until the Batcher is done with it; recorded tells
// whether its outcome is recorded. It returns ctx's error if ctx ends
// first.
func (m *Mark) awaitOutcome(ctx context.Context) (recorded bool, err error) {
	for {
		ended, recorded, _, late, done := m.state()
		if ended && (recorded || late == nil) {
			return recorded, nil
		}
		if ended {
			done = late.done
		}
		select {
		case <-done:
			if ended {
				return late.recorded, nil
			}
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// priorEnd is how the previous record of a key ended, as a run waiting for
// it learns.
type priorEnd int

const (
	// priorRecorded: it ended with its outcome recorded (or there is none).
	priorRecorded priorEnd = iota
	// priorUnrecorded: it ended without, and its record is read again.
	priorUnrecorded
	// priorUnknown: this run had to stop first (a hard stop, a lost
	// lease), or the previous record's outcome is still being recorded, in
	// the Batcher, after its run ended (Mark.handOff): this run hands its
	// own over as well, to follow it.
	priorUnknown
)

// conclude is reached once the command's effect is final. It tells the
// source (Turn.Released), which may start the next record of the key,
// then waits for the previous record of the key to end. Unless that record
// ended with its outcome recorded, this run records nothing itself: after
// one that ended without, its record is read again after the earlier one;
// when it is unknown yet, the run hands its outcome to the Batcher
// (settle, settleDone). A run without a claim is uncounted in the Batcher while it
// waits, so that no write lingers for it.
func (c *run) conclude() priorEnd {
	c.releaseKey()
	_, end := c.awaitPrior(false)
	return end
}

// releaseKey tells the source that the command's effect is final
// (Turn.Released).
func (c *run) releaseKey() {
	if c.turn.Released != nil {
		c.turn.Released.Release()
		c.turn.Released = nil
	}
}

// awaitPrior waits until the previous record of the key ended or, when
// queued is set, until it queued its outcome in the Batcher, which it then
// returns (with priorRecorded). A previous record whose run ended while its
// outcome was still being recorded in the Batcher is priorUnknown: its
// run ended as it had to stop, which this run does as well.
func (c *run) awaitPrior(queued bool) (after *batch, end priorEnd) {
	prior := c.turn.Prior
	if prior == nil {
		return nil, priorRecorded
	}
	for {
		ended, recorded, bt, late, done := prior.state()
		switch {
		case ended && recorded:
			return nil, priorRecorded
		case ended && late != nil:
			c.stoppedBecause(ErrEarlierUnfinished, nil)
			return nil, priorUnknown
		case ended:
			c.stoppedBecause(ErrEarlierUnfinished, nil)
			c.Log.Info("an earlier command of the partition key has no recorded outcome; leaving the record to be read again after it",
				"seq", c.out.Sequence, "command_id", c.out.CommandID)
			return nil, priorUnrecorded
		case queued && bt != nil:
			return bt, priorRecorded
		}
		c.uncount()
		select {
		case <-done:
		case <-c.Hard.Done():
			return nil, priorUnknown
		case <-c.Lease.Lost:
			return nil, priorUnknown
		}
	}
}
