package kinesis

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	rec "github.com/awslabs/kinesis-aggregation/go/v2/records"
	"github.com/golang/protobuf/proto"

	"github.com/sauna-io/sauna/observer/command"
	"github.com/sauna-io/sauna/observer/deadletter"
	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
)

// kplResponder answers each command through reply (nil: success) and
// counts the calls per command text.
type kplResponder struct {
	mu    sync.Mutex
	calls map[string]int
	reply func(ctx context.Context, text string) error
}

func (r *kplResponder) Respond(ctx context.Context, c *responders.Command) error {
	var d struct{ Text string }
	_ = json.Unmarshal(c.Data, &d)
	r.mu.Lock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[d.Text]++
	r.mu.Unlock()
	if r.reply == nil {
		return nil
	}
	return r.reply(ctx, d.Text)
}

// kplErrorLog keeps the messages logged at error level.
type kplErrorLog struct {
	slog.Handler
	mu   *sync.Mutex
	msgs *[]string
}

func (h kplErrorLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.mu.Lock()
		*h.msgs = append(*h.msgs, r.Message)
		h.mu.Unlock()
	}
	return h.Handler.Handle(ctx, r)
}

func (h kplErrorLog) WithAttrs(a []slog.Attr) slog.Handler {
	return kplErrorLog{Handler: h.Handler.WithAttrs(a), mu: h.mu, msgs: h.msgs}
}

func (h kplErrorLog) WithGroup(g string) slog.Handler {
	return kplErrorLog{Handler: h.Handler.WithGroup(g), mu: h.mu, msgs: h.msgs}
}

// kplStartObserver runs an observer with the given responder as module
// testslack; opts.Logger is set here and its error messages are returned.
func kplStartObserver(t *testing.T, cfg Config, resp responders.Responder, opts Options) (stop func() error, errors func() []string) {
	t.Helper()
	var mu sync.Mutex
	var msgs []string
	opts.Logger = slog.New(kplErrorLog{Handler: testLogHandler(), mu: &mu, msgs: &msgs})
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = time.Second
	}
	stop = runObserver(t, cfg, resp, opts)
	return stop, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(msgs)
	}
}

// kplCommand is one user record: a command whose text names it.
type kplCommand struct {
	num  int
	key  string
	text string
}

func (c kplCommand) id() string   { return fmt.Sprintf("00000000-0000-4000-8000-%012d", c.num) }
func (c kplCommand) data() []byte { return keyedRecord(fmt.Sprint(c.num), c.key, c.text).Data }

