package command

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/observer/verdict"
)

// fenceWriter records the outcomes of each write, and when it was made. A
// write whose first outcome hang names waits for its context to end.
type fenceWriter struct {
	mu     sync.Mutex
	writes [][]string
	at     []time.Time
	ends   []time.Time // each write's context deadline (zero: none)
	hang   string
}

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
	return nil
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

// The outcome writes, puts that nothing conditions in the table, are
// fenced on the shard leases their commands ran under: an outcome whose
// lease is lost is never written (the shard's next owner may have claimed
// the command again, and a late put would replace its claim or outcome),
// while the other outcomes of its write are; one whose lease is past its
// fence waits for a renewal that comes late; and a write in flight ends at
// the earliest fence of its outcomes.
func TestBatcherWritesAreFencedOnTheLease(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	t.Run("lost", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := &fenceWriter{}
			b := NewBatcher(w, log)
			b.Start()
			defer b.Stop(context.Background())
			held, gone := newTestLease(time.Now().Add(time.Hour)), newTestLease(time.Now().Add(time.Hour))
			close(gone.lost)
			// Two runs about to record: the batch waits for both.
			b.begin()
			b.begin()
			btGone, _ := b.add(fenceDone("zombie"), gone.lease(), true, false, nil)
			btHeld, _ := b.add(fenceDone("held"), held.lease(), true, false, nil)
			if btGone != btHeld {
				t.Fatal("the two outcomes went to different writes")
			}
			if ok, err := btHeld.wait(context.Background(), held.lost); !ok {
				t.Errorf("outcome under a held lease: %v", err)
			}
			if ok, _ := btGone.wait(context.Background(), gone.lost); ok {
				t.Error("an outcome whose lease is lost counted as recorded")
			}
			synctest.Wait()
			w.mu.Lock()
			defer w.mu.Unlock()
			if len(w.writes) != 1 || !slices.Equal(w.writes[0], []string{"held"}) {
				t.Errorf("writes %v, want one, of the outcome under the held lease alone", w.writes)
			}
		})
	})

	t.Run("late renewal", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := &fenceWriter{}
			b := NewBatcher(w, log)
			b.Start()
			defer b.Stop(context.Background())
			l := newTestLease(time.Now().Add(-time.Second))
			renewed := time.Now().Add(3 * time.Second)
			go func() {
				time.Sleep(time.Until(renewed))
				l.renew(time.Now().Add(time.Hour))
			}()
			if _, alone := b.add(fenceDone("late"), l.lease(), false, true, nil); !alone {
				t.Fatal("a lone outcome was not left to its run")
			}
			if err := b.writeAlone(context.Background(), fenceDone("late"), l.lease()); err != nil {
				t.Fatal(err)
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			if len(w.writes) != 1 || w.at[0].Before(renewed) {
				t.Errorf("written %v at %v, want once, after the renewal at %v", w.writes, w.at, renewed)
			}
		})
	})

	t.Run("fence passes during the write", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := &fenceWriter{hang: "slow"}
			b := NewBatcher(w, log)
			b.Start()
			defer b.Stop(context.Background())
			fence := time.Now().Add(2 * time.Second)
			l := newTestLease(fence)
			go func() {
				// The renewal fails: the lease is found lost after its fence.
				time.Sleep(5 * time.Second)
				close(l.lost)
			}()
			if _, alone := b.add(fenceDone("slow"), l.lease(), false, true, nil); !alone {
				t.Fatal("a lone outcome was not left to its run")
			}
			err := b.writeAlone(context.Background(), fenceDone("slow"), l.lease())
			if !errors.Is(err, errLeaseLost) {
				t.Errorf("write under a lease that ran out and was lost: %v, want the lease lost", err)
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			if len(w.ends) != 1 || !w.ends[0].Equal(fence) {
				t.Errorf("write deadlines %v, want one, at the fence %v", w.ends, fence)
			}
			if len(w.writes) != 0 {
				t.Errorf("writes %v after the fence", w.writes)
			}
		})
	})
}
