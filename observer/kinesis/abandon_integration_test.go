package kinesis

// A record whose command stops without an outcome while its shard's lease
// is held, through the real KCL worker and the emulators: the claim of its
// command is taken over by another worker while it is retried. Only that
// shard stops; it is read again from its checkpoint and the command runs
// once, when the other worker lets its claim go.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sauna-io/sauna/observer/command"
	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/metrics"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
)

// logEvents keeps the messages logged, with the shard they name and the
// record's own attributes.
type logEvents struct {
	slog.Handler
	shard string
	log   *eventLog
}

type eventLog struct {
	mu     sync.Mutex
	events []logEvent
}

type logEvent struct {
	msg, shard string
	level      slog.Level
	attrs      map[string]slog.Value
}

func (h logEvents) Handle(ctx context.Context, r slog.Record) error {
	shard := h.shard
	attrs := map[string]slog.Value{}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "shard" {
			shard = a.Value.String()
		}
		attrs[a.Key] = a.Value.Resolve()
		return true
	})
	h.log.mu.Lock()
	h.log.events = append(h.log.events, logEvent{msg: r.Message, shard: shard, level: r.Level, attrs: attrs})
	h.log.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}

func (h logEvents) WithAttrs(as []slog.Attr) slog.Handler {
	shard := h.shard
	for _, a := range as {
		if a.Key == "shard" {
			shard = a.Value.String()
		}
	}
	return logEvents{Handler: h.Handler.WithAttrs(as), shard: shard, log: h.log}
}

func (h logEvents) WithGroup(g string) slog.Handler {
	return logEvents{Handler: h.Handler.WithGroup(g), shard: h.shard, log: h.log}
}

// count is how many times msg was logged about shard ("": any).
func (l *eventLog) count(msg, shard string) int { return len(l.find(msg, shard)) }

// find returns the events that logged msg about shard ("": any), in order.
func (l *eventLog) find(msg, shard string) []logEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var found []logEvent
	for _, e := range l.events {
		if e.msg == msg && (shard == "" || e.shard == shard) {
			found = append(found, e)
		}
	}
	return found
}

// takeoverVendor stands in for a vendor. The command at the front of the
// test is refused (a 503, which does nothing at the vendor) until the test
// lets it through; before it answers the second refusal of each of its
// first steals deliveries (every delivery tries it twice: the claim is
// found taken over before the third try), its claim is taken over
// (onSecond). A gated command is held until its gate is closed.
type takeoverVendor struct {
	mu       sync.Mutex
	tries    map[string]int
	received map[string]int
	refused  string
	through  chan struct{}
	steals   int
	onSecond func() error
	gated    string
	gate     chan struct{}
	atGate   chan struct{}
}

func (v *takeoverVendor) Respond(ctx context.Context, c *responders.Command) error {
	var d struct{ Text string }
	if err := json.Unmarshal(c.Data, &d); err != nil {
		return responders.Permanent(err)
	}
	v.mu.Lock()
	v.tries[c.ID]++
	try := v.tries[c.ID]
	v.mu.Unlock()
	switch c.ID {
	case v.refused:
		select {
		case <-v.through:
		default:
			if try%2 == 0 && try/2 <= v.steals {
				if err := v.onSecond(); err != nil {
					return responders.Permanent(fmt.Errorf("taking the claim over: %w", err))
				}
			}
			return responders.Retryable(errors.New("HTTP 503"), 0)
		}
	case v.gated:
		close(v.atGate)
		select {
		case <-v.gate:
		case <-ctx.Done():
			return responders.Retryable(ctx.Err(), 0)
		}
	}
	v.mu.Lock()
	v.received[c.ID]++
	v.mu.Unlock()
	return nil
}

func (v *takeoverVendor) got(id string) (tries, received int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.tries[id], v.received[id]
}

