package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sauna-io/sauna/observer/deadletter"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

// answer stands in for a responder: each command's text says how it ends.
type answer func(text string) error

func (a answer) Respond(_ context.Context, c *responders.Command) error {
	var d struct{ Text string }
	_ = json.Unmarshal(c.Data, &d)
	return a(d.Text)
}

func init() {
	responders.Register(responders.Module{
		Name:     "cmdslack",
		Commands: []schemas.Key{{Vendor: "com.slack.sauna.commands", Name: "send_message", Format: "jsonschema", Model: 1}},
		New:      func(responders.Config) (responders.Responder, error) { return nil, nil },
	})
}

func record(n int, text string) Record {
	data := fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0","data":{`+
		`"envelope":{"schema":"iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0","data":{`+
		`"commandId":"00000000-0000-4000-8000-%012d","whenCreated":"2026-01-01T00:00:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}},`+
		`"command":{"schema":"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0","data":{"text":%q}}}}`, n, text)
	return Record{Sequence: fmt.Sprint(n), PartitionKey: "k", Data: []byte(data)}
}

// ledger records what the run asks of the outcomes table.
type ledger struct {
	mu     sync.Mutex
	finals map[string]outcomes.Final
}

func (l *ledger) Claim(context.Context, outcomes.Claim) error      { return nil }
func (l *ledger) Extend(context.Context, outcomes.Identity) error  { return nil }
func (l *ledger) Release(context.Context, outcomes.Identity) error { return nil }
func (l *ledger) Reject(context.Context, outcomes.Rejection) error { return nil }
func (l *ledger) Peek(_ context.Context, cs []outcomes.Claim) ([]outcomes.Peeked, error) {
	return make([]outcomes.Peeked, len(cs)), nil
}
func (l *ledger) RecordDone(_ context.Context, ds []outcomes.Done) error {
	for _, d := range ds {
		if err := l.Finish(context.Background(), d.Claim.Identity(), d.Final); err != nil {
			return err
		}
	}
	return nil
}
func (l *ledger) Finish(_ context.Context, id outcomes.Identity, f outcomes.Final) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.finals[id.CommandID] = f
	return nil
}

type letters []deadletter.Letter

func (ls *letters) Put(_ context.Context, l deadletter.Letter) error {
	*ls = append(*ls, l)
	return nil
}

// A command run needs nothing from a stream: its runner's fields are all
// it depends on. A command that keeps failing is retried within the budget;
// a Retry-After beyond what is left of it is waited out without another
// call, and the command is dead-lettered.
func TestRunnerStandsAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := responders.NewDispatcher(nil)
		calls := map[string]int{}
		d.Replace(map[string]responders.Enabled{"cmdslack": {ID: "slack", Module: "cmdslack", Responder: answer(func(text string) error {
			calls[text]++
			if text == "limited" {
				return responders.Retryable(errors.New("HTTP 429"), 50*time.Second)
			}
			return nil
		})}})
		led, dl := &ledger{finals: map[string]outcomes.Final{}}, &letters{}
		var settled []Outcome
		attempts := 0
		r := &Runner{
			Observer: "obs", Stream: "s", Shard: "shard-1",
			Dispatcher: d, Ledger: led, DeadLetters: dl, RetryBudget: time.Minute,
			Lease:  Lease{Lost: make(chan struct{}), Fence: func() time.Time { return time.Now().Add(time.Hour) }},
			Intake: context.Background(), Hard: context.Background(),
			Log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
			Attempted: func(string, responders.Verdict, time.Duration) { attempts++ },
			Settled:   func(o Outcome) { settled = append(settled, o) },
		}
		if !r.Run(record(1, "hello")) {
			t.Fatal("run 1 stopped short")
		}
		start := time.Now()
		if !r.Run(record(2, "limited")) {
			t.Fatal("run 2 stopped short")
		}
		if took := time.Since(start); took != time.Minute {
			t.Errorf("dead-lettered after %v, want the 1 min budget", took)
		}
		if len(settled) != 2 || settled[0].Verdict != verdict.Executed || settled[1].Verdict != verdict.DeadLettered {
			t.Fatalf("outcomes %+v", settled)
		}
		if calls["hello"] != 1 || calls["limited"] != 2 || attempts != 3 {
			t.Errorf("calls %v, %d attempts counted: want hello once, limited twice (at 0 and 50 s)", calls, attempts)
		}
		if len(*dl) != 1 || (*dl)[0].Reason != verdict.RetryBudgetExhausted || (*dl)[0].Attempts != 2 || (*dl)[0].Shard != "shard-1" {
			t.Errorf("dead letters %+v", *dl)
		}
		if f := led.finals["00000000-0000-4000-8000-000000000002"]; f.Verdict != verdict.DeadLettered {
			t.Errorf("ledger outcome %+v", f)
		}
		if f := led.finals["00000000-0000-4000-8000-000000000001"]; f.Verdict != verdict.Executed {
			t.Errorf("ledger outcome %+v", f)
		}
	})
}

// heldElsewhere is a ledger whose command is claimed by another worker
// until done is closed, and recorded done by it then.
type heldElsewhere struct {
	ledger
	done   chan struct{}
	claims int
}

func (l *heldElsewhere) Claim(_ context.Context, c outcomes.Claim) error {
	l.claims++
	select {
	case <-l.done:
		return &outcomes.DuplicateError{Record: &outcomes.Record{CommandID: c.CommandID, Status: outcomes.StatusDone, Verdict: verdict.Executed}}
	default:
		return fmt.Errorf("claim %s: %w", c.CommandID, outcomes.ErrClaimedElsewhere)
	}
}

// A command claimed by another worker is found done within claimRetryMax
// of that worker's outcome landing, however long the claim was held: its
// key and its shard's checkpoint wait for it all that time. The waits are
// random (full jitter), so it is checked over many runs.
func TestClaimHeldElsewhereIsTriedAgainOften(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := responders.NewDispatcher(nil)
		d.Replace(map[string]responders.Enabled{"cmdslack": {ID: "slack", Module: "cmdslack", Responder: answer(func(string) error {
			t.Error("the command ran, though another worker held its claim and then recorded it")
			return nil
		})}})
		for run := range 20 {
			led := &heldElsewhere{ledger: ledger{finals: map[string]outcomes.Final{}}, done: make(chan struct{})}
			var settled []Outcome
			r := &Runner{
				Observer: "obs", Stream: "s", Shard: "shard-1",
				Dispatcher: d, Ledger: led, ClaimTimeout: outcomes.DefaultClaimTimeout,
				Lease:  Lease{Lost: make(chan struct{}), Fence: func() time.Time { return time.Now().Add(time.Hour) }},
				Intake: context.Background(), Hard: context.Background(),
				Log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
				Attempted: func(string, responders.Verdict, time.Duration) {},
				Settled:   func(o Outcome) { settled = append(settled, o) },
			}
			const heldFor = 100 * time.Second
			start := time.Now()
			time.AfterFunc(heldFor, func() { close(led.done) })
			if !r.Run(record(run+1, "hello")) {
				t.Fatalf("run %d stopped short", run)
			}
			if late := time.Since(start) - heldFor; late < 0 || late > claimRetryMax {
				t.Errorf("run %d: found done %v after the other worker recorded it, want at most %v", run, late, claimRetryMax)
			}
			if len(settled) != 1 || settled[0].Verdict != verdict.Duplicate {
				t.Errorf("run %d: outcomes %+v, want one duplicate", run, settled)
			}
		}
	})
}
