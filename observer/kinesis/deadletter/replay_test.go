package deadletter

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kintypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
)

// fakeStream serves fixed GetRecords pages per shard. An iterator is
// "<shard>#<page>"; a nil next iterator after the last page closes the shard
// when closed[shard] is set, otherwise the last page repeats.
type fakeStream struct {
	t        *testing.T
	pages    map[string][]*kinesis.GetRecordsOutput
	closed   map[string]bool
	listings []*kinesis.ListShardsOutput
	put      func(n int, in *kinesis.PutRecordInput) (*kinesis.PutRecordOutput, error)

	mu       sync.Mutex
	lists    []*kinesis.ListShardsInput
	reads    []string
	puts     []*kinesis.PutRecordInput
	iterFrom []string
}

func (f *fakeStream) deadline(ctx context.Context, op string) {
	if _, ok := ctx.Deadline(); !ok {
		f.t.Errorf("%s without a deadline", op)
	}
}

func (f *fakeStream) ListShards(ctx context.Context, in *kinesis.ListShardsInput, _ ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	f.deadline(ctx, "ListShards")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists = append(f.lists, in)
	return f.listings[len(f.lists)-1], nil
}

func (f *fakeStream) GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, _ ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error) {
	f.deadline(ctx, "GetShardIterator")
	f.mu.Lock()
	defer f.mu.Unlock()
	if in.ShardIteratorType != kintypes.ShardIteratorTypeTrimHorizon {
		f.t.Errorf("iterator type %s, want TRIM_HORIZON", in.ShardIteratorType)
	}
	f.iterFrom = append(f.iterFrom, aws.ToString(in.ShardId))
	return &kinesis.GetShardIteratorOutput{ShardIterator: aws.String(aws.ToString(in.ShardId) + "#0")}, nil
}

func (f *fakeStream) GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	f.deadline(ctx, "GetRecords")
	f.mu.Lock()
	defer f.mu.Unlock()
	it := aws.ToString(in.ShardIterator)
	f.reads = append(f.reads, it)
	var shard string
	var page int
	if _, err := fmt.Sscanf(strings.Replace(it, "#", " ", 1), "%s %d", &shard, &page); err != nil {
		f.t.Fatalf("bad iterator %q", it)
	}
	pages := f.pages[shard]
	out := *pages[min(page, len(pages)-1)]
	if page+1 < len(pages) || !f.closed[shard] {
		out.NextShardIterator = aws.String(fmt.Sprintf("%s#%d", shard, page+1))
	}
	return &out, nil
}

func (f *fakeStream) PutRecord(ctx context.Context, in *kinesis.PutRecordInput, _ ...func(*kinesis.Options)) (*kinesis.PutRecordOutput, error) {
	f.deadline(ctx, "PutRecord")
	f.mu.Lock()
	f.puts = append(f.puts, in)
	n := len(f.puts)
	f.mu.Unlock()
	if f.put != nil {
		return f.put(n, in)
	}
	return &kinesis.PutRecordOutput{ShardId: aws.String("shardId-000000000009"), SequenceNumber: aws.String(fmt.Sprint(n))}, nil
}

func letterRecord(t *testing.T, seq string, l Letter) kintypes.Record {
	t.Helper()
	b, err := Encode(l)
	if err != nil {
		t.Fatal(err)
	}
	return kintypes.Record{SequenceNumber: aws.String(seq), PartitionKey: aws.String(l.PartitionKey), Data: b,
		ApproximateArrivalTimestamp: aws.Time(l.DeadLetteredAt)}
}

func page(behind int64, recs ...kintypes.Record) *kinesis.GetRecordsOutput {
	return &kinesis.GetRecordsOutput{Records: recs, MillisBehindLatest: aws.Int64(behind)}
}

func letterWith(key, reason, original string, at time.Time) Letter {
	l := fullLetter()
	l.PartitionKey, l.Reason, l.Record, l.DeadLetteredAt = key, reason, []byte(original), at
	return l
}

