package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/observer/verdict"
)

// fenceWriter is an outcome table as the Batcher sees it: items holds what
// is stored under each id ("bulk" or "if_absent" for what the Batcher
// wrote, anything else for what a test put there as another worker's). It
// records each bulk write's ids and time, and each conditional write's id
// and context deadline. A bulk write whose first outcome hang names waits
// for its context to end; the conditional writes fail while down is set,
// and the first failFirst of them fail too.
type fenceWriter struct {
	mu     sync.Mutex
	items  map[string]string
	writes [][]string
	at     []time.Time
	ends   []time.Time // each hung write's context deadline (zero: none)
	hang   string

	ifAbsent     []string    // the ids of the conditional writes, in order
	ifAbsentEnds []time.Time // their contexts' deadlines (zero: none)
	failFirst    int
	down         bool
}

func newFenceWriter() *fenceWriter { return &fenceWriter{items: map[string]string{}} }

func (w *fenceWriter) RecordDone(ctx context.Context, done []outcomes.Done) error {
	ids := make([]string, len(done))
	for i, d := range done {
		ids[i] = d.Claim.CommandID
	}
	if ids[0] == w.hang {
		dl, _ := ctx.Deadline()
		w.mu.Lock()
		w.ends = append(w.ends, dl)
		w.mu.Unlock()
		<-ctx.Done()
		return ctx.Err()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writes = append(w.writes, ids)
	w.at = append(w.at, time.Now())
	for _, id := range ids {
		w.items[id] = "bulk"
	}
	return nil
}

func (w *fenceWriter) RecordDoneIfAbsent(ctx context.Context, d outcomes.Done) error {
	dl, _ := ctx.Deadline()
	w.mu.Lock()
	defer w.mu.Unlock()
	id := d.Claim.CommandID
	w.ifAbsent = append(w.ifAbsent, id)
	w.ifAbsentEnds = append(w.ifAbsentEnds, dl)
	if w.down || w.failFirst > 0 {
		w.failFirst--
		return errors.New("connection reset")
	}
	if _, ok := w.items[id]; ok {
		return fmt.Errorf("record %s: %w", id, outcomes.ErrItemExists)
	}
	w.items[id] = "if_absent"
	return nil
}

// state returns copies of what w holds and was asked.
func (w *fenceWriter) state() (items map[string]string, writes [][]string, ifAbsent []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.items), slices.Clone(w.writes), slices.Clone(w.ifAbsent)
}

// testLease is a shard lease a test renews, lets run out and loses.
type testLease struct {
	mu    sync.Mutex
	until time.Time
	lost  chan struct{}
}

func newTestLease(until time.Time) *testLease {
	return &testLease{until: until, lost: make(chan struct{})}
}

func (l *testLease) lease() Lease {
	return Lease{Lost: l.lost, Fence: func() time.Time {
		l.mu.Lock()
		defer l.mu.Unlock()
		select {
		case <-l.lost:
			return time.Time{}
		default:
			return l.until
		}
	}}
}

func (l *testLease) renew(until time.Time) {
	l.mu.Lock()
	l.until = until
	l.mu.Unlock()
}

func fenceDone(id string) outcomes.Done {
	return outcomes.Done{Claim: outcomes.Claim{CommandID: id, Digest: "d", Shard: "s", Sequence: id},
		Final: outcomes.Final{Verdict: verdict.Executed}}
}

