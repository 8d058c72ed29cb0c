package deadletter

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kintypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/backoff"
	"github.com/sauna-io/sauna/observer/internal/testlog"
	"github.com/sauna-io/sauna/observer/kinesis/emulator"
)

// fakePut answers PutRecord with its function; every call must carry a
// deadline within the Writer's call timeout.
type fakePut struct {
	t           *testing.T
	callTimeout time.Duration
	put         func(n int, in *kinesis.PutRecordInput) (*kinesis.PutRecordOutput, error)

	mu    sync.Mutex
	calls []*kinesis.PutRecordInput
}

func (f *fakePut) PutRecord(ctx context.Context, in *kinesis.PutRecordInput, _ ...func(*kinesis.Options)) (*kinesis.PutRecordOutput, error) {
	dl, ok := ctx.Deadline()
	if !ok || time.Until(dl) > f.callTimeout {
		f.t.Errorf("PutRecord without a deadline within %v", f.callTimeout)
	}
	f.mu.Lock()
	f.calls = append(f.calls, in)
	n := len(f.calls)
	f.mu.Unlock()
	return f.put(n, in)
}

func (f *fakePut) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func apiErr(code string) error { return &smithy.GenericAPIError{Code: code, Message: code + " (test)"} }

func testWriter(t *testing.T, kin PutRecorder) *Writer {
	w := NewWriter(kin, "dlq", testlog.Logger(t))
	w.callTimeout = time.Second
	w.backoff = backoff.Policy{First: time.Millisecond, Max: 4 * time.Millisecond}
	return w
}

func ok(*kinesis.PutRecordInput) (*kinesis.PutRecordOutput, error) {
	return &kinesis.PutRecordOutput{ShardId: aws.String("shardId-000000000000"), SequenceNumber: aws.String("1")}, nil
}

func TestWriterRetriesTransientErrors(t *testing.T) {
	f := &fakePut{t: t, callTimeout: time.Second}
	f.put = func(n int, in *kinesis.PutRecordInput) (*kinesis.PutRecordOutput, error) {
		switch n {
		case 1:
			return nil, &kintypes.ProvisionedThroughputExceededException{Message: aws.String("slow down")}
		case 2:
			// The stream is being created by an operator: wait for it.
			return nil, &kintypes.ResourceNotFoundException{Message: aws.String("no stream dlq")}
		}
		return ok(in)
	}
	l := fullLetter()
	if err := testWriter(t, f).Put(t.Context(), l); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if f.count() != 3 {
		t.Fatalf("%d calls, want 3", f.count())
	}
	for _, in := range f.calls {
		if aws.ToString(in.StreamName) != "dlq" || aws.ToString(in.PartitionKey) != "customer-42" {
			t.Errorf("put to %q with key %q, want dlq and the original key", aws.ToString(in.StreamName), aws.ToString(in.PartitionKey))
		}
		got, err := Decode(in.Data)
		if err != nil {
			t.Fatalf("written record is not a letter: %v", err)
		}
		if diff := cmp.Diff(l, got); diff != "" {
			t.Errorf("letter (-want +got):\n%s", diff)
		}
	}
}

func TestWriterPermanentError(t *testing.T) {
	f := &fakePut{t: t, callTimeout: time.Second}
	f.put = func(int, *kinesis.PutRecordInput) (*kinesis.PutRecordOutput, error) {
		return nil, apiErr("ValidationException")
	}
	err := testWriter(t, f).Put(t.Context(), fullLetter())
	if err == nil || !strings.Contains(err.Error(), "ValidationException") {
		t.Fatalf("Put = %v, want the validation error", err)
	}
	if f.count() != 1 {
		t.Errorf("%d calls for a permanent error, want 1", f.count())
	}
}

func TestWriterStopsWithContext(t *testing.T) {
	f := &fakePut{t: t, callTimeout: time.Second}
	ctx, cancel := context.WithCancel(t.Context())
	f.put = func(n int, _ *kinesis.PutRecordInput) (*kinesis.PutRecordOutput, error) {
		if n == 5 {
			cancel()
		}
		return nil, apiErr("InternalFailure")
	}
	err := testWriter(t, f).Put(ctx, fullLetter())
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "InternalFailure") {
		t.Fatalf("Put = %v, want the context's error with the last failure", err)
	}
}

