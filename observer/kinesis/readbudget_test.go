package kinesis

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/middleware"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
)

func bytesRecords(sizes ...int) []types.Record {
	out := make([]types.Record, len(sizes))
	for i, n := range sizes {
		out[i] = types.Record{Data: make([]byte, n)}
	}
	return out
}

// The budget follows the KCL's: full at the start, charged the previous
// read before each read, grown at 2 MB/s up to 10 MB; a read is refused
// while it is below one byte.
func TestReadBudgetFollowsTheKCLsBudget(t *testing.T) {
	b := newReadBudget()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const s = "shardId-000000000000"
	wantShort := func(at time.Time, short float64) {
		t.Helper()
		want := time.Duration(short/readBytesPerSecond*float64(time.Second)) + readBudgetSlack
		if got := b.wait(s, at); got != want {
			t.Errorf("wait at +%s: %s, want %s", at.Sub(t0), got, want)
		}
	}
	wantNone := func(at time.Time) {
		t.Helper()
		if got := b.wait(s, at); got != 0 {
			t.Errorf("wait at +%s: %s, want none", at.Sub(t0), got)
		}
	}

	wantNone(t0) // unknown shard
	b.started(s)
	b.answered(s, bytesRecords(2_000_000, 2_000_000), t0)
	for range 2 { // 10 MB - 4 MB - 4 MB = 2 MB left
		wantNone(t0)
		b.reading(s, t0)
		b.answered(s, bytesRecords(4_000_000), t0)
	}
	wantNone(t0)
	b.reading(s, t0) // 2 MB - 4 MB
	b.answered(s, bytesRecords(4_000_000), t0)
	wantShort(t0, 2_000_001)
	wantShort(t0.Add(500*time.Millisecond), 1_000_001)
	wantNone(t0.Add(1001 * time.Millisecond))

	// Grown over a minute, the budget is capped at the burst: three reads
	// of 4 MB put it 2 MB short again.
	t1 := t0.Add(time.Minute)
	for range 3 {
		b.reading(s, t1)
		b.answered(s, bytesRecords(4_000_000), t1)
	}
	wantShort(t1, 2_000_001)

	// An empty read is not charged, and the KCL checks nothing after it.
	b.reading(s, t1)
	b.answered(s, nil, t1)
	wantNone(t1)
	b.reading(s, t1)
	b.answered(s, bytesRecords(100), t1)
	wantShort(t1, 6_000_001) // the 4 MB of the read before the empty one was charged

	b.started(s) // a new consumer of the shard
	b.answered(s, bytesRecords(4_000_000), t1)
	wantNone(t1)
	b.reading(s, t1)
	b.answered(s, bytesRecords(4_000_000), t1)
	b.forget(s)
	wantNone(t1)
}

// roundTrip is an http.RoundTripper from a function.
type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The aggregate guard feeds the budget of the shard each read belongs to:
// started with the shard's iterator, the bytes of each answer, charged at
// the next read.
func TestAggregateGuardFeedsTheReadBudget(t *testing.T) {
	synctest.Test(t, guardFeedsTheReadBudget)
}

