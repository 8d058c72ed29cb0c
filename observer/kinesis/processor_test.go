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

	"github.com/sauna-io/sauna/observer/command"
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
	mu       sync.Mutex
	p        *shardProcessor
	resp     *scripted
	outcomes []command.Outcome
	stop     context.CancelFunc
	lost     chan struct{}
}

// newHarness builds one shard's processor; setup, if any, configures its
// observer before the shard is initialized.
func newHarness(t *testing.T, setup ...func(o *Observer)) *harness {
	h := &harness{resp: &scripted{}, lost: make(chan struct{})}
	d := responders.NewDispatcher(nil)
	d.Replace(map[string]responders.Enabled{"testslack": {ID: "slack", Module: "testslack", Responder: h.resp}})
	intake, stop := context.WithCancel(context.Background())
	t.Cleanup(stop)
	h.stop = stop
	o := &Observer{
		cfg:      Config{ID: "obs", StreamName: "s", MaxInFlight: 4},
		dispatch: d,
		log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		lost:     func(string) <-chan struct{} { return h.lost },
		leaseUntil: func(string) time.Time {
			select {
			case <-h.lost:
				return time.Time{}
			default:
				return time.Now().Add(time.Hour)
			}
		},
		intake: intake,
		hard:   context.Background(),
		opts: Options{CheckpointInterval: time.Second, DrainTimeout: 10 * time.Second, OnOutcome: func(o command.Outcome) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.outcomes = append(h.outcomes, o)
		}},
	}
	for _, f := range setup {
		f(o)
	}
	h.p = newShardProcessor(o)
	h.p.Initialize(&kcl.InitializationInput{ShardId: "shardId-000000000001"})
	return h
}

func slackRecord(seq, text string) types.Record { return keyedRecord(seq, "k", text) }

func keyedRecord(seq, key, text string) types.Record {
	data := fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0","data":{`+
		`"envelope":{"schema":"iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0","data":{`+
		`"commandId":"00000000-0000-4000-8000-%012s","whenCreated":"2026-01-01T00:00:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}},`+
		`"command":{"schema":"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0","data":{"text":%q}}}}`, seq, text)
	return types.Record{SequenceNumber: aws.String(seq), Data: []byte(data), PartitionKey: aws.String(key)}
}

func rawRecord(seq, data string) types.Record {
	return types.Record{SequenceNumber: aws.String(seq), Data: []byte(data), PartitionKey: aws.String("raw")}
}

// results lists "seq=result[:reason]" sorted by sequence number.
func (h *harness) results() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var s []string
	for _, o := range h.outcomes {
		v := o.Sequence + "=" + string(o.Verdict)
		if o.Reason != "" {
			v += ":" + string(o.Reason)
		}
		s = append(s, v)
	}
	slices.Sort(s)
	return s
}

func TestProcessorOutcomesAndCheckpoints(t *testing.T) {
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
			keyedRecord("1", "a", "hello"),
			rawRecord("2", `{"not":"a command"`),
			keyedRecord("3", "a", "flaky"),
			keyedRecord("4", "b", "bad"),
			keyedRecord("5", "c", "slow down"),
		}})
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.TERMINATE, Checkpointer: cp})
		if waited := time.Since(start); waited < 7*time.Second {
			t.Errorf("a Retry-After of 7s was not honoured: waited %s", waited)
		}
		want := []string{"1=executed", "2=rejected:invalid_json", "3=executed", "4=failed", "5=executed"}
		if got := h.results(); !slices.Equal(got, want) {
			t.Errorf("outcomes %v, want %v", got, want)
		}
		if n := len(cp.written); n == 0 || cp.written[n-1] != "SHARD_END" {
			t.Errorf("checkpoints %v, want SHARD_END last", cp.written)
		}
	})
}