func TestWriterDefaults(t *testing.T) {
	f := &fakePut{t: t, callTimeout: time.Second, put: func(_ int, in *kinesis.PutRecordInput) (*kinesis.PutRecordOutput, error) { return ok(in) }}
	w := testWriter(t, f)
	fixed := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	w.now = func() time.Time { return fixed }
	l := fullLetter()
	l.DeadLetteredAt, l.PartitionKey = time.Time{}, ""
	if err := w.Put(t.Context(), l); err != nil {
		t.Fatal(err)
	}
	got, err := Decode(f.calls[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if !got.DeadLetteredAt.Equal(fixed) {
		t.Errorf("deadLetteredAt %v, want now (%v)", got.DeadLetteredAt, fixed)
	}
	if k := aws.ToString(f.calls[0].PartitionKey); k != l.CommandID {
		t.Errorf("partition key %q, want the command id when the original has none", k)
	}
	if w.Stream() != "dlq" {
		t.Errorf("Stream() = %q", w.Stream())
	}
}

func TestPartitionKey(t *testing.T) {
	long := strings.Repeat("ü", 300)
	tests := []struct {
		l    Letter
		want string
	}{
		{Letter{PartitionKey: "k", CommandID: "c"}, "k"},
		{Letter{CommandID: "c", Shard: "s", SequenceNumber: "1"}, "c"},
		{Letter{Shard: "s", SequenceNumber: "1"}, "s/1"},
		{Letter{}, "dead-letter"},
		{Letter{PartitionKey: long}, strings.Repeat("ü", 256)},
	}
	for _, tc := range tests {
		if got := partitionKey(tc.l); got != tc.want {
			t.Errorf("partitionKey(%+v) = %q, want %q", tc.l, got, tc.want)
		}
	}
}

func TestWriterOversizedLetter(t *testing.T) {
	f := &fakePut{t: t, callTimeout: time.Second, put: func(_ int, in *kinesis.PutRecordInput) (*kinesis.PutRecordOutput, error) { return ok(in) }}
	w := testWriter(t, f)
	w.maxRecordBytes = 2000
	l := fullLetter()
	l.Record = []byte(strings.Repeat("x", 1500)) // 2000 bytes as base64
	if err := w.Put(t.Context(), l); err != nil {
		t.Fatal(err)
	}
	got, err := Decode(f.calls[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Record != nil || got.RecordSize != 1500 || got.SequenceNumber != l.SequenceNumber {
		t.Errorf("oversized letter written as record %d bytes, size %d, seq %s; want no record, size 1500", len(got.Record), got.RecordSize, got.SequenceNumber)
	}
	if len(f.calls[0].Data) > 2000 {
		t.Errorf("written %d bytes, over the limit", len(f.calls[0].Data))
	}
}

// readAll reads every record of a stream, shard by shard, until each is
// caught up.
func readAll(t *testing.T, kin *kinesis.Client, stream string) []kintypes.Record {
	t.Helper()
	ctx := t.Context()
	shards, err := kin.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatal(err)
	}
	var recs []kintypes.Record
	for _, sh := range shards.Shards {
		it, err := kin.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
			StreamName: aws.String(stream), ShardId: sh.ShardId, ShardIteratorType: kintypes.ShardIteratorTypeTrimHorizon,
		})
		if err != nil {
			t.Fatal(err)
		}
		iter := it.ShardIterator
		for iter != nil {
			out, err := kin.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter})
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, out.Records...)
			if len(out.Records) == 0 {
				break
			}
			iter = out.NextShardIterator
		}
	}
	return recs
}

func TestITWriter(t *testing.T) {
	env := emulator.Require(t)
	kin := env.Kinesis(t)
	stream := env.NewStream(t, "dlq", 1)
	w := NewWriter(kin, stream, testlog.Logger(t))
	var want []Letter
	for i, key := range []string{"a", "b", "a"} {
		l := fullLetter()
		l.PartitionKey = key
		l.SequenceNumber = string(rune('1' + i))
		if err := w.Put(t.Context(), l); err != nil {
			t.Fatalf("Put: %v", err)
		}
		want = append(want, l)
	}
	var got []Letter
	for _, rec := range readAll(t, kin, stream) {
		l, err := Decode(rec.Data)
		if err != nil {
			t.Fatalf("read back: %v", err)
		}
		if aws.ToString(rec.PartitionKey) != l.PartitionKey {
			t.Errorf("record key %q, letter key %q", aws.ToString(rec.PartitionKey), l.PartitionKey)
		}
		got = append(got, l)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("letters read back (-want +got):\n%s", diff)
	}
}
