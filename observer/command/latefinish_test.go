package command

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
)

// claims is a ledger in which every command is claimed: it answers Finish
// from a script (then lands it) and tells when each call came.
type claims struct {
	mu sync.Mutex
	// finishErrs are the answers of the first Finishes, in order.
	finishErrs []error
	finishes   []time.Time
	landed     map[string]outcomes.Final
	claimedAt  time.Time
	releases   []time.Time
}

func (l *claims) Claim(context.Context, outcomes.Claim) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.claimedAt = time.Now()
	return nil
}
func (l *claims) Extend(context.Context, outcomes.Identity) error  { return nil }
func (l *claims) Reject(context.Context, outcomes.Rejection) error { return nil }
func (l *claims) Peek(_ context.Context, cs []outcomes.Claim) ([]outcomes.Peeked, error) {
	return make([]outcomes.Peeked, len(cs)), nil
}
func (l *claims) RecordDone(context.Context, []outcomes.Done) error       { return nil }
func (l *claims) RecordDoneIfAbsent(context.Context, outcomes.Done) error { return nil }

func (l *claims) Finish(_ context.Context, id outcomes.Identity, f outcomes.Final) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.finishes = append(l.finishes, time.Now())
	if len(l.finishErrs) > 0 {
		err := l.finishErrs[0]
		l.finishErrs = l.finishErrs[1:]
		return err
	}
	l.landed[id.CommandID] = f
	return nil
}

func (l *claims) Release(context.Context, outcomes.Identity) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.releases = append(l.releases, time.Now())
	return nil
}

// logLines keeps what is logged, as "LEVEL message" lines.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (h *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (h *logLines) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logLines) WithGroup(string) slog.Handler            { return h }
func (h *logLines) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines = append(h.lines, r.Level.String()+" "+r.Message)
	return nil
}

func (h *logLines) find(level slog.Level, part string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.lines {
		if strings.HasPrefix(l, level.String()+" ") && strings.Contains(l, part) {
			return true
		}
	}
	return false
}

const lateClaimTimeout = 30 * time.Second

// claimedRunner runs every command claimed (no Memory) on led, with a
// Batcher, under a lease that the responder loses as it answers: "lose"
// executes the command, "lose-retry" fails it retryably. calls counts the
// responder's calls.
func claimedRunner(t *testing.T, led *claims, log *slog.Logger) (r *Runner, b *Batcher, calls *int) {
	t.Helper()
	calls = new(int)
	lost := make(chan struct{})
	d := responders.NewDispatcher(nil)
	d.Replace(map[string]responders.Enabled{"cmdslack": {ID: "slack", Module: "cmdslack", Responder: answer(func(text string) error {
		*calls++
		close(lost)
		if text == "lose-retry" {
			return responders.Retryable(errors.New("HTTP 503"), 0)
		}
		return nil
	})}})
	b = NewBatcher(led, log)
	b.Start()
	r = &Runner{
		Observer: "obs", Stream: "s", Shard: "shard-1",
		Dispatcher: d, Ledger: led, Batcher: b, ClaimTimeout: lateClaimTimeout,
		Lease:  Lease{Lost: lost, Fence: func() time.Time { return time.Now().Add(time.Hour) }},
		Intake: context.Background(), Hard: context.Background(),
		Log:       log,
		Attempted: func(string, responders.Verdict, time.Duration) {},
		Settled:   func(o Outcome) { t.Errorf("settled %+v: the lease was lost before its outcome was recorded", o) },
	}
	return r, b, calls
}

const lateID = "00000000-0000-4000-8000-000000000001"

// A claimed command that ran, whose Finish failed as the lease was lost,
// is not released for the next owner to run again: the Batcher goes on
// with its Finish (fenced on the claim) until it lands. The run still ends
// unrecorded, the shard being the next owner's to checkpoint.
func TestLateFinishAfterLeaseLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		led := &claims{landed: map[string]outcomes.Final{}, finishErrs: []error{errors.New("connection reset"), errors.New("throttled")}}
		r, b, calls := claimedRunner(t, led, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if r.Run(record(1, "lose")) {
			t.Error("the run ended recorded, though its lease was lost before its outcome was")
		}
		b.Stop(context.Background())
		led.mu.Lock()
		defer led.mu.Unlock()
		if f, ok := led.landed[lateID]; !ok || f.Verdict != verdict.Executed || f.Attempts != 1 {
			t.Errorf("outcome %+v (landed %v); want executed, 1 attempt", f, ok)
		}
		if len(led.finishes) != 3 {
			t.Errorf("%d Finishes, want 3 (two failed, one landed)", len(led.finishes))
		}
		if len(led.releases) != 0 {
			t.Errorf("claim released %d times: the next owner would run the command again", len(led.releases))
		}
		if *calls != 1 {
			t.Errorf("%d responder calls, want 1", *calls)
		}
	})
}

