package ingest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// fakeKinesis answers PutRecords from a per-call script and records every
// call's partition keys.
type fakeKinesis struct {
	mu    sync.Mutex
	calls [][]string
	// answer decides, per call number and record, an error code ("" for
	// success); callErr, if set, fails the whole call.
	answer  func(call int, key string) string
	callErr func(call int) error
	// gate, if set, is waited on before each call answers.
	gate chan struct{}
	// arrived, if set, gets a value as each call reaches the gate.
	arrived chan struct{}
	seq     int
}

func (f *fakeKinesis) PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, _ ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error) {
	if f.arrived != nil {
		f.arrived <- struct{}{}
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	call := len(f.calls)
	keys := make([]string, len(in.Records))
	for i, r := range in.Records {
		keys[i] = aws.ToString(r.PartitionKey)
	}
	f.calls = append(f.calls, keys)
	if f.callErr != nil {
		if err := f.callErr(call); err != nil {
			return nil, err
		}
	}
	out := &kinesis.PutRecordsOutput{}
	for _, k := range keys {
		code := ""
		if f.answer != nil {
			code = f.answer(call, k)
		}
		if code != "" {
			out.Records = append(out.Records, types.PutRecordsResultEntry{ErrorCode: aws.String(code), ErrorMessage: aws.String("no")})
			out.FailedRecordCount = aws.Int32(aws.ToInt32(out.FailedRecordCount) + 1)
			continue
		}
		f.seq++
		out.Records = append(out.Records, types.PutRecordsResultEntry{ShardId: aws.String("shardId-000000000000"), SequenceNumber: aws.String(fmt.Sprint(f.seq))})
	}
	return out, nil
}

func (f *fakeKinesis) callKeys() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]string(nil), f.calls...)
}

func startProducer(t *testing.T, f *fakeKinesis, opts ProducerOptions) *Producer {
	t.Helper()
	opts.Backoff = time.Millisecond
	p := NewProducer(f, "s", opts)
	ctx, cancel := context.WithCancel(context.Background())
	go p.Run(ctx)
	t.Cleanup(func() { cancel(); <-p.Done() })
	return p
}

func submit(t *testing.T, p *Producer, deadline time.Time, keys ...string) *Batch {
	t.Helper()
	data := make([][]byte, len(keys))
	for i := range keys {
		data[i] = []byte(`{}`)
	}
	b, err := p.Submit(data, keys, deadline)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wait(t *testing.T, b *Batch) []Result {
	t.Helper()
	select {
	case <-b.Done():
		return b.Results()
	case <-time.After(30 * time.Second):
		t.Fatal("batch not settled")
		return nil
	}
}

// Records submitted while every sender is busy share the next call.
// Under synctest, Wait lets the collector take every queued record before
// the first call answers: otherwise a collector descheduled with the last
// record still queued could find the sender free and send without it.
func TestProducerBatchesConcurrentRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeKinesis{gate: make(chan struct{}), arrived: make(chan struct{}, 10)}
		p := startProducer(t, f, ProducerOptions{MaxConcurrent: 1, MaxQueued: 1000})
		far := time.Now().Add(time.Minute)
		first := submit(t, p, far, "a")
		<-f.arrived
		// The first call is held at the gate; these queue behind it.
		var later []*Batch
		for i := range 20 {
			later = append(later, submit(t, p, far, fmt.Sprint("k", i)))
		}
		synctest.Wait()
		f.gate <- struct{}{} // the first call answers
		if r := wait(t, first); r[0].State != StateAccepted {
			t.Fatalf("first %+v", r)
		}
		close(f.gate)
		for _, b := range later {
			if r := wait(t, b); r[0].State != StateAccepted || r[0].SequenceNumber == "" {
				t.Fatalf("result %+v", r)
			}
		}
		calls := f.callKeys()
		if len(calls) != 2 || len(calls[1]) != 20 {
			t.Errorf("calls %v; want the 20 queued records in one second call", calls)
		}
	})
}

// Only the records a call reports as failed are sent again.
// The clock is synctest's, so the linger cannot end between the request's
// records being queued, which would split them over two calls.
func TestProducerResendsOnlyFailedRecords(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeKinesis{answer: func(call int, key string) string {
			if call == 0 && key == "b" {
				return "ProvisionedThroughputExceededException"
			}
			return ""
		}}
		p := startProducer(t, f, ProducerOptions{Linger: 5 * time.Millisecond})
		res := wait(t, submit(t, p, time.Now().Add(time.Minute), "a", "b", "c"))
		for i, r := range res {
			if r.State != StateAccepted {
				t.Errorf("record %d: %+v", i, r)
			}
		}
		calls := f.callKeys()
		if len(calls) != 2 || fmt.Sprint(calls[1]) != "[b]" {
			t.Errorf("calls %v; want [a b c] then [b]", calls)
		}
	})
}

// Throttled past the deadline: the record is settled as throttled and not
// sent after that.
// The clock is synctest's, so the wait after settling outlasts every
// backoff (at most a second) without taking real time.
func TestProducerThrottledUntilDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeKinesis{answer: func(int, string) string { return "ProvisionedThroughputExceededException" }}
		p := startProducer(t, f, ProducerOptions{})
		res := wait(t, submit(t, p, time.Now().Add(200*time.Millisecond), "a"))
		if res[0].State != StateThrottled {
			t.Fatalf("result %+v", res[0])
		}
		n := len(f.callKeys())
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if m := len(f.callKeys()); m != n {
			t.Errorf("%d more calls after the record was settled", m-n)
		}
	})
}

// A call that gets no answer makes the outcome unknown, not "not put".
// The clock is synctest's: on the real one a stall past the deadline before
// the first call leaves the record never sent, which is "not put".
func TestProducerUnansweredCallIsUnknown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeKinesis{callErr: func(call int) error { return fmt.Errorf("connection reset") }}
		p := startProducer(t, f, ProducerOptions{})
		res := wait(t, submit(t, p, time.Now().Add(100*time.Millisecond), "a"))
		if res[0].State != StateUnknown {
			t.Fatalf("result %+v", res[0])
		}
		if len(f.callKeys()) == 0 {
			t.Fatal("no PutRecords call before the deadline")
		}
	})
}

func TestProducerQueueFull(t *testing.T) {
	f := &fakeKinesis{gate: make(chan struct{})}
	p := startProducer(t, f, ProducerOptions{MaxQueued: 500, MaxConcurrent: 1})
	far := time.Now().Add(time.Minute)
	keys := make([]string, 500)
	for i := range keys {
		keys[i] = fmt.Sprint(i)
	}
	b := submit(t, p, far, keys...)
	if _, err := p.Submit([][]byte{[]byte(`{}`)}, []string{"x"}, far); err != ErrQueueFull {
		t.Fatalf("submit over the queue limit: %v", err)
	}
	close(f.gate)
	wait(t, b)
	// Settled records free their room.
	wait(t, submit(t, p, far, "y"))
}