func TestReplayFake(t *testing.T) {
	at := time.Now().Add(-time.Hour).UTC()
	f := &fakeStream{
		t: t,
		listings: []*kinesis.ListShardsOutput{
			{Shards: []kintypes.Shard{{ShardId: aws.String("shardId-000000000002")}}, NextToken: aws.String("tok")},
			{Shards: []kintypes.Shard{{ShardId: aws.String("shardId-000000000000")}}},
		},
		pages: map[string][]*kinesis.GetRecordsOutput{
			// A parent, closed after a split: read first.
			"shardId-000000000000": {
				page(0, letterRecord(t, "10", letterWith("k1", ReasonFailedPermanently, "one", at))),
			},
			"shardId-000000000002": {
				page(0,
					letterRecord(t, "20", letterWith("k1", ReasonFailedPermanently, "two", at.Add(time.Second))),
					kintypes.Record{SequenceNumber: aws.String("21"), PartitionKey: aws.String("x"), Data: []byte("hello")}),
				// Behind but empty: keep reading.
				page(1500),
				page(0,
					letterRecord(t, "22", letterWith("k2", Rejected("invalid_json"), "three", at.Add(2*time.Second))),
					letterRecord(t, "23", letterWith("k2", ReasonRetryBudgetExhausted, "four", at.Add(3*time.Second)))),
				page(0),
				// Never reached: caught up before.
				page(0, letterRecord(t, "99", letterWith("k9", ReasonFailedPermanently, "nine", at))),
			},
		},
		closed: map[string]bool{"shardId-000000000000": true},
	}
	var out bytes.Buffer
	r := newReplayer(f, "dlq", "commands", Filter{Reason: "failed"}, false, &out)
	r.pollGap = time.Millisecond
	stats, err := r.run(t.Context())
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	wantStats := Stats{Records: 5, Letters: 4, NotLetters: 1, Matched: 2, Replayed: 2}
	if diff := cmp.Diff(wantStats, stats); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]*kinesis.ListShardsInput{{StreamName: aws.String("dlq")}, {NextToken: aws.String("tok")}}, f.lists,
		cmp.Comparer(func(a, b *kinesis.ListShardsInput) bool {
			return aws.ToString(a.StreamName) == aws.ToString(b.StreamName) && aws.ToString(a.NextToken) == aws.ToString(b.NextToken)
		})); diff != "" {
		t.Errorf("ListShards calls (-want +got):\n%s", diff)
	}
	wantReads := []string{"shardId-000000000000#0", "shardId-000000000002#0", "shardId-000000000002#1", "shardId-000000000002#2", "shardId-000000000002#3"}
	if diff := cmp.Diff(wantReads, f.reads); diff != "" {
		t.Errorf("GetRecords calls (-want +got):\n%s", diff)
	}
	var puts []string
	for _, p := range f.puts {
		puts = append(puts, aws.ToString(p.StreamName)+" "+aws.ToString(p.PartitionKey)+" "+string(p.Data))
	}
	if diff := cmp.Diff([]string{"commands k1 one", "commands k1 two"}, puts); diff != "" {
		t.Errorf("puts (-want +got):\n%s", diff)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var kinds []string
	for _, l := range lines {
		kinds = append(kinds, strings.SplitN(l, "\t", 2)[0])
	}
	if diff := cmp.Diff([]string{"replayed", "replayed", "not-a-letter"}, kinds); diff != "" {
		t.Errorf("output kinds (-want +got):\n%s\n%s", diff, out.String())
	}
	if !strings.Contains(lines[0], "\tdlq=shardId-000000000000/10\tto=shardId-000000000009/1") ||
		!strings.Contains(lines[0], "commandId=3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44\treason=failed_permanently\tschema=iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0") {
		t.Errorf("replayed line: %q", lines[0])
	}
}

