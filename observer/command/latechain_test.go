package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/responders"
)

// keyedClaims is a ledger in which every command is claimed. The Finish of
// a command answers the error the test set for it (down), else lands; it
// logs the Finishes that landed and the releases, in order.
type keyedClaims struct {
	mu     sync.Mutex
	down   map[string]error
	events []string
}

func (l *keyedClaims) Claim(context.Context, outcomes.Claim) error      { return nil }
func (l *keyedClaims) Extend(context.Context, outcomes.Identity) error  { return nil }
func (l *keyedClaims) Reject(context.Context, outcomes.Rejection) error { return nil }
func (l *keyedClaims) Peek(_ context.Context, cs []outcomes.Claim) ([]outcomes.Peeked, error) {
	return make([]outcomes.Peeked, len(cs)), nil
}
func (l *keyedClaims) RecordDone(context.Context, []outcomes.Done) error       { return nil }
func (l *keyedClaims) RecordDoneIfAbsent(context.Context, outcomes.Done) error { return nil }

func (l *keyedClaims) Finish(_ context.Context, id outcomes.Identity, _ outcomes.Final) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.down[id.CommandID]; err != nil {
		return err
	}
	l.events = append(l.events, "finish "+id.CommandID)
	return nil
}

func (l *keyedClaims) Release(_ context.Context, id outcomes.Identity) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, "release "+id.CommandID)
	return nil
}

func (l *keyedClaims) setDown(id string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down[id] = err
}

func (l *keyedClaims) log() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// cmdID is the commandId of record(n, ...).
func cmdID(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

// keyedRunner runs every command claimed (no Memory) on led, with a
// Batcher; stop ends the runs as the lease lost (hard false) or the hard
// stop (hard true) does.
func keyedRunner(t *testing.T, led *keyedClaims, hard bool) (r *Runner, b *Batcher, stop func()) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	lost := make(chan struct{})
	hardCtx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stop = func() { close(lost) }
	if hard {
		stop = cancel
	}
	d := responders.NewDispatcher(nil)
	d.Replace(map[string]responders.Enabled{"cmdslack": {ID: "slack", Module: "cmdslack", Responder: answer(func(string) error { return nil })}})
	b = NewBatcher(led, log)
	b.Start()
	r = &Runner{
		Observer: "obs", Stream: "s", Shard: "shard-1",
		Dispatcher: d, Ledger: led, Batcher: b, ClaimTimeout: lateClaimTimeout,
		Lease:  Lease{Lost: lost, Fence: func() time.Time { return time.Now().Add(time.Hour) }},
		Intake: context.Background(), Hard: hardCtx,
		Log:       log,
		Attempted: func(string, responders.Verdict, time.Duration) {},
		Settled:   func(o Outcome) { t.Errorf("settled %+v: the run was stopped before its outcome was recorded", o) },
	}
	return r, b, stop
}

// startAfter runs rec on r as the next record of its key after prior, as
// the source does (the Mark returned is ended once the run returned), and
// waits until the run released its key and blocked. Call it in a synctest
// bubble.
func startAfter(r *Runner, rec Record, prior *Mark, wg *sync.WaitGroup, ok *bool) *Mark {
	return startPrepared(r, r.Prepare(rec), prior, wg, ok)
}

// startPrepared is startAfter for a record prepared (and peeked) already.
func startPrepared(r *Runner, p Prepared, prior *Mark, wg *sync.WaitGroup, ok *bool) *Mark {
	mark := NewMark()
	released := make(chan struct{})
	wg.Go(func() {
		*ok = r.Execute(&p, Turn{Released: ReleaseFunc(func() { close(released) }), Prior: prior, Mark: mark})
		mark.End(*ok)
	})
	<-released
	synctest.Wait()
	return mark
}

var stops = map[bool]string{false: "lease lost", true: "hard stop"}

// Claimed commands of one key ran; the first one's Finish is failing, and
// the others wait for it, when the lease is lost or the hard stop comes.
// None of their claims is released, which would let the next owner claim
// and run them again at once: the first one's Finish goes on in the
// Batcher, and each later one's follows the one before it lands, in the
// key's order. Where the first one's claim was taken over instead, its
// command runs again, and so the later ones are released to run again
// after it.
func TestLateFinishFollowsThePriorsLateFinish(t *testing.T) {
	for _, hard := range []bool{false, true} {
		for _, takenOver := range []bool{false, true} {
			name := stops[hard] + map[bool]string{false: ", lands", true: ", taken over"}[takenOver]
			t.Run(name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					led := &keyedClaims{down: map[string]error{cmdID(1): errors.New("service unavailable")}}
					r, b, stop := keyedRunner(t, led, hard)
					var wg sync.WaitGroup
					ok := make([]bool, 3)
					var prior *Mark
					for i := range ok {
						prior = startAfter(r, record(i+1, "hello"), prior, &wg, &ok[i])
					}
					stop()
					wg.Wait()
					if slices.Contains(ok, true) {
						t.Errorf("runs ended recorded %v, though they were stopped before their outcomes were", ok)
					}
					synctest.Wait()
					if ev := led.log(); len(ev) != 0 {
						t.Errorf("%q while the first Finish is failing; want nothing: a released claim runs again at once", ev)
					}
					want := []string{"finish " + cmdID(1), "finish " + cmdID(2), "finish " + cmdID(3)}
					if takenOver {
						led.setDown(cmdID(1), outcomes.ErrClaimedElsewhere)
						want = []string{"release " + cmdID(2), "release " + cmdID(3)}
					} else {
						led.setDown(cmdID(1), nil)
					}
					b.Stop(context.Background())
					if ev := led.log(); !slices.Equal(ev, want) {
						t.Errorf("ledger saw %q, want %q", ev, want)
					}
				})
			})
		}
	}
}

