package ingest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"

	"github.com/sauna-io/sauna/observer/backoff"
)

// Putter is the part of the Kinesis client the producer uses.
type Putter interface {
	PutRecords(ctx context.Context, in *kinesis.PutRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.PutRecordsOutput, error)
}

// State is where a record stands once its request is settled.
type State int

// Record states. Only StateAccepted means the record is on the stream;
// StateUnknown means a PutRecords call carrying it got no answer, so it may
// be on the stream or not.
const (
	StateAccepted State = iota + 1
	StateThrottled
	StateNotPut
	StateUnknown
)

func (s State) String() string {
	switch s {
	case StateAccepted:
		return "accepted"
	case StateThrottled:
		return "throttled"
	case StateNotPut:
		return "not_put"
	case StateUnknown:
		return "unknown"
	}
	return "pending"
}

// Result is the outcome of one record.
type Result struct {
	State          State
	ShardID        string
	SequenceNumber string
	// Message says why a record is not accepted.
	Message string
}

// ErrQueueFull refuses a request whose records do not fit in the queue.
var ErrQueueFull = errors.New("ingest queue full")

// ErrStopped refuses a request submitted after the producer stopped.
var ErrStopped = errors.New("ingest producer stopped")

// Batch is one request's records in flight.
type Batch struct {
	results []Result
	left    atomic.Int64
	done    chan struct{}
}

// Done is closed once every record of the batch is settled.
func (b *Batch) Done() <-chan struct{} { return b.done }

// Results are the records' outcomes in submission order; read them only
// after Done.
func (b *Batch) Results() []Result { return b.results }

type record struct {
	data     []byte
	key      string
	deadline time.Time
	batch    *Batch
	index    int
	// maybePut is set once a call carrying the record went unanswered.
	maybePut bool
	// lastState and lastMsg describe the last failed attempt, if any.
	lastState State
	lastMsg   string
}

// ProducerOptions tune a Producer.
type ProducerOptions struct {
	// Linger is how long the first record of a PutRecords call waits for
	// others to join it.
	Linger time.Duration
	// MaxQueued bounds the records queued or in flight.
	MaxQueued int
	// MaxConcurrent bounds the PutRecords calls in flight.
	MaxConcurrent int
	// Backoff bounds the first delay before failed records are sent again;
	// the bound doubles up to a second, and no delay is shorter than half
	// of Backoff (default 50 ms).
	Backoff time.Duration
}

// Producer puts records on one stream with PutRecords, gathering the
// records of concurrent requests into shared calls the way the KPL does,
// and resending only the records a call reports as failed until each
// record's deadline. A record is settled exactly once.
type Producer struct {
	client Putter
	stream string
	opts   ProducerOptions

	mu      sync.Mutex
	queued  int
	stopped bool
	queue   chan *record
	batches chan []*record
	done    chan struct{}
}

// NewProducer returns a producer; Run makes it send.
func NewProducer(client Putter, stream string, opts ProducerOptions) *Producer {
	if opts.MaxQueued < maxPutRecords {
		opts.MaxQueued = maxPutRecords
	}
	if opts.MaxConcurrent < 1 {
		opts.MaxConcurrent = 1
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 50 * time.Millisecond
	}
	return &Producer{
		client:  client,
		stream:  stream,
		opts:    opts,
		queue:   make(chan *record, opts.MaxQueued),
		batches: make(chan []*record),
		done:    make(chan struct{}),
	}
}

// Submit queues one request's records, each with its partition key, to be
// settled by deadline. It never blocks: a request that does not fit is
// refused whole with ErrQueueFull.
func (p *Producer) Submit(data [][]byte, keys []string, deadline time.Time) (*Batch, error) {
	n := len(data)
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return nil, ErrStopped
	}
	if p.queued+n > p.opts.MaxQueued {
		p.mu.Unlock()
		return nil, ErrQueueFull
	}
	p.queued += n
	b := &Batch{results: make([]Result, n), done: make(chan struct{})}
	b.left.Store(int64(n))
	// Sent under the lock, so that Run's final drain sees every record; the
	// reservation guarantees room in the channel.
	for i := range data {
		p.queue <- &record{data: data[i], key: keys[i], deadline: deadline, batch: b, index: i}
	}
	p.mu.Unlock()
	return b, nil
}

func (p *Producer) settle(r *record, res Result) {
	r.batch.results[r.index] = res
	p.mu.Lock()
	p.queued--
	p.mu.Unlock()
	if r.batch.left.Add(-1) == 0 {
		close(r.batch.done)
	}
}

// failed settles a record that will not be sent again.
func (p *Producer) failed(r *record, st State, msg string) {
	if r.maybePut {
		st, msg = StateUnknown, "a PutRecords call carrying it got no answer, so it may be on the stream: "+msg
	}
	p.settle(r, Result{State: st, Message: msg})
}

// Run gathers queued records into PutRecords calls until ctx ends, then
// settles what is still queued as not put and waits for the calls in
// flight. Calls are not cut short by ctx: each is bounded by its records'
// deadlines.
func (p *Producer) Run(ctx context.Context) {
	defer close(p.done)
	var wg sync.WaitGroup
	for range p.opts.MaxConcurrent {
		wg.Go(func() {
			for b := range p.batches {
				p.send(ctx, b)
			}
		})
	}
	p.collect(ctx)
	close(p.batches)
	wg.Wait()
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	for {
		select {
		case r := <-p.queue:
			p.failed(r, StateNotPut, "sauna is stopping")
		default:
			return
		}
	}
}

// Done is closed when Run has returned.
func (p *Producer) Done() <-chan struct{} { return p.done }

