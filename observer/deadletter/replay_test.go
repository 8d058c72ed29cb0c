package deadletter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kintypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/backoff"
	"github.com/sauna-io/sauna/observer/verdict"
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
	atTime   bool              // iterators are AT_TIMESTAMP, not TRIM_HORIZON
	expire   map[string]bool   // iterators that fail once as expired
	after    map[string]string // sequence number -> the page after it

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
	f.iterFrom = append(f.iterFrom, aws.ToString(in.ShardId))
	if in.ShardIteratorType == kintypes.ShardIteratorTypeAfterSequenceNumber {
		// Resumed after an expired iterator: the page after the record.
		return &kinesis.GetShardIteratorOutput{ShardIterator: aws.String(aws.ToString(in.ShardId) + "#" + f.after[aws.ToString(in.StartingSequenceNumber)])}, nil
	}
	if want := f.wantIterator(); in.ShardIteratorType != want {
		f.t.Errorf("iterator type %s, want %s", in.ShardIteratorType, want)
	}
	return &kinesis.GetShardIteratorOutput{ShardIterator: aws.String(aws.ToString(in.ShardId) + "#0")}, nil
}

func (f *fakeStream) wantIterator() kintypes.ShardIteratorType {
	if f.atTime {
		return kintypes.ShardIteratorTypeAtTimestamp
	}
	return kintypes.ShardIteratorTypeTrimHorizon
}

func (f *fakeStream) GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error) {
	f.deadline(ctx, "GetRecords")
	f.mu.Lock()
	defer f.mu.Unlock()
	it := aws.ToString(in.ShardIterator)
	f.reads = append(f.reads, it)
	if f.expire[it] {
		delete(f.expire, it)
		return nil, &kintypes.ExpiredIteratorException{Message: aws.String("Iterator expired")}
	}
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
				page(0, letterRecord(t, "10", letterWith("k1", verdict.FailedPermanently, "one", at))),
			},
			"shardId-000000000002": {
				page(0,
					letterRecord(t, "20", letterWith("k1", verdict.FailedPermanently, "two", at.Add(time.Second))),
					kintypes.Record{SequenceNumber: aws.String("21"), PartitionKey: aws.String("x"), Data: []byte("hello")}),
				// Behind but empty: keep reading.
				page(1500),
				page(0,
					letterRecord(t, "22", letterWith("k2", verdict.RejectedBecause("invalid_json"), "three", at.Add(2*time.Second))),
					letterRecord(t, "23", letterWith("k2", verdict.RetryBudgetExhausted, "four", at.Add(3*time.Second)))),
				page(0),
				// Never reached: caught up before.
				page(0, letterRecord(t, "99", letterWith("k9", verdict.FailedPermanently, "nine", at))),
			},
		},
		closed: map[string]bool{"shardId-000000000000": true},
	}
	var out bytes.Buffer
	r := newReplayer(f, Options{From: "dlq", To: "commands", Filter: Filter{Reason: "failed"}, Out: &out})
	r.pollGap = time.Millisecond
	stats, err := r.run(t.Context())
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	if stats.Records != 5 || stats.Letters != 4 || stats.Unreadable != 1 || stats.Selected != 2 || stats.Replayed != 2 {
		t.Errorf("stats %+v", stats)
	}
	if diff := cmp.Diff(map[string]int{verdict.FailedPermanently: 2}, stats.ByReason); diff != "" {
		t.Errorf("by reason (-want +got):\n%s", diff)
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
	lines := jsonLines(t, out.String())
	if len(lines) != 2 {
		t.Fatalf("%d output lines, want 2:\n%s", len(lines), out.String())
	}
	want := map[string]string{
		"commandId": "3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44", "schema": "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0",
		"shard": "shardId-000000000000", "sequenceNumber": "10", "arrival": formatTime(at), "reason": verdict.FailedPermanently,
		"deadLetterOf": "orders-commands/shardId-000000000001/49590338271490256608559692538361571095921575989136588818",
		"toShard":      "shardId-000000000009", "toSequenceNumber": "1",
	}
	if diff := cmp.Diff(want, lines[0]); diff != "" {
		t.Errorf("first line (-want +got):\n%s", diff)
	}
}