func guardFeedsTheReadBudget(t *testing.T) {
	g := newAggregateGuard(slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	g.budget = newReadBudget()
	const shard = "shardId-000000000003"
	data := base64.StdEncoding.EncodeToString(make([]byte, 3_000_000))
	client := &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
		var body string
		switch target := r.Header.Get("X-Amz-Target"); target {
		case "Kinesis_20131202.GetShardIterator":
			body = `{"ShardIterator":"it-0"}`
		case "Kinesis_20131202.GetRecords":
			in, _ := io.ReadAll(r.Body)
			var n int
			if _, err := fmt.Sscanf(strings.SplitAfter(string(in), `"it-`)[1], "%d", &n); err != nil {
				return nil, fmt.Errorf("no iterator in %s", in)
			}
			body = fmt.Sprintf(`{"Records":[{"SequenceNumber":"%d","PartitionKey":"k","Data":%q}],"NextShardIterator":"it-%d","MillisBehindLatest":0}`, n, data, n+1)
		default:
			return nil, fmt.Errorf("unexpected %s", target)
		}
		return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/x-amz-json-1.1"}},
			Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
	})}
	kin := kds.New(kds.Options{Region: "us-east-1", HTTPClient: client, BaseEndpoint: aws.String("http://127.0.0.1:1"),
		Credentials: aws.AnonymousCredentials{}, APIOptions: []func(*middleware.Stack) error{g.apply}})
	ctx := context.Background()
	it, err := kin.GetShardIterator(ctx, &kds.GetShardIteratorInput{ShardId: aws.String(shard), ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	if err != nil {
		t.Fatal(err)
	}
	iter := it.ShardIterator
	for range 4 {
		out, err := kin.GetRecords(ctx, &kds.GetRecordsInput{ShardIterator: iter})
		if err != nil {
			t.Fatal(err)
		}
		iter = out.NextShardIterator
	}
	// 10 MB, charged 3 MB before each of the last three reads: 1 MB left
	// (no time passed to grow it), the fourth read's 3 MB not charged yet.
	g.budget.mu.Lock()
	s := g.budget.shards[shard]
	g.budget.mu.Unlock()
	if s == nil {
		t.Fatalf("no budget for %s", shard)
	}
	if s.read != 3_000_000 || s.rem != 1_000_000 {
		t.Errorf("budget: read %d, rem %.0f; want read 3000000, rem 1000000", s.read, s.rem)
	}
}

// A full batch holds the shard's next read while the KCL's budget would
// refuse it, and a stop ends the wait.
func TestProcessorWaitsOutTheReadBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, func(o *Observer) { o.budget = newReadBudget() })
		h.p.o.cfg.IdleBetweenReads = 250 * time.Millisecond
		h.p.o.cfg.MaxRecords = 2
		b := h.p.o.budget
		shard := h.p.shardID
		b.started(shard)
		b.answered(shard, bytesRecords(6_000_000), time.Now())
		b.reading(shard, time.Now()) // 4 MB left
		b.answered(shard, bytesRecords(7_000_000), time.Now())
		cp := &fakeCheckpointer{}
		held := func(records ...types.Record) time.Duration {
			start, now := time.Now(), time.Now()
			h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: records, CacheEntryTime: &now})
			return time.Since(start)
		}
		if got := held(keyedRecord("1", "a", "hello"), keyedRecord("2", "b", "hello")); got != 0 {
			t.Errorf("full batch within the budget: held %s, want 0", got)
		}
		b.reading(shard, time.Now()) // 4 MB - 7 MB
		want := b.wait(shard, time.Now())
		if want < 1500*time.Millisecond {
			t.Fatalf("budget wait %s, want 1.5 s and more", want)
		}
		if got := held(keyedRecord("3", "a", "hello"), keyedRecord("4", "b", "hello")); got != want {
			t.Errorf("full batch over the budget: held %s, want %s", got, want)
		}
		b.reading(shard, time.Now()) // the 40 kB grown past the shortfall, less 7 MB
		b.answered(shard, bytesRecords(1), time.Now())
		want = b.wait(shard, time.Now())
		if got := held(); got != want || got <= 250*time.Millisecond {
			t.Errorf("empty batch over the budget: held %s, want the budget's %s, longer than the idle interval", got, want)
		}
		b.reading(shard, time.Now())
		h.stop()
		if got := held(keyedRecord("5", "a", "hello"), keyedRecord("6", "b", "hello")); got != 0 {
			t.Errorf("while stopping: held %s, want 0", got)
		}
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
		if got := b.wait(shard, time.Now()); got != 0 {
			t.Errorf("after Shutdown: budget wait %s, want none (forgotten)", got)
		}
	})
}