// Commands with one partition key run one at a time and in order; other
// keys run alongside, up to MaxInFlight at once.
func TestProcessorKeepsPerKeyOrderAndBoundsConcurrency(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t) // MaxInFlight 4
		var mu sync.Mutex
		running, peak := map[string]int{}, 0
		total := 0
		var order []string
		h.resp.reply = func(_ context.Context, text string, _ int) error {
			key := text[:1]
			mu.Lock()
			running[key]++
			total++
			peak = max(peak, total)
			if running[key] > 1 {
				t.Errorf("two commands of key %s at once", key)
			}
			order = append(order, text)
			mu.Unlock()
			time.Sleep(time.Second)
			mu.Lock()
			running[key]--
			total--
			mu.Unlock()
			return nil
		}
		var recs []types.Record
		seq := 0
		for round := 1; round <= 3; round++ {
			for _, key := range []string{"a", "b", "c", "d", "e", "f"} {
				seq++
				recs = append(recs, keyedRecord(fmt.Sprintf("%03d", seq), key, fmt.Sprintf("%s%d", key, round)))
			}
		}
		cp := &fakeCheckpointer{}
		start := time.Now()
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: recs})
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
		if peak != 4 {
			t.Errorf("peak concurrency %d, want MaxInFlight 4", peak)
		}
		// 18 one-second commands, 4 at a time: at least 5 s, far less than 18.
		if took := time.Since(start); took < 5*time.Second || took > 6*time.Second {
			t.Errorf("took %s of fake time, want 5-6 s", took)
		}
		for _, key := range []string{"a", "b", "c", "d", "e", "f"} {
			var got []string
			for _, o := range order {
				if o[:1] == key {
					got = append(got, o)
				}
			}
			if want := []string{key + "1", key + "2", key + "3"}; !slices.Equal(got, want) {
				t.Errorf("key %s ran %v, want %v", key, got, want)
			}
		}
		if last := cp.written[len(cp.written)-1]; last != "018" {
			t.Errorf("final checkpoint %q, want 018 (all %v)", last, cp.written)
		}
	})
}

// A stop in the middle checkpoints only below the first unfinished record,
// and nothing after it: not a later batch, not SHARD_END.
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
			time.Sleep(time.Minute) // the vendor is down for a minute when the stop comes
			h.stop()
		}()
		cp := &fakeCheckpointer{}
		// 2 and 2 are one KPL aggregate: a checkpoint at 2 would skip its rest.
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{
			keyedRecord("1", "a", "one"), keyedRecord("2", "b", "two"), keyedRecord("2", "c", "down"),
			keyedRecord("3", "c", "after down"), keyedRecord("4", "d", "other key"),
		}})
		synctest.Wait()
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.TERMINATE, Checkpointer: cp})
		if cp.written[len(cp.written)-1] != "1" || slices.Contains(cp.written, "SHARD_END") {
			t.Errorf("checkpoints %v, want to end at 1 without SHARD_END", cp.written)
		}
		if slices.Contains(h.resp.calls, "after down") {
			t.Errorf("a command ran before the earlier command of its key finished: %v", h.resp.calls)
		}
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{keyedRecord("5", "e", "late")}})
		synctest.Wait()
		if slices.Contains(h.resp.calls, "late") {
			t.Errorf("a batch after the stop ran: %v", h.resp.calls)
		}
	})
}

// The checkpoint passes a KPL aggregate only once all its user records are
// final, including those not admitted yet: with one slot, the aggregate's
// first user record finishes before its second is even admitted.
func TestCheckpointWaitsForTheWholeAggregate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.p.o.cfg.MaxInFlight = 1
		h.p.slots = make(chan struct{}, 1)
		h.resp.reply = func(_ context.Context, text string, _ int) error {
			if text == "down" {
				return responders.Retryable(errors.New("503"), 0)
			}
			return nil
		}
		go func() {
			time.Sleep(time.Minute)
			h.stop()
		}()
		cp := &fakeCheckpointer{}
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{
			keyedRecord("1", "a", "one"), keyedRecord("2", "b", "two"), keyedRecord("2", "c", "down"),
		}})
		synctest.Wait()
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
		if slices.Contains(cp.written, "2") {
			t.Errorf("checkpoints %v: 2 passes the aggregate before its last user record is final", cp.written)
		}
		if n := len(cp.written); n == 0 || cp.written[n-1] != "1" {
			t.Errorf("checkpoints %v, want to end at 1", cp.written)
		}
	})
}

// A lost lease stops the shard at once: nothing new starts and nothing is
// checkpointed, but a call already made is let finish (cutting it short
// after the vendor acted would only make the next owner run it again).
func TestProcessorStopsOnLostLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.resp.reply = func(ctx context.Context, text string, _ int) error {
			if text == "hang" {
				time.Sleep(2 * time.Second)
				if ctx.Err() != nil {
					t.Error("the call in flight was cancelled by the lost lease")
				}
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
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
		if slices.Contains(cp.written, "2") || slices.Contains(cp.written, "3") || slices.Contains(h.resp.calls, "b") {
			t.Errorf("checkpoints %v, calls %v", cp.written, h.resp.calls)
		}
	})
}

// A fenced checkpoint refused by the lease table stops the shard.
func TestProcessorStopsWhenCheckpointIsFenced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		cp := &fakeCheckpointer{err: fmt.Errorf("shard x: %w", leases.ErrLeaseLost)}
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{slackRecord("1", "a")}})
		synctest.Wait()
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{slackRecord("2", "b")}})
		synctest.Wait()
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{slackRecord("3", "c")}})
		synctest.Wait()
		if slices.Contains(h.resp.calls, "c") {
			t.Errorf("calls %v: a zombie must not go on", h.resp.calls)
		}
	})
}