// collect builds calls of up to 500 records and 5 MiB. A call leaves once
// its first record has lingered long enough and a sender is free, so that
// records keep joining while every sender is busy.
func (p *Producer) collect(ctx context.Context) {
	var (
		batch   []*record
		size    int
		carry   *record
		timer   = time.NewTimer(time.Hour)
		lingerC <-chan time.Time
		ready   bool
	)
	timer.Stop()
	defer timer.Stop()
	add := func(r *record) bool {
		n := len(r.data) + len(r.key)
		if len(batch) > 0 && size+n > maxPutRequestBytes {
			return false
		}
		if len(batch) == 0 {
			ready = p.opts.Linger <= 0
			if !ready {
				timer.Reset(p.opts.Linger)
				lingerC = timer.C
			}
		}
		batch = append(batch, r)
		size += n
		return true
	}
	for {
		// Take what is already queued first, so that a call leaving when a
		// sender frees up carries every record waiting by then.
	drain:
		for len(batch) < maxPutRecords && carry == nil {
			select {
			case r := <-p.queue:
				if !add(r) {
					carry = r
				}
			default:
				break drain
			}
		}
		full := len(batch) >= maxPutRecords || carry != nil
		var in <-chan *record
		if !full {
			in = p.queue
		}
		var out chan<- []*record
		if len(batch) > 0 && (ready || full) {
			out = p.batches
		}
		select {
		case <-ctx.Done():
			for _, r := range batch {
				p.failed(r, StateNotPut, "sauna is stopping")
			}
			if carry != nil {
				p.failed(carry, StateNotPut, "sauna is stopping")
			}
			return
		case r := <-in:
			if !add(r) {
				carry = r
			}
		case <-lingerC:
			ready, lingerC = true, nil
		case out <- batch:
			batch, size, ready, lingerC = nil, 0, false, nil
			timer.Stop()
			if carry != nil {
				r := carry
				carry = nil
				add(r)
			}
		}
	}
}

// send puts batch, resending the records that fail, with backoff, until
// each is accepted or its deadline passes.
func (p *Producer) send(ctx context.Context, batch []*record) {
	pace := backoff.Policy{First: p.opts.Backoff, Floor: p.opts.Backoff / 2, Max: time.Second}
	for attempt := 1; ; attempt++ {
		now := time.Now()
		live := batch[:0]
		for _, r := range batch {
			if !now.Before(r.deadline) {
				if r.lastState == 0 {
					r.lastState, r.lastMsg = StateNotPut, "the put deadline passed before it could be sent"
				}
				p.failed(r, r.lastState, r.lastMsg)
				continue
			}
			live = append(live, r)
		}
		batch = live
		if len(batch) == 0 {
			return
		}
		batch = p.putOnce(batch)
		if len(batch) == 0 {
			return
		}
		if !backoff.Sleep(ctx, pace.Delay(attempt)) {
			for _, r := range batch {
				p.failed(r, r.lastState, r.lastMsg+"; sauna is stopping")
			}
			return
		}
	}
}

// putOnce makes one PutRecords call and returns the records to send again.
func (p *Producer) putOnce(batch []*record) []*record {
	entries := make([]types.PutRecordsRequestEntry, len(batch))
	last := batch[0].deadline
	for i, r := range batch {
		entries[i] = types.PutRecordsRequestEntry{Data: r.data, PartitionKey: aws.String(r.key)}
		if r.deadline.After(last) {
			last = r.deadline
		}
	}
	// The call outlives a stop request but not the records' deadline.
	cctx, cancel := context.WithDeadline(context.Background(), last)
	out, err := p.client.PutRecords(cctx, &kinesis.PutRecordsInput{StreamName: aws.String(p.stream), Records: entries})
	cancel()
	if err != nil {
		msg, definite, throttled := classify(err)
		st := StateNotPut
		if throttled {
			st = StateThrottled
		}
		for _, r := range batch {
			r.lastState, r.lastMsg = st, msg
			if !definite {
				r.maybePut = true
			}
		}
		if definite && !throttled {
			for _, r := range batch {
				p.failed(r, StateNotPut, msg)
			}
			return nil
		}
		return batch
	}
	if len(out.Records) != len(batch) {
		// Kinesis answers one entry per record; anything else is unreadable.
		for _, r := range batch {
			r.maybePut = true
			r.lastState, r.lastMsg = StateNotPut, "PutRecords answered a different number of records"
		}
		return batch
	}
	retry := batch[:0]
	for i, rr := range out.Records {
		r := batch[i]
		if rr.ErrorCode == nil {
			p.settle(r, Result{State: StateAccepted, ShardID: aws.ToString(rr.ShardId), SequenceNumber: aws.ToString(rr.SequenceNumber)})
			continue
		}
		code := aws.ToString(rr.ErrorCode)
		if code == "ProvisionedThroughputExceededException" {
			r.lastState, r.lastMsg = StateThrottled, "throttled: "+code
		} else {
			r.lastState, r.lastMsg = StateNotPut, "failed: "+code
		}
		retry = append(retry, r)
	}
	return retry
}

// classify reads a failed call: definite when Kinesis refused it (nothing
// was written), throttled when the refusal is about throughput.
func classify(err error) (msg string, definite, throttled bool) {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException", "KMSThrottlingException":
			return "throttled: " + ae.ErrorCode(), true, true
		}
		if ae.ErrorFault() == smithy.FaultClient {
			return "refused by Kinesis: " + ae.ErrorCode(), true, false
		}
		return "failed: " + ae.ErrorCode(), false, false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "PutRecords timed out at the put deadline", false, false
	}
	return "PutRecords failed: " + err.Error(), false, false
}
