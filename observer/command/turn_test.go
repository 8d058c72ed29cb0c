package command

import (
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

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