// A peer's handoff request: intake stops, every admitted record runs (also
// those queued behind their key), the final checkpoint covers them all, and
// only then is the lease handed over; later batches run nothing here. A
// shard that processed nothing since its acquisition hands over too.
func TestProcessorHandsOver(t *testing.T) {
	for _, idle := range []bool{false, true} {
		t.Run(fmt.Sprintf("idle=%v", idle), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t)
				asked := make(chan struct{})
				cp := &fakeCheckpointer{}
				var handed []string // checkpoints written when the handover came
				handedOver := false
				h.p.handoff = asked
				h.p.o.handOver = func(string) error {
					handed, handedOver = slices.Clone(cp.written), true
					return nil
				}
				h.resp.reply = func(_ context.Context, text string, _ int) error {
					if text == "slow" {
						time.Sleep(time.Second)
					}
					return nil
				}
				var batch []types.Record
				if !idle {
					batch = []types.Record{keyedRecord("1", "a", "slow"), keyedRecord("2", "a", "queued"), keyedRecord("3", "c", "other")}
				}
				h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: batch})
				close(asked)
				h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{keyedRecord("4", "d", "late")}})
				if !handedOver {
					t.Fatal("the lease was not handed over")
				}
				if !idle {
					if !slices.Equal(h.resp.calls, []string{"slow", "other", "queued"}) && !slices.Equal(h.resp.calls, []string{"other", "slow", "queued"}) {
						t.Errorf("calls %v: every admitted record must run, none after the request", h.resp.calls)
					}
					if len(handed) == 0 || handed[len(handed)-1] != "3" {
						t.Errorf("checkpoints before the handover %v, want to end at 3", handed)
					}
				}
				h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{keyedRecord("5", "e", "later")}})
				synctest.Wait()
				if slices.Contains(h.resp.calls, "late") || slices.Contains(h.resp.calls, "later") {
					t.Errorf("a batch after the handover ran: %v", h.resp.calls)
				}
			})
		})
	}
}

// A handover waits for the records in flight no longer than the drain
// timeout, as a stop does: a command still retrying then stops short, its
// record stays after the last checkpoint for the peer to read again, the
// lease is handed over all the same, and the observer does not fail.
func TestHandoverDrainIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(o *Observer) {
			o.opts.DrainTimeout = 5 * time.Second
			o.fatal = make(chan error, 1)
		})
		asked := make(chan struct{})
		h.p.handoff = asked
		cp := &fakeCheckpointer{}
		var handed []string
		handedAt := make(chan time.Time, 1)
		h.p.o.handOver = func(string) error {
			handed = slices.Clone(cp.written)
			handedAt <- time.Now()
			return nil
		}
		h.resp.reply = func(_ context.Context, text string, _ int) error {
			if text == "stuck" {
				return responders.Retryable(errors.New("vendor down"), 0)
			}
			return nil
		}
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{
			keyedRecord("1", "a", "fine"), keyedRecord("2", "b", "stuck"), keyedRecord("3", "c", "fine too"),
		}})
		close(asked)
		asked2 := time.Now()
		go h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp})
		select {
		case at := <-handedAt:
			if d := at.Sub(asked2); d < 5*time.Second || d > 10*time.Second {
				t.Errorf("handed over %v after the request, want at the 5 s drain timeout", d)
			}
		case <-time.After(time.Hour):
			t.Error("the handover waited an hour for a command that keeps failing")
			h.stop() // lets the retries, and so the handover, end
			<-handedAt
		}
		synctest.Wait()
		if len(handed) == 0 || handed[len(handed)-1] != "1" {
			t.Errorf("checkpoints before the handover %v, want to end at 1 (2 is not done)", handed)
		}
		if slices.Contains(cp.written, "2") || slices.Contains(cp.written, "3") {
			t.Errorf("checkpoints %v: past a record that did not finish", cp.written)
		}
		select {
		case err := <-h.p.o.fatal:
			t.Errorf("the observer failed: %v", err)
		default:
		}
	})
}

