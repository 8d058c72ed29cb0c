package kinesis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"

	"github.com/sauna-io/sauna/observer/kinesis/leases"
	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

// scripted answers each command by its text; it stands in for a responder.
type scripted struct {
	mu    sync.Mutex
	calls []string
	reply func(ctx context.Context, text string, call int) error
}

func (s *scripted) Respond(ctx context.Context, c *responders.Command) error {
	var d struct{ Text string }
	_ = json.Unmarshal(c.Data, &d)
	s.mu.Lock()
	s.calls = append(s.calls, d.Text)
	n := 0
	for _, x := range s.calls {
		if x == d.Text {
			n++
		}
	}
	s.mu.Unlock()
	if s.reply == nil {
		return nil
	}
	return s.reply(ctx, d.Text, n)
}

func init() {
	responders.Register(responders.Module{
		Name:     "testslack",
		Commands: []schemas.Key{{Vendor: "com.slack.sauna.commands", Name: "send_message", Format: "jsonschema", Model: 1}},
		New:      func(responders.Config) (responders.Responder, error) { return nil, nil },
	})
}

type fakeCheckpointer struct {
	written []string // "SHARD_END" for nil
	err     error
}

func (f *fakeCheckpointer) Checkpoint(seq *string) error {
	if f.err != nil {
		return f.err
	}
	if seq == nil {
		f.written = append(f.written, "SHARD_END")
	} else {
		f.written = append(f.written, *seq)
	}
	return nil
}

func (f *fakeCheckpointer) PrepareCheckpoint(*string) (kcl.IPreparedCheckpointer, error) {
	return nil, errors.New("never used")
}

type harness struct {
	p        *shardProcessor
	resp     *scripted
	outcomes []Outcome
	stop     context.CancelFunc
	lost     chan struct{}
}

func newHarness(t *testing.T) *harness {
	h := &harness{resp: &scripted{}, lost: make(chan struct{})}
	d := responders.NewDispatcher(nil)
	d.Replace(map[string]responders.Enabled{"testslack": {ID: "slack", Module: "testslack", Responder: h.resp}})
	intake, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	h.stop = stop
	o := &Observer{
		cfg:      Config{ID: "obs", StreamName: "s"},
		dispatch: d,
		log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		lost:     func(string) <-chan struct{} { return h.lost },
		intake:   intake,
		hard:     context.Background(),
		opts:     Options{OnOutcome: func(o Outcome) { h.outcomes = append(h.outcomes, o) }},
	}
	h.p = &shardProcessor{o: o}
	h.p.Initialize(&kcl.InitializationInput{ShardId: "shardId-000000000001"})
	return h
}

func slackRecord(seq, text string) types.Record {
	data := fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0","data":{`+
		`"envelope":{"schema":"iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0","data":{`+
		`"commandId":"00000000-0000-4000-8000-%012s","whenCreated":"2026-01-01T00:00:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}},`+
		`"command":{"schema":"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0","data":{"text":%q}}}}`, seq, text)
	return types.Record{SequenceNumber: aws.String(seq), Data: []byte(data), PartitionKey: aws.String("k")}
}

func rawRecord(seq, data string) types.Record {
	return types.Record{SequenceNumber: aws.String(seq), Data: []byte(data), PartitionKey: aws.String("k")}
}

func verdicts(outs []Outcome) []string {
	var s []string
	for _, o := range outs {
		v := o.Verdict.String()
		if o.Reason != "" {
			v += ":" + string(o.Reason)
		}
		s = append(s, o.Sequence+"="+v)
	}
	return s
}