// The bulk outcome writes, puts that nothing conditions in the table, are
// fenced on the shard leases their commands ran under: an outcome whose
// lease is lost never goes in one (the shard's next owner may have claimed
// the command again, and a late put would replace its claim or outcome),
// while the other outcomes of its write do; it is written alone instead,
// only where no item holds its id, so that a command that ran is not run
// again by the next owner for want of its outcome, and whatever that owner
// wrote stays. An outcome whose lease is past its fence waits for a
// renewal that comes late; and a bulk write in flight ends at the earliest
// fence of its outcomes, its outcomes whose lease is then lost going the
// conditional way.
func TestBatcherWritesAreFencedOnTheLease(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	// Two runs, one under a held lease and one under a lost one, hand
	// their outcomes to one batch; items is what the table holds before.
	lostAndHeld := func(t *testing.T, w *fenceWriter) {
		t.Helper()
		b := NewBatcher(w, log)
		b.Start()
		held, gone := newTestLease(time.Now().Add(time.Hour)), newTestLease(time.Now().Add(time.Hour))
		close(gone.lost)
		// Two runs about to record: the batch waits for both.
		b.begin()
		b.begin()
		btGone, _ := b.add(fenceDone("zombie"), "zombie", gone.lease(), true, false, nil)
		btHeld, _ := b.add(fenceDone("held"), "held", held.lease(), true, false, nil)
		if btGone != btHeld {
			t.Fatal("the two outcomes went to different writes")
		}
		if ok, err := btHeld.wait(context.Background(), held.lost); !ok {
			t.Errorf("outcome under a held lease: %v", err)
		}
		if ok, err := btGone.wait(context.Background(), gone.lost); ok || !errors.Is(err, errLeaseLost) {
			t.Errorf("outcome whose lease is lost: recorded %v, %v; want unrecorded, the lease lost", ok, err)
		}
		b.Stop(context.Background())
		_, writes, ifAbsent := w.state()
		if len(writes) != 1 || !slices.Equal(writes[0], []string{"held"}) {
			t.Errorf("bulk writes %v, want one, of the outcome under the held lease alone", writes)
		}
		if !slices.Equal(ifAbsent, []string{"zombie"}) {
			t.Errorf("conditional writes %v, want one, of the outcome whose lease is lost", ifAbsent)
		}
	}

	t.Run("lost, no item", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newFenceWriter()
			lostAndHeld(t, w)
			items, _, _ := w.state()
			if items["zombie"] != "if_absent" || items["held"] != "bulk" {
				t.Errorf("table %v, want the held lease's outcome put in bulk, the lost one's where no item was", items)
			}
		})
	})

	t.Run("lost, another owner's item", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newFenceWriter()
			// The shard's next owner claimed the command again.
			w.items["zombie"] = "next owner's claim"
			lostAndHeld(t, w)
			items, _, _ := w.state()
			if items["zombie"] != "next owner's claim" {
				t.Errorf("the next owner's item became %q", items["zombie"])
			}
		})
	})

	t.Run("lost, conditional write retried", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newFenceWriter()
			w.failFirst = 2
			b := NewBatcher(w, log)
			b.Start()
			l := newTestLease(time.Now().Add(time.Hour))
			close(l.lost)
			bt, _ := b.add(fenceDone("zombie"), "zombie", l.lease(), false, false, nil)
			if ok, _ := bt.wait(context.Background(), l.lost); ok {
				t.Error("an outcome whose lease is lost counted as recorded")
			}
			b.Stop(context.Background())
			items, writes, ifAbsent := w.state()
			if len(writes) != 0 || !slices.Equal(ifAbsent, []string{"zombie", "zombie", "zombie"}) || items["zombie"] != "if_absent" {
				t.Errorf("bulk writes %v, conditional writes %v, table %v; want three conditional writes, the last landing", writes, ifAbsent, items)
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			for i, dl := range w.ifAbsentEnds {
				if !dl.IsZero() {
					t.Errorf("conditional write %d ended at %v: it is bounded by the Batcher's stop, not a fence", i, dl)
				}
			}
		})
	})

	t.Run("lost, conditional write ended by the stop", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newFenceWriter()
			w.down = true
			b := NewBatcher(w, log)
			b.Start()
			l := newTestLease(time.Now().Add(time.Hour))
			close(l.lost)
			b.add(fenceDone("zombie"), "zombie", l.lease(), false, false, nil)
			synctest.Wait()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			b.Stop(ctx) // returns once the loop ended: the write is given up
			items, _, ifAbsent := w.state()
			if len(ifAbsent) == 0 || len(items) != 0 {
				t.Errorf("conditional writes %v, table %v; want tries, none landing", ifAbsent, items)
			}
		})
	})

	t.Run("late renewal", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newFenceWriter()
			b := NewBatcher(w, log)
			b.Start()
			defer b.Stop(context.Background())
			l := newTestLease(time.Now().Add(-time.Second))
			renewed := time.Now().Add(3 * time.Second)
			go func() {
				time.Sleep(time.Until(renewed))
				l.renew(time.Now().Add(time.Hour))
			}()
			if _, alone := b.add(fenceDone("late"), "late", l.lease(), false, true, nil); !alone {
				t.Fatal("a lone outcome was not left to its run")
			}
			if _, err := b.writeAlone(context.Background(), fenceDone("late"), l.lease()); err != nil {
				t.Fatal(err)
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			if len(w.writes) != 1 || w.at[0].Before(renewed) || len(w.ifAbsent) != 0 {
				t.Errorf("written %v at %v (conditionally: %v), want once, in bulk, after the renewal at %v", w.writes, w.at, w.ifAbsent, renewed)
			}
		})
	})

	// A run writing its outcome alone does so under a context that ends
	// once its lease is lost (Runner.HardOrLost); the outcome is then
	// handed to the loop, which writes it under the Batcher's own.
	t.Run("lost while a run writes alone", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newFenceWriter()
			w.hang = "alone"
			b := NewBatcher(w, log)
			b.Start()
			l := newTestLease(time.Now().Add(time.Hour))
			hardOrLost, cancel := l.lease().Context(context.Background())
			defer cancel()
			go func() {
				time.Sleep(time.Second)
				close(l.lost)
			}()
			if _, alone := b.add(fenceDone("alone"), "alone", l.lease(), false, true, nil); !alone {
				t.Fatal("a lone outcome was not left to its run")
			}
			if _, err := b.writeAlone(hardOrLost, fenceDone("alone"), l.lease()); !errors.Is(err, errLeaseLost) {
				t.Errorf("write alone under a lease lost meanwhile: %v, want the lease lost", err)
			}
			b.Stop(context.Background())
			items, writes, ifAbsent := w.state()
			if len(writes) != 0 || !slices.Equal(ifAbsent, []string{"alone"}) || items["alone"] != "if_absent" {
				t.Errorf("bulk writes %v, conditional writes %v, table %v; want the outcome written once, conditionally", writes, ifAbsent, items)
			}
		})
	})

	// The fence passes during a bulk write and the renewal fails: the
	// write is cut off at the fence, and its outcomes, whose lease is then
	// lost, go the conditional way, in order, before the batch lands (an
	// outcome parked on it comes after them).
	for _, alone := range []bool{true, false} {
		t.Run(fmt.Sprintf("fence passes during the write, alone=%v", alone), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newFenceWriter()
				w.hang = "slow"
				// The second outcome was put meanwhile by the next owner.
				w.items["taken"] = "next owner's outcome"
				b := NewBatcher(w, log)
				b.Start()
				fence := time.Now().Add(2 * time.Second)
				l := newTestLease(fence)
				go func() {
					// The renewal fails: the lease is found lost after its fence.
					time.Sleep(5 * time.Second)
					close(l.lost)
				}()
				if alone {
					if _, alone := b.add(fenceDone("slow"), "slow", l.lease(), false, true, nil); !alone {
						t.Fatal("a lone outcome was not left to its run")
					}
					_, err := b.writeAlone(context.Background(), fenceDone("slow"), l.lease())
					if !errors.Is(err, errLeaseLost) {
						t.Errorf("write under a lease that ran out and was lost: %v, want the lease lost", err)
					}
				} else {
					b.begin()
					b.begin()
					bt, _ := b.add(fenceDone("slow"), "slow", l.lease(), true, false, nil)
					b.add(fenceDone("taken"), "taken", l.lease(), true, false, nil)
					synctest.Wait() // the write is out
					parked, _ := b.add(fenceDone("after"), "after", l.lease(), false, false, bt)
					if ok, err := bt.wait(context.Background(), l.lost); ok || !errors.Is(err, errLeaseLost) {
						t.Errorf("outcome whose write was cut off and lease lost: recorded %v, %v", ok, err)
					}
					if ok, _ := parked.wait(context.Background(), l.lost); ok {
						t.Error("an outcome parked under a lost lease counted as recorded")
					}
				}
				b.Stop(context.Background())
				items, writes, ifAbsent := w.state()
				w.mu.Lock()
				ends := slices.Clone(w.ends)
				w.mu.Unlock()
				if len(ends) != 1 || !ends[0].Equal(fence) {
					t.Errorf("bulk write deadlines %v, want one, at the fence %v", ends, fence)
				}
				if len(writes) != 0 {
					t.Errorf("bulk writes %v after the fence", writes)
				}
				want := []string{"slow"}
				if !alone {
					want = []string{"slow", "taken", "after"}
				}
				if !slices.Equal(ifAbsent, want) {
					t.Errorf("conditional writes %v, want %v", ifAbsent, want)
				}
				if items["slow"] != "if_absent" || !alone && (items["taken"] != "next owner's outcome" || items["after"] != "if_absent") {
					t.Errorf("table %v: the cut-off outcomes are written where no item was, and the next owner's outcome stays", items)
				}
			})
		})
	}
}

