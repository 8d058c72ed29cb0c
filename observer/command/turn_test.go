package command

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/observer/verdict"
)

// A run tells its source once its command's effect is final, and records
// its outcome only after the previous record of its key ended with its
// own recorded: with and without a claim. Meanwhile it holds no write back
// in the Batcher: another command's lone outcome is written at once.
func TestTurnRecordsAfterThePriorRecord(t *testing.T) {
	for _, claimed := range []bool{false, true} {
		name := map[bool]string{false: "without a claim", true: "claimed"}[claimed]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFastRunners(t, 1, func(string) error { return nil })
				ps := f.prepare(t, f.runners[0], record(1, "later"), record(2, "alone"))
				if claimed {
					time.Sleep(PeekFresh + time.Second) // the Peek is stale: the run claims
				}
				prior := NewMark()
				var released atomic.Bool
				var wg sync.WaitGroup
				var ok bool
				wg.Go(func() {
					ok = f.runners[0].Execute(&ps[0], Turn{Released: ReleaseFunc(func() { released.Store(true) }), Prior: prior})
				})
				synctest.Wait()
				if !released.Load() {
					t.Fatal("the run did not release its key once its command ran")
				}
				if len(f.tab.finishedBy) != 0 || len(f.settled) != 0 {
					t.Fatalf("outcome recorded (%v) or reported (%v) before the prior record's", f.tab.finishedBy, f.settled)
				}
				start := time.Now()
				if !f.runners[0].Execute(&ps[1], Turn{}) {
					t.Fatal("stopped short")
				}
				if took := time.Since(start); !claimed && took != 0 {
					t.Errorf("a lone outcome waited %v for a run that waits for its prior record", took)
				}
				prior.End(true)
				wg.Wait()
				if !ok {
					t.Fatal("stopped short")
				}
				want := map[bool]string{false: "batch", true: "finish"}[claimed]
				if by := f.tab.finishedBy[ps[0].cmd.ID]; by != want {
					t.Errorf("recorded by %q, want %q", by, want)
				}
				if v := f.verdicts(); v[verdict.Executed] != 2 {
					t.Errorf("verdicts %v", v)
				}
			})
		})
	}
}

// A run whose prior record of the key ended without a recorded outcome
// records nothing and reports nothing: it stops short, so that it is read
// again after that record.
func TestTurnPriorUnrecordedStopsTheRun(t *testing.T) {
	for _, claimed := range []bool{false, true} {
		name := map[bool]string{false: "without a claim", true: "claimed"}[claimed]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				calls := 0
				f := newFastRunners(t, 1, func(string) error { calls++; return nil })
				ps := f.prepare(t, f.runners[0], record(1, "later"))
				if claimed {
					time.Sleep(PeekFresh + time.Second)
				}
				prior := NewMark()
				var wg sync.WaitGroup
				ok := true
				wg.Go(func() { ok = f.runners[0].Execute(&ps[0], Turn{Prior: prior}) })
				synctest.Wait()
				prior.End(false)
				wg.Wait()
				if ok {
					t.Error("the run ended final after its prior record ended without an outcome")
				}
				if calls != 1 || len(f.tab.finishedBy) != 0 || len(f.settled) != 0 {
					t.Errorf("%d calls, recorded %v, reported %v; want the call alone", calls, f.tab.finishedBy, f.settled)
				}
				if fl, _ := f.memory.size(); fl != 0 {
					t.Errorf("%d commands left in flight", fl)
				}
			})
		})
	}
}

// A run whose prior record of the key ended before it concluded goes on at
// once on that record's result: it records its outcome after a recorded
// one, and stops short after one without.
func TestTurnPriorEndedBeforeConclude(t *testing.T) {
	for _, recorded := range []bool{true, false} {
		name := map[bool]string{true: "recorded", false: "unrecorded"}[recorded]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFastRunners(t, 1, func(string) error { return nil })
				ps := f.prepare(t, f.runners[0], record(1, "later"))
				prior := NewMark()
				prior.End(recorded)
				released := false
				ok := f.runners[0].Execute(&ps[0], Turn{Released: ReleaseFunc(func() { released = true }), Prior: prior})
				if ok != recorded || !released {
					t.Fatalf("Execute = %v, released %v; want %v, released", ok, released, recorded)
				}
				if n := len(f.settled); n != map[bool]int{true: 1, false: 0}[recorded] {
					t.Errorf("%d outcomes reported", n)
				}
			})
		})
	}
}

