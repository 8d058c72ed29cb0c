package command

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// bulkRunner is f's first runner, whose commands run without a claim when
// their Peek found nothing, with a hard stop of its own; stop ends its
// runs as the lease lost (hard false) or the hard stop (hard true) does.
func bulkRunner(t *testing.T, f *fastRunners, hard bool) (r *Runner, stop func()) {
	t.Helper()
	r = f.runners[0]
	hardCtx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	hardOrLost, cancelLost := r.Lease.Context(hardCtx)
	t.Cleanup(cancelLost)
	r.Hard, r.HardOrLost, r.ClaimTimeout = hardCtx, hardOrLost, lateClaimTimeout
	stop = func() { close(f.lost[0]) }
	if hard {
		stop = cancel
	}
	return r, stop
}

// log returns the table's events, in order.
func (t *table) log() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.events)
}

// A command run without a claim that was stopped while waiting for the
// previous record of its key is not left for the next owner to run again
// for want of its outcome: once that record's outcome is recorded, this
// one's is written where no item holds its id; after one that ended
// unrecorded (which runs again), nothing is, and it runs again after it.
func TestLateDoneAwaitsThePriorRecord(t *testing.T) {
	for _, hard := range []bool{false, true} {
		for _, recorded := range []bool{true, false} {
			name := stops[hard] + map[bool]string{true: ", prior recorded", false: ", prior unrecorded"}[recorded]
			t.Run(name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					f := newFastRunners(t, 1, func(string) error { return nil })
					r, stop := bulkRunner(t, f, hard)
					prior := NewMark()
					var wg sync.WaitGroup
					var ok bool
					startPrepared(r, f.prepare(t, r, record(2, "hello"))[0], prior, &wg, &ok)
					stop()
					wg.Wait()
					if ok || len(f.settled) != 0 {
						t.Errorf("the run ended recorded %v, settled %+v, though it was stopped before its outcome was", ok, f.settled)
					}
					synctest.Wait()
					if ev := f.tab.log(); len(ev) != 0 {
						t.Errorf("%q before the prior record ended; want nothing", ev)
					}
					prior.End(recorded)
					f.batcher.Stop(context.Background())
					var want []string
					if recorded {
						want = []string{"if_absent " + cmdID(2)}
					}
					if ev := f.tab.log(); !slices.Equal(ev, want) {
						t.Errorf("ledger saw %q, want %q", ev, want)
					}
				})
			})
		}
	}
}

// A key's records stopped one behind the other, the first run without a
// claim, the second claimed: the second's late Finish follows the first's
// late outcome, and both follow the record before them, in order; where
// that one ended unrecorded, the first is not written and the second is
// released, both to run again after it.
func TestLateDoneChainsTheKey(t *testing.T) {
	for _, hard := range []bool{false, true} {
		for _, recorded := range []bool{true, false} {
			name := stops[hard] + map[bool]string{true: ", prior recorded", false: ", prior unrecorded"}[recorded]
			t.Run(name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					f := newFastRunners(t, 1, func(string) error { return nil })
					r, stop := bulkRunner(t, f, hard)
					prior := NewMark()
					var wg sync.WaitGroup
					ok := make([]bool, 2)
					bulk := startPrepared(r, f.prepare(t, r, record(2, "hello"))[0], prior, &wg, &ok[0])
					startAfter(r, record(3, "hello"), bulk, &wg, &ok[1]) // not peeked: claimed
					stop()
					wg.Wait()
					if slices.Contains(ok, true) {
						t.Errorf("runs ended recorded %v, though they were stopped before their outcomes were", ok)
					}
					synctest.Wait()
					if ev := f.tab.log(); len(ev) != 0 {
						t.Errorf("%q before the prior record ended; want nothing: a released claim runs again at once", ev)
					}
					prior.End(recorded)
					f.batcher.Stop(context.Background())
					want := []string{"if_absent " + cmdID(2), "finish " + cmdID(3)}
					if !recorded {
						want = []string{"release " + cmdID(3)}
					}
					if ev := f.tab.log(); !slices.Equal(ev, want) {
						t.Errorf("ledger saw %q, want %q", ev, want)
					}
				})
			})
		}
	}
}