// The outcomes of one partition key whose lease is lost go the conditional
// way in order, and one of them that finds an item under its id (the next
// owner's claim: it runs that command again) stops the key's later ones
// there: written, they would be found done by the next owner, which would
// skip them after running the earlier command again, and the key's last
// effect would be an earlier command's. The later ones are unrecorded, as
// the missed one is, and the next owner runs them again after it. Outcomes
// of other keys go on.
func TestLostOutcomesOfAKeyStopAtTheFirstFoundTaken(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	check := func(t *testing.T, w *fenceWriter, bts map[string]*batch) {
		t.Helper()
		items, writes, ifAbsent := w.state()
		if len(writes) != 0 {
			t.Errorf("bulk writes %v under a lost lease", writes)
		}
		if items["second"] != "" || items["third"] != "" {
			t.Errorf("table %v: a later outcome of the key was written after its earlier one was found taken", items)
		}
		if items["other"] != "if_absent" {
			t.Errorf("table %v: the outcome of another key was not written", items)
		}
		if slices.Contains(ifAbsent, "second") || slices.Contains(ifAbsent, "third") {
			t.Errorf("conditional writes %v: tried a later outcome of the key", ifAbsent)
		}
		for id, bt := range bts {
			want := id == "other"
			if got := bt.recorded(context.Background(), fenceDone(id).Claim.Identity()); got != want {
				t.Errorf("%s counts as recorded %v, want %v", id, got, want)
			}
		}
	}

	t.Run("one write", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newFenceWriter()
			w.items["first"] = "next owner's claim"
			b := NewBatcher(w, log)
			b.Start()
			l := newTestLease(time.Now().Add(time.Hour))
			close(l.lost)
			for range 4 {
				b.begin()
			}
			bts := map[string]*batch{}
			bts["first"], _ = b.add(fenceDone("first"), "k", l.lease(), true, false, nil)
			bts["other"], _ = b.add(fenceDone("other"), "o", l.lease(), true, false, nil)
			bts["second"], _ = b.add(fenceDone("second"), "k", l.lease(), true, false, bts["first"])
			bts["third"], _ = b.add(fenceDone("third"), "k", l.lease(), true, false, bts["second"])
			if bts["first"] != bts["third"] || bts["first"] != bts["other"] {
				t.Fatal("the outcomes went to different writes")
			}
			b.Stop(context.Background())
			check(t, w, bts)
		})
	})

	// The lease is found lost between the key's two outcomes of one write:
	// the later one leaves the bulk write first, the earlier one only once
	// that write is cut off at the fence; they still go the conditional
	// way in the key's order.
	t.Run("lost between the outcomes of a write", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newFenceWriter()
			w.items["first"] = "next owner's claim"
			w.hang = "first"
			b := NewBatcher(w, log)
			b.Start()
			lost, until := make(chan struct{}), time.Now().Add(time.Hour)
			var fences atomic.Int32
			l := Lease{Lost: lost, Fence: func() time.Time {
				if fences.Add(1) == 2 {
					close(lost)
				}
				if isClosed(lost) {
					return time.Time{}
				}
				return until
			}}
			for range 3 {
				b.begin()
			}
			bts := map[string]*batch{}
			bts["first"], _ = b.add(fenceDone("first"), "k", l, true, false, nil)
			bts["second"], _ = b.add(fenceDone("second"), "k", l, true, false, bts["first"])
			bts["other"], _ = b.add(fenceDone("other"), "o", l, true, false, nil)
			b.Stop(context.Background())
			check(t, w, bts)
		})
	})

	// The later outcomes were parked on the earlier one's write, out as
	// the lease was lost; or queued once it had landed, by a run that
	// had not seen the earlier one's run end.
	for _, parked := range []bool{true, false} {
		t.Run(fmt.Sprintf("later write, parked=%v", parked), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newFenceWriter()
				w.items["first"] = "next owner's claim"
				w.hang = "first"
				b := NewBatcher(w, log)
				b.Start()
				l := newTestLease(time.Now().Add(time.Hour))
				bts := map[string]*batch{}
				bts["first"], _ = b.add(fenceDone("first"), "k", l.lease(), false, false, nil)
				synctest.Wait() // the write is out
				if parked {
					bts["second"], _ = b.add(fenceDone("second"), "k", l.lease(), false, false, bts["first"])
				}
				close(l.lost)
				<-bts["first"].done
				if !parked {
					bts["second"], _ = b.add(fenceDone("second"), "k", l.lease(), false, false, bts["first"])
				}
				bts["third"], _ = b.add(fenceDone("third"), "k", l.lease(), false, false, bts["second"])
				bts["other"], _ = b.add(fenceDone("other"), "o", l.lease(), false, false, nil)
				b.Stop(context.Background())
				check(t, w, bts)
			})
		})
	}
}