// gatedWriter holds the first write until gate is closed (or its context
// ends), then writes to w; calls counts the writes begun.
type gatedWriter struct {
	w    DoneWriter
	gate chan struct{}
	mu   sync.Mutex
	n    int
}

func (g *gatedWriter) RecordDone(ctx context.Context, ds []outcomes.Done) error {
	g.mu.Lock()
	g.n++
	first := g.n == 1
	g.mu.Unlock()
	if first {
		select {
		case <-g.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.w.RecordDone(ctx, ds)
}

func (g *gatedWriter) RecordDoneIfAbsent(ctx context.Context, d outcomes.Done) error {
	return g.w.RecordDoneIfAbsent(ctx, d)
}

func (g *gatedWriter) calls() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

// chain runs ps as consecutive records of one key on r, each started once
// the previous one released its key, as the source does, and then waited
// for until it blocks (on its outcome's write, or on its prior): each run's
// Mark is the next one's Prior, and is ended when its run returns. Call it
// in a synctest bubble.
func chain(r *Runner, ps []Prepared, wg *sync.WaitGroup, ok []bool) {
	var prior *Mark
	for i := range ps {
		mark := NewMark()
		released := make(chan struct{})
		wg.Go(func() {
			ok[i] = r.Execute(&ps[i], Turn{Released: ReleaseFunc(func() { close(released) }), Prior: prior, Mark: mark})
			mark.End(ok[i])
		})
		<-released
		synctest.Wait()
		prior = mark
	}
}

// The outcomes of a key that become ready while the write of the key's
// previous outcome is out wait for it in the Batcher, and then go
// together, in one write: the key's outcomes are written in order, without
// a round trip each.
func TestTurnChainSharesAWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFastRunners(t, 1, func(string) error { return nil })
		g := &gatedWriter{w: f.tab, gate: make(chan struct{})}
		b := NewBatcher(g, slog.New(slog.NewTextHandler(io.Discard, nil)))
		b.Start()
		t.Cleanup(func() { b.Stop(context.Background()) })
		r := f.runners[0]
		r.Batcher = b
		// Every outcome goes through the loop, as when others are queued or
		// out: none is written by its own run.
		r.HardOrLost = nil
		ps := f.prepare(t, r, record(1, "a"), record(2, "b"), record(3, "c"))
		var wg sync.WaitGroup
		ok := make([]bool, len(ps))
		chain(r, ps, &wg, ok)
		synctest.Wait()
		if n := g.calls(); n != 1 {
			t.Fatalf("%d writes begun while the key's first outcome was being written, want 1", n)
		}
		if len(f.settled) != 0 {
			t.Fatalf("reported %v before the key's first outcome was written", f.settled)
		}
		close(g.gate)
		wg.Wait()
		for i, o := range ok {
			if !o {
				t.Fatalf("run %d stopped short", i)
			}
		}
		if _, _, batches := f.tab.counts(); !slices.Equal(batches, []int{1, 2}) {
			t.Errorf("writes of %v outcomes, want [1 2]: the first, then the two that waited for it", batches)
		}
		if v := f.verdicts(); v[verdict.Executed] != 3 {
			t.Errorf("verdicts %v", v)
		}
	})
}

// When the write of a key's outcome fails for good, the outcomes that wait
// for it in the Batcher are not written and their runs stop short: none is
// recorded after an unrecorded one.
func TestTurnChainFailsWithItsPrior(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFastRunners(t, 1, func(string) error { return nil })
		g := &gatedWriter{w: f.tab, gate: make(chan struct{})}
		b := NewBatcher(g, slog.New(slog.NewTextHandler(io.Discard, nil)))
		b.Start()
		r := f.runners[0]
		r.Batcher = b
		// Every outcome goes through the loop, as when others are queued or
		// out: none is written by its own run.
		r.HardOrLost = nil
		ps := f.prepare(t, r, record(1, "a"), record(2, "b"), record(3, "c"))
		var wg sync.WaitGroup
		ok := make([]bool, len(ps))
		chain(r, ps, &wg, ok)
		synctest.Wait()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		b.Stop(ctx) // abandons the write out, and what waits for it
		wg.Wait()
		for i, o := range ok {
			if o {
				t.Errorf("run %d ended final", i)
			}
		}
		if n := g.calls(); n != 1 {
			t.Errorf("%d writes begun, want the abandoned one alone", n)
		}
		if len(f.tab.finishedBy) != 0 || len(f.settled) != 0 {
			t.Errorf("recorded %v, reported %v; want nothing", f.tab.finishedBy, f.settled)
		}
	})
}