// A command run without a claim whose outcome write was failing when the
// lease was lost (or the hard stop came) has its outcome written where no
// item holds its id (or, the lease still held, the failing bulk write
// lands at last), and the claimed command after it on its key learns how
// that went: recorded, its late Finish lands after it, instead of its
// claim being released for the next owner to run it again. Where an item
// was there (the next owner's claim: it runs the command again), the
// claimed one is released, to run again after it.
func TestLateDoneWrittenAfterTheStopCountsForTheNext(t *testing.T) {
	for _, hard := range []bool{false, true} {
		for _, alone := range []bool{true, false} {
			for _, taken := range []bool{false, true} {
				// Under a lease still held, the bulk write is a put that
				// nothing conditions: no item stops it.
				bulk := hard && !alone
				if taken && bulk {
					continue
				}
				name := stops[hard] + map[bool]string{true: ", written alone", false: ", written in a batch"}[alone] +
					map[bool]string{false: ", no item", true: ", the next owner's claim"}[taken]
				t.Run(name, func(t *testing.T) {
					synctest.Test(t, func(t *testing.T) {
						f := newFastRunners(t, 1, func(string) error { return nil })
						f.tab.failWrites = 3
						r, stop := bulkRunner(t, f, hard)
						if !alone {
							r.HardOrLost = nil
						}
						p := f.prepare(t, r, record(1, "hello"))[0]
						var wg sync.WaitGroup
						ok := make([]bool, 2)
						first := startPrepared(r, p, nil, &wg, &ok[0])
						startAfter(r, record(2, "hello"), first, &wg, &ok[1])
						if taken {
							f.tab.mu.Lock()
							f.tab.held[p.identity()] = true
							f.tab.mu.Unlock()
						}
						stop()
						wg.Wait()
						if slices.Contains(ok, true) {
							t.Errorf("runs ended recorded %v, though they were stopped before their outcomes were", ok)
						}
						f.batcher.Stop(context.Background())
						want := []string{"if_absent " + cmdID(1), "finish " + cmdID(2)}
						if bulk {
							want = want[1:]
							if by := f.tab.finishedBy[cmdID(1)]; by != "batch" {
								t.Errorf("the first outcome recorded by %q, want by the bulk write", by)
							}
						}
						if taken {
							want = []string{"release " + cmdID(2)}
						}
						if ev := f.tab.log(); !slices.Equal(ev, want) {
							t.Errorf("ledger saw %q, want %q", ev, want)
						}
					})
				})
			}
		}
	}
}

// The outcome of a command run without a claim waits for the previous
// record of its key no longer than a claim's timeout, nor past Stop's
// deadline: then nothing is written, and nothing out of order.
func TestLateDoneAwaitsThePriorWithinItsBounds(t *testing.T) {
	for _, deadline := range []bool{false, true} {
		name := map[bool]string{false: "claim timeout", true: "stop deadline"}[deadline]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFastRunners(t, 1, func(string) error { return nil })
				r, stop := bulkRunner(t, f, false)
				var wg sync.WaitGroup
				var ok bool
				start := time.Now()
				startPrepared(r, f.prepare(t, r, record(2, "hello"))[0], NewMark(), &wg, &ok) // a prior that never ends
				stop()
				wg.Wait()
				ctx := context.Background()
				if deadline {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, 3*time.Second)
					defer cancel()
				}
				f.batcher.Stop(ctx)
				took := time.Since(start)
				if ev := f.tab.log(); len(ev) != 0 {
					t.Errorf("ledger saw %q, want nothing", ev)
				}
				if want := map[bool]time.Duration{false: lateClaimTimeout, true: 3 * time.Second}[deadline]; took != want {
					t.Errorf("gave up after %v, want %v", took, want)
				}
			})
		})
	}
}