func TestReplayStopsAtNewerRecords(t *testing.T) {
	old := time.Now().Add(-time.Minute)
	newer := letterRecord(t, "2", letterWith("k", ReasonFailedPermanently, "new", time.Now().Add(time.Hour)))
	f := &fakeStream{
		t:        t,
		listings: []*kinesis.ListShardsOutput{{Shards: []kintypes.Shard{{ShardId: aws.String("shardId-000000000000")}}}},
		pages: map[string][]*kinesis.GetRecordsOutput{"shardId-000000000000": {
			page(0, letterRecord(t, "1", letterWith("k", ReasonFailedPermanently, "old", old)), newer),
		}},
	}
	var out bytes.Buffer
	r := newReplayer(f, "dlq", "commands", Filter{}, false, &out)
	r.pollGap = time.Millisecond
	stats, err := r.run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if stats.Replayed != 1 || stats.Later != 1 || len(f.reads) != 1 {
		t.Errorf("stats %+v after %d reads; want 1 replayed, stopped at the newer record", stats, len(f.reads))
	}
	if !strings.Contains(stats.String(), "newer than this replay") {
		t.Errorf("summary %q does not mention the records left", stats)
	}
}

func TestReplayPutErrors(t *testing.T) {
	at := time.Now().Add(-time.Minute)
	newFake := func() *fakeStream {
		return &fakeStream{
			t:        t,
			listings: []*kinesis.ListShardsOutput{{Shards: []kintypes.Shard{{ShardId: aws.String("shardId-000000000000")}}}},
			pages: map[string][]*kinesis.GetRecordsOutput{"shardId-000000000000": {
				page(0, letterRecord(t, "1", letterWith("k", ReasonFailedPermanently, "a", at))),
				page(0),
			}},
		}
	}
	run := func(f *fakeStream) (Stats, error) {
		r := newReplayer(f, "dlq", "commands", Filter{}, false, &bytes.Buffer{})
		r.pollGap, r.minBackoff, r.maxBackoff, r.putAttempts = time.Millisecond, time.Millisecond, time.Millisecond, 3
		return r.run(t.Context())
	}
	f := newFake()
	f.put = func(n int, in *kinesis.PutRecordInput) (*kinesis.PutRecordOutput, error) {
		if n == 1 {
			return nil, apiErr("InternalFailure")
		}
		return &kinesis.PutRecordOutput{ShardId: aws.String("s"), SequenceNumber: aws.String("1")}, nil
	}
	if stats, err := run(f); err != nil || stats.Replayed != 1 {
		t.Errorf("transient failure: %+v, %v", stats, err)
	}
	f = newFake()
	f.put = func(int, *kinesis.PutRecordInput) (*kinesis.PutRecordOutput, error) {
		return nil, apiErr("InternalFailure")
	}
	if _, err := run(f); err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Errorf("persistent failure: %v", err)
	}
	f = newFake()
	f.put = func(int, *kinesis.PutRecordInput) (*kinesis.PutRecordOutput, error) {
		return nil, &kintypes.ResourceNotFoundException{Message: aws.String("no such stream")}
	}
	if _, err := run(f); err == nil || !strings.Contains(err.Error(), "no such stream") {
		t.Errorf("missing target: %v", err)
	}
}

func TestReplayArguments(t *testing.T) {
	for _, tc := range []struct {
		from, to string
		dry      bool
		want     string
	}{
		{"", "x", false, "no dead-letter stream"},
		{"dlq", "", false, "no target stream"},
		{"dlq", "dlq", true, "both"},
	} {
		_, err := Replay(t.Context(), &fakeStream{t: t}, tc.from, tc.to, Filter{}, tc.dry, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Replay(%q, %q) = %v, want %q", tc.from, tc.to, err, tc.want)
		}
	}
}