// TestIntegrationUnfinishedRecordStopsItsShardAlone: one worker reads two
// shards. On shard 1 a command is held at the vendor; on shard 0 command X
// is refused twice, and before the second refusal another worker takes
// its claim over (as after this worker was frozen past the claim's
// lifetime), so X stops without an outcome at its next try. Shard 0's
// lease is released and taken again, and its consumer reads again from its
// checkpoint, below X; meanwhile shard 1 is not touched: its held command
// finishes in one attempt, the records put on it are delivered, its lease
// is never given up, and the observer does not restart. X's new delivery
// waits for the other worker's claim, which is then let go, and X runs and
// settles once; every other command reaches the vendor once.
func TestIntegrationUnfinishedRecordStopsItsShardAlone(t *testing.T) {
	env := useEmulators(t)
	stream := emulator.UniqueName(t, "abandon")
	id := emulator.UniqueName(t, "obs")
	table := id + "-commands"
	env.CreateStream(t, stream, 2)
	kin := env.Kinesis(t)
	db := env.DynamoDB(t)
	const shard0, shard1 = "shardId-000000000000", "shardId-000000000001"

	cfg := testConfig(id, stream)
	// Long enough that a loaded machine cannot lapse a lease or a claim:
	// the shard is given up by the release alone.
	cfg.LeaseDuration, cfg.LeaseRefresh = 30*time.Second, time.Second
	cfg.Idempotency.ClaimTimeout = time.Minute
	x, held := commandID(1), commandID(100)

	// The other worker, with a claim that outlives the test unless let go.
	th := newThief(db, table, id, x)
	v := &takeoverVendor{tries: map[string]int{}, received: map[string]int{},
		refused: x, through: make(chan struct{}), steals: 1, onSecond: th.takeOver,
		gated: held, gate: make(chan struct{}), atGate: make(chan struct{})}

	events, col, m, stop, await := runWatched(t, cfg, v)
	outcomesOf := func(id string) []command.Outcome {
		var outs []command.Outcome
		for _, o := range col.snapshot() {
			if o.CommandID == id {
				outs = append(outs, o)
			}
		}
		return outs
	}

	// Shard 1's command is held at the vendor first.
	put(t, kin, stream, 100, "held", "held", hashKeyOfShard(1, 2))
	await("shard 1's command at the vendor", func() bool { return closed(v.atGate) })
	// Shard 0: X, and commands before and after it, of other keys.
	put(t, kin, stream, 2, "before", "b", hashKeyOfShard(0, 2))
	put(t, kin, stream, 1, "x", "x", hashKeyOfShard(0, 2))
	put(t, kin, stream, 3, "after", "a", hashKeyOfShard(0, 2))
	const released = "a record stopped without an outcome; the shard's lease is released for it to be read again from the checkpoint"
	await("shard 0 released", func() bool { return events.count(released, shard0) == 1 })
	await("shard 0 read again", func() bool { return events.count("shard acquired", shard0) == 2 })

	// Shard 1 went on: its held command finishes in its first attempt, and
	// new records are delivered.
	close(v.gate)
	for n := 101; n <= 103; n++ {
		put(t, kin, stream, n, "later", fmt.Sprint("later-", n), hashKeyOfShard(1, 2))
	}
	await("shard 1's records", func() bool {
		for n := 100; n <= 103; n++ {
			if len(outcomesOf(commandID(n))) == 0 {
				return false
			}
		}
		return true
	})
	if outs := outcomesOf(held); outs[0].Verdict != verdict.Executed || outs[0].Attempts != 1 {
		t.Errorf("shard 1's held command: %s after %d attempts, want executed after 1", outs[0].Verdict, outs[0].Attempts)
	}
	if len(outcomesOf(x)) != 0 {
		t.Fatalf("command X settled while another worker held its claim: %+v", outcomesOf(x))
	}

	// The other worker lets the claim go: X's new delivery takes it and runs.
	close(v.through)
	if err := th.release(); err != nil {
		t.Fatal(err)
	}
	// Record 3, read again behind X, settles again, as a duplicate.
	await("command X settled", func() bool { return len(outcomesOf(x)) > 0 && len(outcomesOf(commandID(3))) == 2 })
	// Counted before the stop, which releases every lease (and may see a
	// last shard-sync pass take one again).
	if got := events.count("shard acquired", shard1); got != 1 {
		t.Errorf("shard 1 acquired %d times, want once: it must not stop for shard 0", got)
	}
	if got := events.count("observer started", ""); got != 1 {
		t.Errorf("observer started %d times, want once", got)
	}
	stop()

	if outs := outcomesOf(x); len(outs) != 1 || outs[0].Verdict != verdict.Executed {
		t.Errorf("command X settled %+v, want executed once", outs)
	}
	for _, n := range []int{1, 2, 3, 100, 101, 102, 103} {
		if _, got := v.got(commandID(n)); got != 1 {
			t.Errorf("the vendor took command %d %d times, want once", n, got)
		}
	}
	if tries, _ := v.got(x); tries != 3 {
		t.Errorf("command X tried %d times, want 3 (two refusals, then the run after the release)", tries)
	}
	executed := executedPerCommand(t, col.snapshot())
	for _, n := range []int{1, 2, 3, 100, 101, 102, 103} {
		if executed[commandID(n)] != 1 {
			t.Errorf("command %d reported executed %d times, want once", n, executed[commandID(n)])
		}
	}
	if got := events.find(released, ""); len(got) != 1 {
		t.Errorf("released-shard message logged %d times, want once (for shard 0)", len(got))
	} else if cause, in := got[0].attrs["cause"].String(), got[0].attrs["retake_in"].Duration(); cause != "claim_taken_over" || in != cfg.ShardSyncInterval {
		t.Errorf("released-shard message: cause %q, retake_in %s; want claim_taken_over, one shard-sync interval (%s)", cause, in, cfg.ShardSyncInterval)
	}
	if got := counterSum(t, m, "sauna_kinesis_lease_handoffs_total", "kind", handoffReleased); got != 1 {
		t.Errorf("sauna_kinesis_lease_handoffs_total{kind=%q} = %v, want 1", handoffReleased, got)
	}
	checkFinal(t, env, table, x, commandID(2), commandID(3), held)
}

