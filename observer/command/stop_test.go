package command

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sauna-io/sauna/observer/deadletter"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/responders"
)

// extending is a ledger whose Extend fails with err.
type extending struct {
	*ledger
	err error
}

func (l extending) Extend(context.Context, outcomes.Identity) error { return l.err }

// failingLetters refuses every dead letter.
type failingLetters struct{}

func (failingLetters) Put(context.Context, deadletter.Letter) error {
	return errors.New("ValidationException: refused")
}

// whyStopped keeps what Turn.Stopped was told.
type whyStopped struct{ whys []error }

func (w *whyStopped) Stopped(why error) { w.whys = append(w.whys, why) }

// A run that stops short while its lease is held says why, as an error of
// its class wrapping what failed; a run that stops for a stop says nothing.
func TestStoppedSaysWhy(t *testing.T) {
	unrecorded := NewMark()
	unrecorded.End(false)
	for _, tc := range []struct {
		name   string
		answer error // the responder's, every attempt
		ledger Ledger
		dl     DeadLetters
		prior  *Mark
		stop   bool // intake ends after the first attempt
		want   error
		wraps  error
	}{
		{name: "claim taken over", answer: responders.Retryable(errors.New("HTTP 503"), 0),
			ledger: extending{err: outcomes.ErrClaimedElsewhere}, want: ErrClaimTakenOver, wraps: outcomes.ErrClaimedElsewhere},
		{name: "claim expired", answer: responders.Retryable(errors.New("HTTP 503"), 2*time.Minute),
			ledger: extending{err: errors.New("dynamodb unreachable")}, want: ErrClaimExpired},
		{name: "dead letter not written", answer: responders.Permanent(errors.New("HTTP 400")),
			dl: failingLetters{}, want: ErrDeadLetterNotWritten},
		{name: "earlier record unfinished", prior: unrecorded, want: ErrEarlierUnfinished},
		{name: "stop", answer: responders.Retryable(errors.New("HTTP 503"), 0), stop: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				d := responders.NewDispatcher(nil)
				d.Replace(map[string]responders.Enabled{"cmdslack": {ID: "slack", Module: "cmdslack", Responder: answer(func(string) error { return tc.answer })}})
				led := tc.ledger
				if e, ok := led.(extending); ok {
					e.ledger = &ledger{finals: map[string]outcomes.Final{}}
					led = e
				} else {
					led = &ledger{finals: map[string]outcomes.Final{}}
				}
				dl := tc.dl
				if dl == nil {
					dl = &letters{}
				}
				intake, stop := context.WithCancel(context.Background())
				defer stop()
				r := &Runner{
					Observer: "obs", Stream: "s", Shard: "shard-1",
					Dispatcher: d, Ledger: led, DeadLetters: dl, ClaimTimeout: time.Minute,
					Lease:  Lease{Lost: make(chan struct{}), Fence: func() time.Time { return time.Now().Add(time.Hour) }},
					Intake: intake, Hard: context.Background(),
					Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
					Attempted: func(string, responders.Verdict, time.Duration) {
						if tc.stop {
							stop()
						}
					},
					Settled: func(Outcome) {},
				}
				w := &whyStopped{}
				p := r.Prepare(record(1, "hello"))
				if r.Execute(&p, Turn{Prior: tc.prior, Stopped: w}) {
					t.Fatal("the run settled; want it stopped short")
				}
				if tc.want == nil {
					if len(w.whys) != 0 {
						t.Errorf("told %v for a stop, want nothing", w.whys)
					}
					return
				}
				if len(w.whys) != 1 || !errors.Is(w.whys[0], tc.want) {
					t.Fatalf("told %v, want one error matching %v", w.whys, tc.want)
				}
				if tc.wraps != nil && !errors.Is(w.whys[0], tc.wraps) {
					t.Errorf("told %v, which does not wrap %v", w.whys[0], tc.wraps)
				}
			})
		})
	}
}