// A claimed command that ran and was stopped while waiting for the
// previous record of its key keeps its claim until that record ends: it is
// then recorded after a recorded one, and released after one that ended
// unrecorded (which runs again, and this one after it).
func TestLateFinishAwaitsThePriorRecord(t *testing.T) {
	for _, hard := range []bool{false, true} {
		for _, recorded := range []bool{true, false} {
			name := stops[hard] + map[bool]string{true: ", prior recorded", false: ", prior unrecorded"}[recorded]
			t.Run(name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					led := &keyedClaims{down: map[string]error{}}
					r, b, stop := keyedRunner(t, led, hard)
					prior := NewMark()
					var wg sync.WaitGroup
					var ok bool
					startAfter(r, record(2, "hello"), prior, &wg, &ok)
					stop()
					wg.Wait()
					if ok {
						t.Error("the run ended recorded, though it was stopped before its outcome was")
					}
					synctest.Wait()
					if ev := led.log(); len(ev) != 0 {
						t.Errorf("%q before the prior record ended; want nothing", ev)
					}
					prior.End(recorded)
					b.Stop(context.Background())
					want := map[bool]string{true: "finish ", false: "release "}[recorded] + cmdID(2)
					if ev := led.log(); !slices.Equal(ev, []string{want}) {
						t.Errorf("ledger saw %q, want %q", ev, want)
					}
				})
			})
		}
	}
}

// A claimed command whose previous record of the key ended unrecorded, its
// run going on, records nothing and releases its claim: it runs again after
// that record (per-key order).
func TestPriorUnrecordedReleasesTheClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		led := &keyedClaims{down: map[string]error{}}
		r, b, _ := keyedRunner(t, led, false)
		prior := NewMark()
		prior.End(false)
		p := r.Prepare(record(2, "hello"))
		if r.Execute(&p, Turn{Prior: prior}) {
			t.Error("the run ended recorded after its prior record ended unrecorded")
		}
		b.Stop(context.Background())
		if ev, want := led.log(), []string{"release " + cmdID(2)}; !slices.Equal(ev, want) {
			t.Errorf("ledger saw %q, want %q", ev, want)
		}
	})
}

// A late Finish waits for the previous record of its key no longer than
// its claim holds, by this worker's clock, nor past Stop's deadline: then
// the claim is released, unfinished, and nothing is recorded out of order.
func TestLateFinishAwaitsThePriorWithinItsBounds(t *testing.T) {
	for _, deadline := range []bool{false, true} {
		name := map[bool]string{false: "claim expiry", true: "stop deadline"}[deadline]
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				led := &keyedClaims{down: map[string]error{}}
				r, b, stop := keyedRunner(t, led, false)
				var wg sync.WaitGroup
				var ok bool
				start := time.Now()
				startAfter(r, record(2, "hello"), NewMark(), &wg, &ok) // a prior that never ends
				stop()
				wg.Wait()
				ctx := context.Background()
				if deadline {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, 3*time.Second)
					defer cancel()
				}
				b.Stop(ctx)
				took := time.Since(start)
				if ev, want := led.log(), []string{"release " + cmdID(2)}; !slices.Equal(ev, want) {
					t.Errorf("ledger saw %q, want %q", ev, want)
				}
				if want := map[bool]time.Duration{false: lateClaimTimeout, true: 3 * time.Second}[deadline]; took != want {
					t.Errorf("released after %v, want %v", took, want)
				}
			})
		})
	}
}

// A claimed command whose Finish finds its claim taken over (this worker
// was frozen, or cut off from the ledger, past the claim's lifetime) ends
// unrecorded, saying so: the new holder of the claim runs it again, so the
// next record of its key must not be recorded before that run, and is
// released to run again after it. Recorded, it would be found done by the
// shard's next owner, which would skip it after running the earlier
// command again.
func TestFinishClaimTakenOverLeavesTheKeyUnrecorded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		led := &keyedClaims{down: map[string]error{cmdID(1): fmt.Errorf("finish: %w", outcomes.ErrClaimedElsewhere)}}
		r, b, _ := keyedRunner(t, led, false)
		var wg sync.WaitGroup
		ok := make([]bool, 2)
		first, why := NewMark(), &whyStopped{}
		released := make(chan struct{})
		// The first record waits, its effect final, until the second one
		// was started after it.
		gate := make(chan struct{})
		p := r.Prepare(record(1, "hello"))
		wg.Go(func() {
			ok[0] = r.Execute(&p, Turn{Released: ReleaseFunc(func() { close(released); <-gate }), Mark: first, Stopped: why})
			first.End(ok[0])
		})
		<-released
		wg.Go(func() {
			p := r.Prepare(record(2, "hello"))
			ok[1] = r.Execute(&p, Turn{Prior: first})
		})
		synctest.Wait()
		close(gate)
		wg.Wait()
		b.Stop(context.Background())
		if ok[0] || ok[1] {
			t.Errorf("runs ended recorded %v; want neither: the first command runs again elsewhere", ok)
		}
		if len(why.whys) != 1 || !errors.Is(why.whys[0], ErrClaimTakenOver) || !errors.Is(why.whys[0], outcomes.ErrClaimedElsewhere) {
			t.Errorf("the first run told %v, want its claim taken over", why.whys)
		}
		if ev, want := led.log(), []string{"release " + cmdID(2)}; !slices.Equal(ev, want) {
			t.Errorf("ledger saw %q, want %q", ev, want)
		}
	})
}