// kplPut puts one record on a one-shard stream and returns its sequence
// number.
func kplPut(t *testing.T, kin *kds.Client, stream, key string, data []byte) string {
	t.Helper()
	out, err := kin.PutRecord(t.Context(), &kds.PutRecordInput{StreamName: aws.String(stream), PartitionKey: aws.String(key), Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(out.SequenceNumber)
}

// kplAggregate builds one KPL aggregate of cmds, each under its own key.
func kplAggregate(t *testing.T, cmds []kplCommand) []byte {
	t.Helper()
	// aggregateOf gives record i the key at i modulo the table's length, so
	// one table entry per record, in record order, keeps each record's key.
	keys := make([]string, len(cmds))
	data := make([][]byte, len(cmds))
	for i, c := range cmds {
		keys[i], data[i] = c.key, c.data()
	}
	return aggregateOf(t, keys, data...)
}

func kplCheckpoint(t *testing.T, env emulator.Env, table string) string {
	t.Helper()
	for _, it := range scanLeases(t, env, table) {
		if attr(it, "ShardID") == "shardId-000000000000" {
			return attr(it, "Checkpoint")
		}
	}
	return ""
}

func kplWaitCheckpoint(t *testing.T, env emulator.Env, table, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := kplCheckpoint(t, env, table)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint %q, want %q", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func kplSeqLess(a, b string) bool {
	x, ok1 := new(big.Int).SetString(a, 10)
	y, ok2 := new(big.Int).SetString(b, 10)
	return ok1 && ok2 && x.Cmp(y) < 0
}

// TestIntegrationKPLAggregates puts KPL aggregates of commands on
// kinesalite, as a KPL producer would, and runs observers on them.
func TestIntegrationKPLAggregates(t *testing.T) {
	t.Run("every user record once across restarts", testKPLExactlyOnce)
	t.Run("corrupt aggregates among good records", testKPLCorruptAggregate)
	t.Run("an oversized aggregate is one rejection", testKPLOversizedAggregate)
}

// The first run is stopped while one user record in the middle of an
// aggregate hangs: the checkpoint must stay below that aggregate, so the
// next run reads the whole aggregate again and idempotency skips the user
// records that already ran. A third run finds nothing left to do.
func testKPLExactlyOnce(t *testing.T) {
	env := useEmulators(t)
	stream := env.NewStream(t, "kpl", 1)
	id := emulator.UniqueName(t, "obs")
	kin := env.Kinesis(t)

	num := 5000
	next := func(key, text string) kplCommand {
		num++
		return kplCommand{num: num, key: key, text: text}
	}
	var all []kplCommand
	type put struct {
		name string
		cmds []kplCommand
		seq  string
	}
	var puts []put
	plain := func(name string) {
		c := next("plain-"+name, name)
		all = append(all, c)
		puts = append(puts, put{name: name, cmds: []kplCommand{c}, seq: kplPut(t, kin, stream, c.key, c.data())})
	}
	agg := func(name string, texts ...string) {
		var cmds []kplCommand
		for i, text := range texts {
			key := fmt.Sprintf("%s-k%d", name, i)
			if text == "hang" {
				key = "hang"
			}
			cmds = append(cmds, next(key, name+"/"+text))
		}
		all = append(all, cmds...)
		puts = append(puts, put{name: name, cmds: cmds, seq: kplPut(t, kin, stream, "agg-"+name, kplAggregate(t, cmds))})
	}
	plain("p1")
	agg("a1", "u0", "u1", "u2", "u3", "u4")
	agg("a2", "u0", "u1", "hang", "u3", "u4")
	agg("a3", "u0", "u1", "u2", "u3", "u4")
	plain("p2")
	agg("a4", "u0", "u1", "u2", "u3", "u4")
	hang := puts[2].cmds[2]

	// Run 1: everything but the hanging user record runs; then a stop.
	col1 := &collector{}
	resp1 := &kplResponder{reply: func(ctx context.Context, text string) error {
		if text == hang.text {
			<-ctx.Done()
			return responders.Retryable(ctx.Err(), 0)
		}
		return nil
	}}
	stop1, _ := kplStartObserver(t, testConfig(id, stream), resp1, Options{OnOutcome: col1.add})
	col1.waitFor(t, len(all)-1, 60*time.Second)
	if err := stop1(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	executed := map[string]int{}
	for _, o := range col1.snapshot() {
		if o.Verdict != verdict.Executed {
			t.Errorf("run 1: %s: %s %v", o.CommandID, o.Verdict, o.Err)
		}
		executed[o.CommandID]++
	}
	if executed[hang.id()] != 0 {
		t.Fatalf("run 1: the hanging user record has an outcome")
	}
	cp := kplCheckpoint(t, env, id)
	if cp != puts[1].seq {
		t.Errorf("run 1 checkpoint %q; want %q (a1), the last record below the unfinished aggregate a2 %q", cp, puts[1].seq, puts[2].seq)
	}
	if cp == puts[2].seq || !kplSeqLess(cp, puts[2].seq) {
		t.Fatalf("run 1 checkpoint %q is not below aggregate a2 %q: its unfinished user record would be skipped", cp, puts[2].seq)
	}

	// Run 2: a2, a3, p2 and a4 come again; only the hanging record runs.
	col2 := &collector{}
	resp2 := &kplResponder{}
	stop2, _ := kplStartObserver(t, testConfig(id, stream), resp2, Options{OnOutcome: col2.add})
	redelivered := 0
	for _, p := range puts[2:] {
		redelivered += len(p.cmds)
	}
	col2.waitFor(t, redelivered, 60*time.Second)
	kplWaitCheckpoint(t, env, id, puts[len(puts)-1].seq)
	if err := stop2(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	outs2 := col2.snapshot()
	if len(outs2) != redelivered {
		t.Errorf("run 2: %d outcomes, want %d (a2, a3, p2, a4 once each)", len(outs2), redelivered)
	}
	for _, o := range outs2 {
		switch {
		case o.CommandID == hang.id() && o.Verdict == verdict.Executed:
			executed[o.CommandID]++
		case o.CommandID != hang.id() && o.Verdict == verdict.Duplicate:
		default:
			t.Errorf("run 2: %s at %s: %s %v", o.CommandID, o.Sequence, o.Verdict, o.Err)
		}
	}
	for text, n := range resp2.calls {
		if text != hang.text {
			t.Errorf("run 2 called the responder %d times for %q, which already ran", n, text)
		}
	}
	for _, c := range all {
		if executed[c.id()] != 1 {
			t.Errorf("user record %s (%s) executed %d times over two runs, want once", c.id(), c.text, executed[c.id()])
		}
	}

	// Run 3: only a new record runs.
	sentinel := next("sentinel", "sentinel")
	sentinelSeq := kplPut(t, kin, stream, sentinel.key, sentinel.data())
	col3 := &collector{}
	stop3, _ := kplStartObserver(t, testConfig(id, stream), &kplResponder{}, Options{OnOutcome: col3.add})
	col3.waitFor(t, 1, 60*time.Second)
	kplWaitCheckpoint(t, env, id, sentinelSeq)
	if err := stop3(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if outs := col3.snapshot(); len(outs) != 1 || outs[0].CommandID != sentinel.id() || outs[0].Verdict != verdict.Executed {
		t.Errorf("run 3 outcomes %+v, want the new record executed alone", outs)
	}
}

// Corrupt aggregates (valid checksum, undecodable body) in one GetRecords
// batch with good records: the KCL alone would drop the whole batch, or
// panic. The good records all run, and each corrupt one is reported and
// rejected (and dead-lettered with its original bytes).
func testKPLCorruptAggregate(t *testing.T) {
	env := useEmulators(t)
	stream := env.NewStream(t, "kplbad", 1)
	dlq := env.NewStream(t, "dlq", 1)
	id := emulator.UniqueName(t, "obs")
	kin := env.Kinesis(t)

	var good []kplCommand
	cmd := func(num int, key string) kplCommand {
		c := kplCommand{num: num, key: key, text: fmt.Sprintf("good %d", num)}
		good = append(good, c)
		return c
	}
	p1 := cmd(6001, "p1")
	firstSeq := kplPut(t, kin, stream, p1.key, p1.data())
	kplPut(t, kin, stream, "a1", kplAggregate(t, []kplCommand{cmd(6002, "a"), cmd(6003, "b"), cmd(6004, "c")}))
	// Garbage protobuf, which the KCL's de-aggregator refuses (dropping the
	// batch), and a partition-key index out of range, on which it panics.
	corrupt := aggregate([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	corruptSeq := kplPut(t, kin, stream, "bad", corrupt)
	kplPut(t, kin, stream, "a2", kplAggregate(t, []kplCommand{cmd(6005, "a"), cmd(6006, "d"), cmd(6007, "e")}))
	badIndexBody, err := proto.Marshal(&rec.AggregatedRecord{PartitionKeyTable: []string{"a"},
		Records: []*rec.Record{{PartitionKeyIndex: proto.Uint64(7), Data: cmd(6009, "lost").data()}}})
	if err != nil {
		t.Fatal(err)
	}
	good = good[:len(good)-1] // its user record cannot be read, only rejected
	badIndex := aggregate(badIndexBody)
	badIndexSeq := kplPut(t, kin, stream, "bad-index", badIndex)
	p2 := cmd(6008, "p2")
	lastSeq := kplPut(t, kin, stream, p2.key, p2.data())
	corrupted := map[string][]byte{corruptSeq: corrupt, badIndexSeq: badIndex}

	type report struct{ shard, first, last string }
	var mu sync.Mutex
	var reports []report
	col := &collector{}
	cfg := testConfig(id, stream)
	cfg.DeadLetterStream = dlq
	stop, errs := kplStartObserver(t, cfg, &kplResponder{}, Options{
		OnOutcome: col.add,
		OnCorruptAggregate: func(shard, first, last string) {
			mu.Lock()
			defer mu.Unlock()
			reports = append(reports, report{shard, first, last})
		},
	})
	outs := col.waitFor(t, len(good)+len(corrupted), 60*time.Second)
	kplWaitCheckpoint(t, env, id, lastSeq)
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	executed := map[string]int{}
	rejected := map[string]command.Outcome{}
	for _, o := range col.snapshot() {
		switch o.Verdict {
		case verdict.Executed:
			executed[o.CommandID]++
		case verdict.Rejected:
			rejected[o.Sequence] = o
		default:
			t.Errorf("%s at %s: %s %v", o.CommandID, o.Sequence, o.Verdict, o.Err)
		}
	}
	for _, c := range good {
		if executed[c.id()] != 1 {
			t.Errorf("good record %s executed %d times, want once", c.text, executed[c.id()])
		}
	}
	for seq := range corrupted {
		if o, ok := rejected[seq]; !ok || o.Reason != responders.ReasonCorruptAggregate {
			t.Errorf("corrupt aggregate at %s: outcome %+v, want rejected with reason %s", seq, o, responders.ReasonCorruptAggregate)
		}
	}
	if len(rejected) != len(corrupted) {
		t.Errorf("%d rejections, want %d (all outcomes %+v)", len(rejected), len(corrupted), outs)
	}

	mu.Lock()
	got := slices.Clone(reports)
	mu.Unlock()
	if len(got) != len(corrupted) {
		t.Fatalf("corrupt aggregate reports %+v, want %d", got, len(corrupted))
	}
	for _, r := range got {
		if r.shard != "shardId-000000000000" || kplSeqLess(corruptSeq, r.first) || kplSeqLess(r.last, badIndexSeq) {
			t.Errorf("report %+v: want shard shardId-000000000000 and a batch range around %s and %s", r, corruptSeq, badIndexSeq)
		}
		if r.first != firstSeq || r.last != lastSeq {
			t.Logf("report range %s-%s; the records were put at %s-%s (not one batch)", r.first, r.last, firstSeq, lastSeq)
		}
	}
	logged := 0
	for _, m := range errs() {
		if strings.Contains(m, "corrupt KPL aggregate") {
			logged++
		}
	}
	if logged != len(corrupted) {
		t.Errorf("%d errors logged about corrupt aggregates, want %d; errors: %q", logged, len(corrupted), errs())
	}

	letters := kplReadLetters(t, kin, dlq)
	if len(letters) != len(corrupted) {
		t.Fatalf("%d dead letters, want one per corrupt aggregate: %+v", len(letters), letters)
	}
	for _, l := range letters {
		orig, ok := corrupted[l.SequenceNumber]
		if !ok || l.Reason != verdict.RejectedBecause(responders.ReasonCorruptAggregate) || !bytes.Equal(l.Record, orig) {
			t.Errorf("dead letter reason %q at %s with %x; want %q at a corrupt aggregate's sequence number, with its original bytes",
				l.Reason, l.SequenceNumber, l.Record, verdict.RejectedBecause(responders.ReasonCorruptAggregate))
		}
	}
}

// An aggregate of many empty user records (an aggregate bomb) is rejected
// as one record: one log line, one outcome, one dead letter with the
// aggregate's bytes, and the checkpoint passes it only after that.
func testKPLOversizedAggregate(t *testing.T) {
	env := useEmulators(t)
	stream := env.NewStream(t, "kplbomb", 1)
	dlq := env.NewStream(t, "dlq", 1)
	id := emulator.UniqueName(t, "obs")
	kin := env.Kinesis(t)

	before := kplCommand{num: 7001, key: "p1", text: "before the bomb"}
	after := kplCommand{num: 7002, key: "p2", text: "after the bomb"}
	kplPut(t, kin, stream, before.key, before.data())
	empties := make([][]byte, 4*MaxAggregateRecords)
	for i := range empties {
		empties[i] = []byte{}
	}
	bomb := aggregateOf(t, []string{"k"}, empties...)
	bombSeq := kplPut(t, kin, stream, "bomb", bomb)
	lastSeq := kplPut(t, kin, stream, after.key, after.data())

	col := &collector{}
	cfg := testConfig(id, stream)
	cfg.DeadLetterStream = dlq
	stop, errs := kplStartObserver(t, cfg, &kplResponder{}, Options{OnOutcome: col.add})
	col.waitFor(t, 3, 60*time.Second)
	kplWaitCheckpoint(t, env, id, lastSeq)
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	outs := col.snapshot()
	if len(outs) != 3 {
		t.Fatalf("%d outcomes, want 3 (two commands and the aggregate): %+v", len(outs), outs)
	}
	for _, o := range outs {
		switch {
		case o.Sequence == bombSeq:
			if o.Verdict != verdict.Rejected || o.Reason != responders.ReasonCorruptAggregate {
				t.Errorf("the oversized aggregate: %+v, want rejected as %s", o, responders.ReasonCorruptAggregate)
			}
		case o.Verdict != verdict.Executed:
			t.Errorf("%s: %s %v, want executed", o.CommandID, o.Verdict, o.Err)
		}
	}
	logged := 0
	for _, m := range errs() {
		if strings.Contains(m, "KPL aggregate") {
			logged++
		}
	}
	if logged != 1 {
		t.Errorf("%d error lines about the aggregate, want 1: %q", logged, errs())
	}
	letters := kplReadLetters(t, kin, dlq)
	if len(letters) != 1 {
		t.Fatalf("%d dead letters, want one for the aggregate", len(letters))
	}
	if l := letters[0]; l.SequenceNumber != bombSeq || l.Reason != verdict.RejectedBecause(responders.ReasonCorruptAggregate) || !bytes.Equal(l.Record, bomb) {
		t.Errorf("dead letter %q at %s (%d bytes); want the aggregate's original %d bytes at %s", l.Reason, l.SequenceNumber, len(l.Record), len(bomb), bombSeq)
	}
}

func kplReadLetters(t *testing.T, kin *kds.Client, stream string) []deadletter.Letter {
	t.Helper()
	it, err := kin.GetShardIterator(t.Context(), &kds.GetShardIteratorInput{
		StreamName: aws.String(stream), ShardId: aws.String("shardId-000000000000"), ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []deadletter.Letter
	for iter := it.ShardIterator; iter != nil; {
		res, err := kin.GetRecords(t.Context(), &kds.GetRecordsInput{ShardIterator: iter})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Records {
			l, err := deadletter.Decode(r.Data)
			if err != nil {
				t.Errorf("not a dead letter: %v", err)
				continue
			}
			out = append(out, l)
		}
		if len(res.Records) == 0 {
			break
		}
		iter = res.NextShardIterator
	}
	return out
}