// A shard's runners outlive the records they ran, parked for its next
// ones, and end with the shard: at its Shutdown, once its lease is lost, or
// once it stopped or drains for a handover.
func TestRunnersParkAndEndWithTheShard(t *testing.T) {
	for _, end := range []string{"shutdown", "lost", "stopped", "handover"} {
		t.Run(end, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t)
				asked := make(chan struct{})
				h.p.handoff = asked
				h.p.o.handOver = func(string) error { return nil }
				runners := func() (n, idle int) {
					h.p.mu.Lock()
					defer h.p.mu.Unlock()
					return h.p.runq.runners, len(h.p.runq.idle)
				}
				cp := &fakeCheckpointer{}
				// One record a batch: one runner runs them all, parked
				// between them.
				for _, seq := range []string{"1", "2", "3"} {
					h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{keyedRecord(seq, "k"+seq, "m"+seq)}})
					synctest.Wait()
					if n, idle := runners(); n != 1 || idle != 1 {
						t.Fatalf("%d runners, %d of them parked, once record %s ran: want one, parked", n, idle, seq)
					}
				}
				switch end {
				case "shutdown":
					h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
				case "lost":
					close(h.lost)
				case "stopped":
					h.p.stop()
				case "handover":
					close(asked)
					h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp})
				}
				synctest.Wait()
				if n, _ := runners(); n != 0 {
					t.Errorf("%d runners left after the shard's end (%s)", n, end)
				}
				if got := len(h.results()); got != 3 {
					t.Errorf("%d outcomes, want 3", got)
				}
			})
		})
	}
}

// The run queue hands records out in the order they were started, whether
// it empties between them or is compacted as it fills, and its array does
// not grow with what was taken from it.
func TestRunQueueOrder(t *testing.T) {
	var q runQueue
	es := make([]entry, 100)
	next, want := 0, 0
	take := func(n int) {
		for range n {
			if e := q.take(); e != &es[want] {
				t.Fatalf("took %s, want %d", e.seq, want)
			}
			want++
		}
	}
	for i := range es {
		es[i].seq = fmt.Sprint(i)
	}
	add := func(n int) {
		for range n {
			q.add(&es[next])
			next++
		}
	}
	add(3)
	take(3) // empties
	for range 20 {
		add(4)
		take(3) // never empties: one stays behind
	}
	if q.waiting() != 20 || cap(q.ready) > 64 {
		t.Errorf("%d waiting in an array of %d", q.waiting(), cap(q.ready))
	}
	take(20)
	if q.waiting() != 0 {
		t.Errorf("%d waiting", q.waiting())
	}
}

// A record that stops without an outcome while the lease is held ends its
// shard's consumer alone: the records admitted with it finish, the last
// checkpoint stays below it, the lease is released once, and the consumer
// reads nothing more. Only a release that fails with the lease still held
// restarts the observer.
func TestUnfinishedRecordReleasesTheShard(t *testing.T) {
	for _, tc := range []struct {
		name    string
		release error
		restart bool
	}{
		{"released", nil, false},
		{"lease gone", fmt.Errorf("%w: taken", leases.ErrLeaseLost), false},
		{"release failed", errors.New("dynamodb down"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, func(o *Observer) {
					o.deadLetters = &fakeDeadLetters{fail: true}
					o.fatal = make(chan error, 1)
				})
				var released []string
				var checkpointsAtRelease []string
				cp := &fakeCheckpointer{}
				h.p.o.abandon = func(shard, seq string) (time.Duration, error) {
					released = append(released, shard)
					checkpointsAtRelease = slices.Clone(cp.written)
					if seq != "3" {
						t.Errorf("released at record %s, want 3, the one that stopped", seq)
					}
					return time.Second, tc.release
				}
				slow := make(chan struct{})
				h.resp.reply = func(_ context.Context, text string, _ int) error {
					if text == "slow" {
						<-slow
					}
					return nil
				}
				h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{
					keyedRecord("1", "a", "fine"), keyedRecord("2", "b", "slow"), rawRecord("3", "not json"),
					keyedRecord("4", "c", "after"),
				}})
				synctest.Wait()
				done := make(chan struct{})
				go func() {
					defer close(done)
					h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{keyedRecord("5", "d", "later")}})
				}()
				synctest.Wait()
				if len(released) != 0 {
					t.Errorf("lease released while record 2 still ran")
				}
				close(slow)
				<-done
				h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{keyedRecord("6", "e", "later")}})
				h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
				if !slices.Equal(released, []string{"shardId-000000000001"}) {
					t.Errorf("leases released: %v, want the shard's once", released)
				}
				// 1 may be written first, as the first batch's checkpoint.
				if n := len(checkpointsAtRelease); n == 0 || checkpointsAtRelease[n-1] != "2" || !slices.Equal(cp.written, checkpointsAtRelease) {
					t.Errorf("checkpoints %v (%v at the release), want to end at 2, below the unfinished record 3, before the release", cp.written, checkpointsAtRelease)
				}
				for _, r := range h.results() {
					if r == "5=executed" || r == "6=executed" {
						t.Errorf("outcomes %v: a record read after the shard stopped ran", h.results())
					}
				}
				select {
				case err := <-h.p.o.fatal:
					if !tc.restart {
						t.Errorf("observer restart requested: %v", err)
					}
				default:
					if tc.restart {
						t.Error("a lease that could not be released must restart the observer")
					}
				}
			})
		})
	}
}