// Outcomes parked on a write that lands join the current batch when they
// fit in it, and their runs learn of that batch's write: no write of their
// own.
func TestBatcherParkedJoinTheCurrentBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab := newTable()
		g := &gatedWriter{w: tab, gate: make(chan struct{})}
		b := NewBatcher(g, slog.New(slog.NewTextHandler(io.Discard, nil)))
		b.Start()
		defer b.Stop(context.Background())
		done := func(n int) outcomes.Done {
			return outcomes.Done{
				Claim: outcomes.Claim{CommandID: fmt.Sprint("cmd-", n), Digest: "d", Shard: "s", Sequence: fmt.Sprint(n)},
				Final: outcomes.Final{Verdict: verdict.Executed},
			}
		}
		first, _ := b.add(done(1), "k", Lease{}, false, false, nil) // alone: written at once
		synctest.Wait()
		b.begin() // a run about to finish: the current batch lingers for it
		parked, _ := b.add(done(2), "k", Lease{}, false, false, first)
		cur, _ := b.add(done(3), "other", Lease{}, false, false, nil)
		if parked == cur || parked == first {
			t.Fatal("an outcome queued after one whose write is out went into a batch that is not parked")
		}
		close(g.gate)
		synctest.Wait()
		b.abandon()
		for i, bt := range []*batch{first, parked, cur} {
			if ok, err := bt.wait(context.Background(), nil); !ok {
				t.Fatalf("outcome %d: %v", i+1, err)
			}
		}
		if _, _, batches := tab.counts(); !slices.Equal(batches, []int{1, 2}) {
			t.Errorf("writes of %v outcomes, want [1 2]", batches)
		}
		if n := g.calls(); n != 2 {
			t.Errorf("%d writes, want 2", n)
		}
	})
}

// goroutineWriter records on which goroutine each write runs.
type goroutineWriter struct {
	mu  sync.Mutex
	ids []string
}

func (w *goroutineWriter) RecordDone(context.Context, []outcomes.Done) error {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	id, _, _ := strings.Cut(strings.TrimPrefix(string(buf), "goroutine "), " ")
	w.mu.Lock()
	w.ids = append(w.ids, id)
	w.mu.Unlock()
	return nil
}

func (w *goroutineWriter) RecordDoneIfAbsent(ctx context.Context, d outcomes.Done) error {
	return w.RecordDone(ctx, []outcomes.Done{d})
}

// Writes made one after the other run on one writer goroutine, which waits
// for the next rather than ends (a fresh one grows its stack through every
// write).
func TestBatcherWritersStay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &goroutineWriter{}
		b := NewBatcher(w, slog.New(slog.NewTextHandler(io.Discard, nil)))
		b.Start()
		defer b.Stop(context.Background())
		for i := range 4 {
			bt, alone := b.add(outcomes.Done{
				Claim: outcomes.Claim{CommandID: fmt.Sprint("cmd-", i), Digest: "d", Shard: "s", Sequence: fmt.Sprint(i)},
				Final: outcomes.Final{Verdict: verdict.Executed},
			}, fmt.Sprint("key-", i), Lease{}, false, false, nil)
			if alone {
				t.Fatal("an outcome its run may not write was left to it")
			}
			if ok, err := bt.wait(context.Background(), nil); !ok {
				t.Fatalf("outcome %d: %v", i, err)
			}
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.ids) != 4 || len(slices.Compact(slices.Clone(w.ids))) != 1 {
			t.Errorf("writes ran on goroutines %v, want 4 writes on one", w.ids)
		}
	})
}