func TestITReplay(t *testing.T) {
	env := emulator.Require(t)
	kin := env.Kinesis(t)
	dlq, target := emulator.UniqueName(t, "dlq"), emulator.UniqueName(t, "target")
	env.CreateStream(t, dlq, 2)
	env.CreateStream(t, target, 1)

	now := time.Now().UTC()
	slack := "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0"
	pd := "iglu:com.pagerduty.sauna.commands/create_event/jsonschema/1-0-0"
	mk := func(key, reason, schema, original string, ago time.Duration) Letter {
		l := letterWith(key, reason, original, now.Add(-ago))
		l.CommandSchema = schema
		return l
	}
	letters := []Letter{
		mk("k1", ReasonFailedPermanently, slack, "k1-first", 3*time.Hour),
		mk("k2", Rejected("invalid_json"), "", "\xff not json", 2*time.Hour),
		mk("k1", ReasonRetryBudgetExhausted, pd, "k1-second", time.Hour),
		mk("k3", ReasonRetryBudgetExhausted, pd, "k3-only", 50*time.Minute),
		mk("k1", ReasonFailedPermanently, slack, "k1-third", 30*time.Minute),
	}
	letters[1].CommandID = ""
	w := NewWriter(kin, dlq, nil)
	for _, l := range letters {
		if err := w.Put(t.Context(), l); err != nil {
			t.Fatal(err)
		}
	}
	// A letter whose bytes were not kept, and a record that is no letter.
	tooBig := mk("k4", ReasonFailedPermanently, slack, "", 10*time.Minute)
	tooBig.Record, tooBig.RecordSize = nil, 3<<20
	if err := w.Put(t.Context(), tooBig); err != nil {
		t.Fatal(err)
	}
	env.PutRecords(t, dlq, []emulator.Record{{PartitionKey: "x", Data: []byte(`{"hello":"world"}`)}})

	replay := func(f Filter, dry bool) (Stats, string) {
		t.Helper()
		var out bytes.Buffer
		r := newReplayer(kin, dlq, target, f, dry, &out)
		r.pollGap = 10 * time.Millisecond
		stats, err := r.run(t.Context())
		if err != nil {
			t.Fatalf("Replay(%+v, dry %v): %v", f, dry, err)
		}
		return stats, out.String()
	}
	targetRecords := func() []string {
		var got []string
		for _, rec := range readAll(t, kin, target) {
			got = append(got, aws.ToString(rec.PartitionKey)+" "+string(rec.Data))
		}
		return got
	}

	// Dry run: every letter printed, nothing put.
	stats, out := replay(Filter{}, true)
	if diff := cmp.Diff(Stats{Records: 7, Letters: 6, NotLetters: 1, Matched: 6, NoRecord: 1}, stats); diff != "" {
		t.Errorf("dry-run stats (-want +got):\n%s", diff)
	}
	if n := strings.Count(out, "would-replay\t"); n != 5 {
		t.Errorf("%d would-replay lines, want 5:\n%s", n, out)
	}
	if !strings.Contains(out, "no-record\t") || !strings.Contains(out, "recordSize=3145728") || !strings.Contains(out, "not-a-letter\t") {
		t.Errorf("dry-run output lacks the no-record or not-a-letter line:\n%s", out)
	}
	if got := targetRecords(); len(got) != 0 {
		t.Fatalf("dry run put %d records", len(got))
	}

	// By schema and time window: the pagerduty letters within the last 2 h,
	// minus the one at 50 min (Until is exclusive of later letters).
	stats, _ = replay(Filter{Schema: "com.pagerduty", Since: now.Add(-2 * time.Hour), Until: now.Add(-55 * time.Minute)}, false)
	if stats.Matched != 1 || stats.Replayed != 1 {
		t.Errorf("schema+window replay stats %+v, want 1 matched and replayed", stats)
	}
	if diff := cmp.Diff([]string{"k1 k1-second"}, targetRecords()); diff != "" {
		t.Errorf("target after the schema replay (-want +got):\n%s", diff)
	}

	// By reason prefix: the original bytes, under the original keys, in
	// order per key.
	stats, _ = replay(Filter{Reason: "failed"}, false)
	if stats.Matched != 3 || stats.Replayed != 2 || stats.NoRecord != 1 {
		t.Errorf("reason replay stats %+v, want 3 matched, 2 replayed, 1 without record", stats)
	}
	stats, _ = replay(Filter{Reason: "rejected:"}, false)
	if stats.Replayed != 1 {
		t.Errorf("rejected replay stats %+v", stats)
	}
	want := []string{"k1 k1-second", "k1 k1-first", "k1 k1-third", "k2 \xff not json"}
	if diff := cmp.Diff(want, targetRecords()); diff != "" {
		t.Errorf("target records (-want +got):\n%s", diff)
	}

	// The exported entry point, as the CLI calls it.
	var buf bytes.Buffer
	stats, err := Replay(t.Context(), kin, dlq, "", Filter{Reason: ReasonRetryBudgetExhausted}, true, &buf)
	if err != nil || stats.Matched != 2 {
		t.Errorf("Replay dry run: %+v, %v\n%s", stats, err, buf.String())
	}
}