func TestProcessorCheckpointsAfterEveryFinalOutcome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.resp.reply = func(_ context.Context, text string, call int) error {
			switch {
			case text == "flaky" && call < 3:
				return responders.Retryable(errors.New("503"), 0)
			case text == "slow down" && call == 1:
				return responders.Retryable(errors.New("429"), 7*time.Second)
			case text == "bad":
				return responders.Permanent(errors.New("400 invalid_payload"))
			}
			return nil
		}
		cp := &fakeCheckpointer{}
		start := time.Now()
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{
			slackRecord("1", "hello"),
			rawRecord("2", `{"not":"a command"`),
			slackRecord("3", "flaky"),
			slackRecord("4", "bad"),
			slackRecord("5", "slow down"),
		}})
		if waited := time.Since(start); waited < 7*time.Second {
			t.Errorf("a Retry-After of 7s was not honoured: waited %s", waited)
		}
		want := []string{"1=done", "2=permanent:invalid_json", "3=done", "4=permanent", "5=done"}
		if got := verdicts(h.outcomes); !slices.Equal(got, want) {
			t.Errorf("outcomes %v, want %v", got, want)
		}
		if h.outcomes[2].Attempts != 3 {
			t.Errorf("flaky took %d attempts, want 3", h.outcomes[2].Attempts)
		}
		if !slices.Equal(cp.written, []string{"5"}) {
			t.Errorf("checkpoints %v, want [5]", cp.written)
		}
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.TERMINATE, Checkpointer: cp})
		if !slices.Equal(cp.written, []string{"5", "SHARD_END"}) {
			t.Errorf("after TERMINATE: %v", cp.written)
		}
	})
}

// A stop in the middle of a batch checkpoints only the finished prefix, and
// nothing after it: not a later batch, not SHARD_END.
func TestProcessorStopsShortWithoutSkipping(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.resp.reply = func(_ context.Context, text string, _ int) error {
			if text == "down" {
				return responders.Retryable(errors.New("503"), 0)
			}
			return nil
		}
		go func() {
			time.Sleep(time.Minute) // fake time: the vendor is down for a minute when the stop comes
			h.stop()
		}()
		cp := &fakeCheckpointer{}
		// 2 and 3 are one KPL aggregate: a checkpoint at 2 would skip its rest.
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{
			slackRecord("1", "a"), slackRecord("2", "b"), slackRecord("2", "down"), slackRecord("3", "c"),
		}})
		if !slices.Equal(cp.written, []string{"1"}) {
			t.Errorf("checkpoints %v, want [1]", cp.written)
		}
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{slackRecord("4", "d")}})
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.TERMINATE, Checkpointer: cp})
		if !slices.Equal(cp.written, []string{"1"}) {
			t.Errorf("after stop: checkpoints %v, want [1]", cp.written)
		}
		if slices.Contains(h.resp.calls, "c") || slices.Contains(h.resp.calls, "d") {
			t.Errorf("records after the stop ran: %v", h.resp.calls)
		}
	})
}

// A lost lease cancels the call in flight and stops the shard at once.
func TestProcessorStopsOnLostLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.resp.reply = func(ctx context.Context, text string, _ int) error {
			if text == "hang" {
				<-ctx.Done()
				return responders.Retryable(ctx.Err(), 0)
			}
			return nil
		}
		go func() {
			time.Sleep(time.Second)
			close(h.lost)
		}()
		cp := &fakeCheckpointer{}
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{
			slackRecord("1", "a"), slackRecord("2", "hang"), slackRecord("3", "b"),
		}})
		if !slices.Equal(cp.written, []string{"1"}) || slices.Contains(h.resp.calls, "b") {
			t.Errorf("checkpoints %v, calls %v", cp.written, h.resp.calls)
		}
	})
}

// A fenced checkpoint refused by the lease table stops the shard.
func TestProcessorStopsWhenCheckpointIsFenced(t *testing.T) {
	h := newHarness(t)
	cp := &fakeCheckpointer{err: fmt.Errorf("shard x: %w", leases.ErrLeaseLost)}
	h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{slackRecord("1", "a")}})
	h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{slackRecord("2", "b")}})
	if !slices.Equal(h.resp.calls, []string{"a"}) {
		t.Errorf("calls %v: a zombie must not go on", h.resp.calls)
	}
}