// TestIntegrationRecordThatKeepsStoppingBacksOff: command X's claim is
// taken over at each of its first three deliveries, so its shard is
// released three times. Each release names the cause and waits twice as
// long as the one before before this worker takes the shard back: one
// shard-sync interval, then two, then four. The fourth delivery runs X,
// the checkpoint passes it, and the backoff is reset. X and the command
// behind it reach the vendor once.
func TestIntegrationRecordThatKeepsStoppingBacksOff(t *testing.T) {
	env := useEmulators(t)
	stream := emulator.UniqueName(t, "backoff")
	id := emulator.UniqueName(t, "obs")
	table := id + "-commands"
	env.CreateStream(t, stream, 1)
	kin := env.Kinesis(t)
	db := env.DynamoDB(t)
	const shard0 = "shardId-000000000000"
	const steals = 3

	cfg := testConfig(id, stream)
	cfg.LeaseDuration, cfg.LeaseRefresh = 30*time.Second, time.Second
	cfg.Idempotency.ClaimTimeout = time.Minute
	x := commandID(1)

	th := newThief(db, table, id, x)
	v := &takeoverVendor{tries: map[string]int{}, received: map[string]int{},
		refused: x, through: make(chan struct{}), steals: steals, onSecond: th.takeOver}

	events, col, m, stop, await := runWatched(t, cfg, v)

	put(t, kin, stream, 1, "x", "x", "")
	put(t, kin, stream, 2, "after", "a", "")
	const released = "a record stopped without an outcome; the shard's lease is released for it to be read again from the checkpoint"
	for k := 1; k <= steals; k++ {
		await(fmt.Sprintf("release %d", k), func() bool { return events.count(released, shard0) == k })
		if k == steals {
			close(v.through)
		}
		// The other worker lets its claim go: the next delivery claims X
		// again, and (but the last time) loses it again.
		if err := th.release(); err != nil {
			t.Fatal(err)
		}
	}
	await("command X executed", func() bool { return executedPerCommand(t, col.snapshot())[x] == 1 })
	const reset = "shard checkpointed past the record that stopped; its retake backoff is reset"
	await("the backoff reset", func() bool { return events.count(reset, shard0) == 1 })
	if got := events.count("observer started", ""); got != 1 {
		t.Errorf("observer started %d times, want once", got)
	}
	stop()

	rels := events.find(released, shard0)
	if len(rels) != steals {
		t.Fatalf("%d releases of the shard, want %d", len(rels), steals)
	}
	for k, e := range rels {
		want := cfg.ShardSyncInterval << k
		if got := e.attrs["retake_in"].Duration(); got != want {
			t.Errorf("release %d: retake_in %s, want %s (one shard-sync interval, doubled per release)", k+1, got, want)
		}
		if got := e.attrs["cause"].String(); got != "claim_taken_over" {
			t.Errorf("release %d: cause %q, want claim_taken_over", k+1, got)
		}
		if err, ok := e.attrs["cause_err"].Any().(error); !ok || !errors.Is(err, command.ErrClaimTakenOver) || !errors.Is(err, outcomes.ErrClaimedElsewhere) {
			t.Errorf("release %d: cause_err %v, want an error matching command.ErrClaimTakenOver and outcomes.ErrClaimedElsewhere", k+1, e.attrs["cause_err"])
		}
		if e.attrs["seq"].String() != rels[0].attrs["seq"].String() {
			t.Errorf("release %d at record %s, want X's, %s", k+1, e.attrs["seq"], rels[0].attrs["seq"])
		}
	}
	if got := events.count("shard acquired", shard0); got < steals+1 {
		t.Errorf("shard acquired %d times, want at least %d (once, then after each release)", got, steals+1)
	}
	if got := counterSum(t, m, "sauna_kinesis_lease_handoffs_total", "kind", handoffReleased); got != steals {
		t.Errorf("sauna_kinesis_lease_handoffs_total{kind=%q} = %v, want %d", handoffReleased, got, steals)
	}
	if tries, got := v.got(x); got != 1 || tries != 2*steals+1 {
		t.Errorf("command X: %d tries, %d received; want %d tries (two per delivery that lost its claim, then one), received once", tries, got, 2*steals+1)
	}
	if _, got := v.got(commandID(2)); got != 1 {
		t.Errorf("the vendor took command 2 %d times, want once", got)
	}
	checkFinal(t, env, table, x, commandID(2))
}