// jsonLines decodes one JSON object of strings per line.
func jsonLines(t *testing.T, out string) []map[string]string {
	t.Helper()
	var lines []map[string]string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var m map[string]string
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("output line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

func TestReplayStopsAtNewerRecords(t *testing.T) {
	old := time.Now().Add(-time.Minute)
	newer := letterRecord(t, "2", letterWith("k", verdict.FailedPermanently, "new", time.Now().Add(time.Hour)))
	f := &fakeStream{
		t:        t,
		listings: []*kinesis.ListShardsOutput{{Shards: []kintypes.Shard{{ShardId: aws.String("shardId-000000000000")}}}},
		pages: map[string][]*kinesis.GetRecordsOutput{"shardId-000000000000": {
			page(0, letterRecord(t, "1", letterWith("k", verdict.FailedPermanently, "old", old)), newer),
		}},
	}
	var out bytes.Buffer
	r := newReplayer(f, Options{From: "dlq", To: "commands", Out: &out})
	r.pollGap = time.Millisecond
	stats, err := r.run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if stats.Replayed != 1 || stats.Later != 1 || len(f.reads) != 1 {
		t.Errorf("stats %+v after %d reads; want 1 replayed, stopped at the newer record", stats, len(f.reads))
	}
	if !strings.Contains(stats.String(), "up to the end of the window") {
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
				page(0, letterRecord(t, "1", letterWith("k", verdict.FailedPermanently, "a", at))),
				page(0),
			}},
		}
	}
	run := func(f *fakeStream) (Stats, error) {
		r := newReplayer(f, Options{From: "dlq", To: "commands"})
		r.pollGap, r.backoff, r.putAttempts = time.Millisecond, backoff.Policy{First: time.Millisecond, Max: time.Millisecond}, 3
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
	now := time.Now()
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{To: "x"}, "no stream to read"},
		{Options{From: "dlq"}, "no target stream"},
		{Options{From: "s", DryRun: true, Filter: Filter{Since: now.Add(-time.Minute), Until: now.Add(-time.Hour)}}, "not before its end"},
		{Options{From: "s", DryRun: true, Filter: Filter{Since: now.Add(time.Hour)}}, "starts in the future"},
		{Options{From: "s", DryRun: true, Rate: -1}, "negative rate"},
	} {
		_, err := Replay(t.Context(), &fakeStream{t: t}, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Replay(%+v) = %v, want %q", tc.opts, err, tc.want)
		}
	}
}

// An iterator that expires while a page is being put (a slow --rate) is
// replaced by one after the last record handled.
func TestReplayExpiredIterator(t *testing.T) {
	at := time.Now().Add(-time.Minute)
	f := &fakeStream{
		t:        t,
		listings: []*kinesis.ListShardsOutput{{Shards: []kintypes.Shard{{ShardId: aws.String("shardId-000000000000")}}}},
		pages: map[string][]*kinesis.GetRecordsOutput{"shardId-000000000000": {
			page(10, letterRecord(t, "1", letterWith("k", verdict.FailedPermanently, "a", at))),
			page(0, letterRecord(t, "2", letterWith("k", verdict.FailedPermanently, "b", at))),
			page(0),
		}},
		closed: map[string]bool{"shardId-000000000000": true},
		expire: map[string]bool{"shardId-000000000000#1": true},
		after:  map[string]string{"1": "1"},
	}
	var progress bytes.Buffer
	r := newReplayer(f, Options{From: "dlq", To: "commands", Progress: &progress, ProgressEvery: time.Nanosecond})
	r.pollGap = time.Millisecond
	stats, err := r.run(t.Context())
	if err != nil || stats.Replayed != 2 {
		t.Fatalf("Replay: %+v, %v", stats, err)
	}
	if !strings.Contains(progress.String(), "replay: 2 records read, 2 selected, 2 replayed; reading shardId-000000000000") {
		t.Errorf("progress lines:\n%s", progress.String())
	}
	want := []string{"shardId-000000000000#0", "shardId-000000000000#1", "shardId-000000000000#1", "shardId-000000000000#2"}
	if diff := cmp.Diff(want, f.reads); diff != "" {
		t.Errorf("reads (-want +got):\n%s", diff)
	}
}