// A Finish that finds the claim taken over stops there, quietly: the new
// owner records the outcome.
func TestLateFinishClaimTakenOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		led := &claims{landed: map[string]outcomes.Final{}, finishErrs: []error{errors.New("connection reset"), outcomes.ErrClaimedElsewhere}}
		lines := &logLines{}
		r, b, _ := claimedRunner(t, led, slog.New(lines))
		if r.Run(record(1, "lose")) {
			t.Error("the run ended recorded")
		}
		b.Stop(context.Background())
		led.mu.Lock()
		defer led.mu.Unlock()
		if len(led.landed) != 0 || len(led.finishes) != 2 || len(led.releases) != 0 {
			t.Errorf("landed %v after %d Finishes, %d releases; want nothing landed after 2, no release", led.landed, len(led.finishes), len(led.releases))
		}
		if !lines.find(slog.LevelInfo, "another worker took its claim over") {
			t.Errorf("no INFO line for the claim taken over; logged %q", lines.lines)
		}
		if lines.find(slog.LevelError, "") {
			t.Errorf("errors logged: %q", lines.lines)
		}
	})
}

// Finish is retried until the claim expires by this worker's clock, not
// after; the claim is then only released (forgotten here), and Stop waits
// for all that.
func TestLateFinishEndsAtClaimExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		led := &claims{landed: map[string]outcomes.Final{}, finishErrs: unavailable(1000)}
		r, b, _ := claimedRunner(t, led, slog.New(slog.NewTextHandler(io.Discard, nil)))
		r.Run(record(1, "lose"))
		b.Stop(context.Background())
		led.mu.Lock()
		defer led.mu.Unlock()
		expiry := led.claimedAt.Add(lateClaimTimeout)
		if len(led.finishes) < 3 {
			t.Errorf("%d Finishes: not retried", len(led.finishes))
		}
		for i, at := range led.finishes {
			if !at.Before(expiry) {
				t.Errorf("Finish %d at %v, past the claim's expiry (%v after the claim)", i, at, at.Sub(led.claimedAt))
			}
		}
		if len(led.releases) != 1 || led.releases[0].Before(expiry) {
			t.Errorf("releases at %v; want one, once the claim expired (%v)", led.releases, expiry)
		}
	})
}

// Stop's deadline ends the retries before the claim expires.
func TestLateFinishEndsWithTheBatcher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		led := &claims{landed: map[string]outcomes.Final{}, finishErrs: unavailable(1000)}
		r, b, _ := claimedRunner(t, led, slog.New(slog.NewTextHandler(io.Discard, nil)))
		r.Run(record(1, "lose"))
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		b.Stop(ctx)
		led.mu.Lock()
		defer led.mu.Unlock()
		if len(led.releases) != 1 || !led.releases[0].Before(led.claimedAt.Add(lateClaimTimeout)) {
			t.Errorf("releases at %v; want one, at Stop's deadline", led.releases)
		}
		if last := led.finishes[len(led.finishes)-1]; last.After(led.releases[0]) {
			t.Errorf("Finish at %v after the retries ended at %v", last, led.releases[0])
		}
		// Nothing is started once the Batcher stopped: a run releases.
		if b.finishLate(lateFinish{ledger: led, id: outcomes.Identity{CommandID: "x"}, expires: time.Now().Add(time.Minute)}) != nil {
			t.Error("a late Finish was taken by a stopped Batcher")
		}
	})
}

// A command that did not run to an outcome (its attempt failed retryably as
// the lease was lost) is released, as before, and nothing is recorded.
func TestLeaseLostBeforeAnOutcomeReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		led := &claims{landed: map[string]outcomes.Final{}}
		r, b, calls := claimedRunner(t, led, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if r.Run(record(1, "lose-retry")) {
			t.Error("the run ended recorded")
		}
		b.Stop(context.Background())
		led.mu.Lock()
		defer led.mu.Unlock()
		if len(led.releases) != 1 || len(led.finishes) != 0 || *calls != 1 {
			t.Errorf("%d releases, %d Finishes, %d calls; want the claim released, no Finish, one call", len(led.releases), len(led.finishes), *calls)
		}
	})
}

// unavailable is n answers of a ledger that cannot be reached.
func unavailable(n int) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = errors.New("service unavailable")
	}
	return errs
}