// runWatched runs an observer of cfg whose only responder is v, logging
// into events and outcomes into col, until stop (also at cleanup). await
// polls cond until it holds, failing the test if the observer stops first;
// its bound only keeps a broken build from hanging the suite.
func runWatched(t *testing.T, cfg Config, v responders.Responder) (events *eventLog, col *collector, m *metrics.Metrics, stop func(), await func(what string, cond func() bool)) {
	events = &eventLog{}
	col, m = &collector{}, metrics.New(metrics.Options{})
	d := responders.NewDispatcher(nil)
	d.Replace(map[string]responders.Enabled{"testslack": {ID: "slack", Module: "testslack", Responder: v}})
	o := New(cfg, d, Options{
		OnOutcome: col.add, Metrics: m,
		Logger: slog.New(logEvents{Handler: testLogHandler(), log: events}),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("observer: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("observer did not stop within 30s")
		}
	}
	t.Cleanup(stop)
	await = func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Minute)
		for !cond() {
			select {
			case err := <-done:
				stopped = true
				t.Fatalf("observer stopped while waiting for %s: %v", what, err)
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("still waiting for %s", what)
			}
		}
	}
	return events, col, m, stop, await
}

// thief is another worker of the observer, which takes command x's claim
// over as if the claim had run out while its worker was frozen; its own
// claim outlives the test unless let go (release).
type thief struct {
	db     *dynamodb.Client
	table  string
	x      string
	t      *outcomes.Table
	stolen outcomes.Identity
}

func newThief(db *dynamodb.Client, table, observer, x string) *thief {
	return &thief{db: db, table: table, x: x,
		t: outcomes.New(db, outcomes.Config{TableName: table, Observer: observer, WorkerID: "other-worker", ClaimTimeout: time.Hour})}
}

// takeOver expires x's claim in the table and claims x itself.
func (th *thief) takeOver() error {
	ctx := context.Background()
	rec, err := th.t.Get(ctx, th.x)
	if err != nil {
		return err
	}
	if rec.Status != outcomes.StatusInProgress {
		return fmt.Errorf("command %s is %s, want claimed", th.x, rec.Status)
	}
	_, err = th.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(th.table),
		Key:                       map[string]types.AttributeValue{outcomes.AttrCommandID: &types.AttributeValueMemberS{Value: th.x}},
		UpdateExpression:          aws.String("SET claimedUntil = :past"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":past": &types.AttributeValueMemberN{Value: fmt.Sprint(time.Now().Add(-time.Second).UnixMilli())}},
	})
	if err != nil {
		return err
	}
	th.stolen = outcomes.Identity{CommandID: th.x, Digest: rec.Digest}
	return th.t.Claim(ctx, outcomes.Claim{CommandID: th.x, Digest: rec.Digest, Schema: rec.Schema,
		Shard: rec.Shard, Sequence: rec.Sequence, Responder: rec.Responder})
}

// release lets the claim taken over go.
func (th *thief) release() error { return th.t.Release(context.Background(), th.stolen) }
