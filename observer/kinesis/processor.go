package kinesis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"

	"github.com/sauna-io/sauna/observer/backoff"
	"github.com/sauna-io/sauna/observer/command"
	"github.com/sauna-io/sauna/observer/kinesis/leases"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/responders/fence"
)

// shardProcessor executes one shard's records concurrently while keeping
// per-partition-key order: a record starts only once the command of every
// earlier record with its key has its final effect (its verdict known, any
// dead letter written: it is released), and the outcomes of a key's records
// are recorded in the ledger in order (command.Turn). Up to MaxInFlight
// records run at once, each holding a slot from admission to release, which
// bounds the responder calls of the shard; a released record holds a token
// of recording instead until its outcome is recorded (the outcome batcher's
// write, a claim's Finish, a rejection), up to recordingPerSlot*MaxInFlight
// of them, so that a slow outcome write neither holds a slot nor the next
// command of a key. The checkpoint only ever moves to the highest sequence
// number below which every record has a final, recorded outcome. Once a
// record stops short (shutdown, a lost lease) nothing after it is
// checkpointed, and the later records of its key that ran meanwhile record
// nothing: the next owner reads them all again. A record that stops short
// while the lease is held and the observer runs (its claim was taken over,
// its outcome could not be written) ends the shard's consumer alone: its
// lease is released after the last checkpoint (abandon), for a new
// consumer, elsewhere or here after a growing backoff, to read the shard
// again from there.
type shardProcessor struct {
	o       *Observer
	shardID string
	log     *slog.Logger
	lost    <-chan struct{}
	lease   command.Lease
	// intake and hard are the observer's, also ended for this shard alone
	// when a handover's drain runs out of time.
	intake, hard         context.Context
	stopIntake, stopHard context.CancelFunc
	// hardOrLost is hard ended also once the lease is lost, for the runs'
	// own outcome writes (command.Runner.HardOrLost), on the fast path; it
	// ends with hard.
	hardOrLost context.Context
	// commands runs the shard's records, one command each.
	commands command.Runner
	// handoff is closed when a peer asks for the shard (nil: never).
	handoff <-chan struct{}
	// handedOver is set once the lease went to that peer, or was released
	// (abandon); only the KCL's loop touches it.
	handedOver bool
	// unfinished is closed once a record stopped without a final outcome
	// while the lease was held and the observer ran (stopShort): the KCL's
	// loop then releases the lease (abandon). unfinishedAt is that record's
	// sequence number and unfinishedWhy why its run stopped (nil: it did not
	// say), set before; guarded by mu.
	unfinished     chan struct{}
	unfinishedAt   string
	unfinishedWhy  error
	unfinishedOnce sync.Once
	// previousEnd is when the shard's previous lease ended (zero: it had
	// none; leases.Table.PreviousLeaseEnd): records that arrived before
	// then may have been started by that lease's owner, and take a claim
	// before they run.
	previousEnd time.Time
	// slots holds one token per admitted record not yet released; taking
	// one is admission's back-pressure.
	slots chan struct{}
	// recording holds one token per released record whose outcome is not
	// recorded yet, taken before its slot is freed: once it is full,
	// releases wait, and so admission does.
	recording chan struct{}
	wg        sync.WaitGroup

	mu sync.Mutex
	// pending are the admitted records not yet passed by the checkpoint, in
	// sequence order.
	pending []*entry
	// waiting holds, per partition key, the admitted, unfinished records of
	// that key in order: those released, then one running, then those
	// waiting for it.
	waiting map[string][]*entry
	// stopped is set once a record stopped without a final outcome.
	stopped bool
	// draining is set once intake ended for this shard (a stop or a
	// handoff): nothing more is admitted, but what was admitted, including
	// records queued behind their key, still runs, so that the final
	// checkpoint covers every record that ran.
	draining bool
	// candidate is the sequence number the checkpoint may move to.
	candidate string
	// written is the last checkpoint written, and when.
	written   string
	writtenAt time.Time
	// runq holds the started records until a runner takes them.
	runq runQueue
}

type entry struct {
	// p is the shard's processor, told of the entry's release.
	p *shardProcessor
	// cmd is the record prepared for its run (command.Prepared).
	cmd command.Prepared
	seq string
	key string
	// arrived is when Kinesis took the record in (zero: unknown).
	arrived time.Time
	// more is set when the next record of the batch has the same sequence
	// number: the rest of a KPL aggregate follows, admitted or not yet.
	more bool
	// released is set once its slot went back and the next record of its
	// key may start; done once its outcome is final and recorded.
	released, done bool
	// end is told when its run ended (finish), for the next record of its
	// key; prior is the end of the previous one, when that was unfinished
	// as this one started.
	end   command.Mark
	prior *command.Mark
	// why is what its run said of why it stopped short (Stopped); set and
	// read on the runner's goroutine.
	why error
}

// Release is e's run telling that its command's effect is final
// (command.Turn.Released).
func (e *entry) Release() { e.p.release(e) }

// Stopped is e's run telling why it stopped short (command.Turn.Stopped);
// the first cause is kept.
func (e *entry) Stopped(why error) {
	if e.why == nil {
		e.why = why
	}
}

// recordingPerSlot is how many released records per slot may wait for
// their outcome to be recorded: enough for the outcome writes of a
// shard's slots to take several times a command's time before they hold
// intake back.
const recordingPerSlot = 4

var _ kcl.IRecordProcessor = (*shardProcessor)(nil)

func newShardProcessor(o *Observer) *shardProcessor {
	return &shardProcessor{
		o:          o,
		slots:      make(chan struct{}, o.cfg.MaxInFlight),
		recording:  make(chan struct{}, recordingPerSlot*o.cfg.MaxInFlight),
		waiting:    map[string][]*entry{},
		unfinished: make(chan struct{}),
	}
}

func (p *shardProcessor) Initialize(in *kcl.InitializationInput) {
	p.shardID = in.ShardId
	p.log = p.o.log.With("shard", in.ShardId)
	p.lost = p.o.lost(in.ShardId)
	if p.o.handoff != nil {
		p.handoff = p.o.handoff(in.ShardId)
	}
	p.lease = command.Lease{Lost: p.lost, Fence: p.leaseFence}
	p.intake, p.stopIntake = context.WithCancel(p.o.intake)
	p.hard, p.stopHard = context.WithCancel(p.o.hard)
	if p.fastPath() {
		// Its cancel is left to hard's, which Shutdown calls.
		p.hardOrLost, _ = p.lease.Context(p.hard)
	}
	p.commands = p.o.commandRunner(in.ShardId, p.lease, p.intake, p.hard, p.hardOrLost, p.log)
	from := "initial position"
	if in.ExtendedSequenceNumber != nil && aws.ToString(in.ExtendedSequenceNumber.SequenceNumber) != "" {
		from = aws.ToString(in.ExtendedSequenceNumber.SequenceNumber)
		p.written = from
	}
	if p.o.previousLeaseEnd != nil {
		p.previousEnd = p.o.previousLeaseEnd(in.ShardId)
	}
	if !p.previousEnd.IsZero() {
		p.log.Info("shard acquired", "from", from, "previous_lease_end", p.previousEnd.UTC().Format(time.RFC3339Nano))
		return
	}
	p.log.Info("shard acquired", "from", from)
}

// ProcessRecords admits the batch and returns once every record of it is
// admitted, so the KCL fetches the next batch while these still run. Records
// are prepared (decoded, routed, digested) a chunk at a time, in parallel,
// and with idempotency on a chunk's commands are checked in the ledger with
// one request before any of them is admitted. It blocks while MaxInFlight
// records are not released (and releases wait while recordingPerSlot times
// as many wait for their outcome write), which bounds memory and is the
// back-pressure on the stream. Then it paces the shard's reads.
func (p *shardProcessor) ProcessRecords(in *kcl.ProcessRecordsInput) {
	if p.handedOver {
		return
	}
	recs := in.Records
	// The next chunk is prepared while this one is admitted: admission
	// mostly waits for slots, and runners finishing meanwhile would
	// otherwise wait for the next chunk's decoding.
	var next func() []entry
	if len(recs) > 0 {
		next = p.prepareAhead(recs, 0)
	}
	defer func() {
		if next != nil {
			next()
		}
	}()
intake:
	for from := 0; from < len(recs); from += chunkSize {
		chunk := next()
		next = nil
		if to := from + chunkSize; to < len(recs) {
			next = p.prepareAhead(recs, to)
		}
		if p.isStopped() || p.handoffAsked() {
			break
		}
		for i := range chunk {
			// Asked before each record: admit's select would pick at
			// random between a free slot and the request.
			if p.isStopped() || p.handoffAsked() {
				break intake
			}
			if !p.admit(&chunk[i]) {
				p.drain()
				break intake
			}
		}
	}
	if closed(p.unfinished) {
		p.abandon(in.Checkpointer)
		return
	}
	if p.handoffAsked() {
		p.handOver(in.Checkpointer)
		return
	}
	p.checkpoint(in.Checkpointer, false)
	p.pace(in)
}

// chunkSize is the most records prepared and checked in the ledger
// together: one Peek reads at most 100 keys.
const chunkSize = 100

// prepareInline is the most records prepared on the KCL's goroutine; larger
// chunks are prepared by up to GOMAXPROCS goroutines, the KCL's joining them
// once it needs the chunk.
const prepareInline = 16

// prepareAhead starts preparing the chunk of recs starting at from, and
// checking its commands in the ledger (peek), in the background unless it
// is small: the next chunk's lookup is then made while this one is
// admitted, rather than between them, when the shard's slots would run dry
// for a ledger round trip. The function returned waits for it, and must be
// called: its caller prepares the records no one took yet rather than wait
// idle for them.
func (p *shardProcessor) prepareAhead(recs []types.Record, from int) func() []entry {
	to := min(from+chunkSize, len(recs))
	c := &preparing{p: p, recs: recs, from: from, es: p.entries(recs, from, to), peeked: make(chan struct{})}
	n := to - from
	if n <= prepareInline {
		c.work()
		return func() []entry { return c.es }
	}
	for range min(runtime.GOMAXPROCS(0), n/prepareInline) {
		c.wg.Go(c.work)
	}
	return func() []entry {
		c.work()
		c.wg.Wait()
		<-c.peeked
		return c.es
	}
}

// preparing is a chunk being prepared. Each goroutine on it takes the next
// record no one took, so that they all finish within one record of each
// other: with fixed shares, one that the runners slowed down would keep the
// chunk, and so the runners, waiting while the others sat idle.
type preparing struct {
	p    *shardProcessor
	recs []types.Record
	from int
	es   []entry
	next atomic.Int64
	// prepared counts the records prepared; the goroutine preparing the
	// last one checks the chunk in the ledger and then closes peeked.
	prepared atomic.Int64
	peeked   chan struct{}
	wg       sync.WaitGroup
}

// work prepares records of the chunk until none is left to take.
func (c *preparing) work() {
	for {
		i := int(c.next.Add(1) - 1)
		if i >= len(c.es) {
			return
		}
		c.p.prepareOne(&c.es[i], c.recs[c.from+i].Data)
		if int(c.prepared.Add(1)) == len(c.es) {
			c.p.peek(c.es)
			close(c.peeked)
		}
	}
}

// entries makes entries of recs[from:to], their commands not yet prepared.
// The KCL hands over all user records of a KPL aggregate in one batch, one
// after the other, under the aggregate's sequence number: more marks those
// followed by another of their aggregate.
func (p *shardProcessor) entries(recs []types.Record, from, to int) []entry {
	es := make([]entry, to-from)
	for i := range es {
		r := &recs[from+i]
		es[i].p = p
		es[i].seq, es[i].key = aws.ToString(r.SequenceNumber), aws.ToString(r.PartitionKey)
		if r.ApproximateArrivalTimestamp != nil {
			es[i].arrived = *r.ApproximateArrivalTimestamp
		}
		es[i].more = from+i+1 < len(recs) && aws.ToString(recs[from+i+1].SequenceNumber) == es[i].seq
	}
	return es
}

// prepareOne prepares e's command. A KPL aggregate the KCL could not decode
// was defused into a record of its own (kpl.go): it is rejected, its dead
// letter carrying the original bytes.
func (p *shardProcessor) prepareOne(e *entry, data []byte) {
	rec := command.Record{Sequence: e.seq, PartitionKey: e.key, Data: data}
	if orig, why, ok := IsDefusedAggregate(data); ok {
		rec.Data = orig
		e.cmd = p.commands.Rejected(rec, &responders.RejectError{Reason: responders.ReasonCorruptAggregate, Err: errors.New(why)})
		return
	}
	e.cmd = p.commands.Prepare(rec)
}

// fastPath reports whether commands may run without a claim: the ledger
// is on, and the end of the shard's previous lease is known.
func (p *shardProcessor) fastPath() bool {
	o := p.o
	return o.ledger != nil && o.memory != nil && o.batcher != nil && o.previousLeaseEnd != nil
}

// arrivalSkew is how far Kinesis's clock, which stamps a record's arrival,
// and a worker's, which ends its lease, may disagree. Leases and claims
// already assume clocks that agree to well within a lease.
const arrivalSkew = 5 * time.Second

// mayBeStarted reports whether the previous owner of the shard may have
// started e without a claim: it read records only before its lease ended
// by its own clock, so not one that arrived later. A record whose arrival
// is unknown counts as started.
func (p *shardProcessor) mayBeStarted(e *entry) bool {
	if p.previousEnd.IsZero() {
		return false
	}
	return e.arrived.IsZero() || !e.arrived.After(p.previousEnd.Add(arrivalSkew))
}

// peek checks the chunk's commands in the ledger with one request. Records
// the previous owner of the shard may have started without a claim
// (mayBeStarted) are left out: they take one. A failed check leaves them
// all to take claims.
func (p *shardProcessor) peek(chunk []entry) {
	if !p.fastPath() {
		return
	}
	claims := make([]outcomes.Claim, 0, len(chunk))
	idx := make([]int, 0, len(chunk))
	for i := range chunk {
		e := &chunk[i]
		if p.mayBeStarted(e) {
			continue
		}
		if c, ok := e.cmd.Claim(p.shardID); ok {
			claims = append(claims, c)
			idx = append(idx, i)
		}
	}
	if len(claims) == 0 {
		return
	}
	ctx, cancel := p.lease.Context(p.intake)
	defer cancel()
	at := time.Now()
	res, err := p.o.ledger.Peek(ctx, claims)
	if err == nil && len(res) != len(claims) {
		err = fmt.Errorf("%d answers for %d commands", len(res), len(claims))
	}
	if err != nil {
		if ctx.Err() == nil {
			p.log.Warn("checking commands in the idempotency table failed; they take claims", "commands", len(claims), "err", err)
		}
		return
	}
	for j, i := range idx {
		chunk[i].cmd.Peeked(res[j], at)
	}
}

func (p *shardProcessor) handoffAsked() bool {
	select {
	case <-p.handoff:
		return true
	default:
		return false
	}
}

// handOver gives the shard to the peer that asked for it: no more intake,
// every admitted record finishes, the final checkpoint is written, and only
// then is the lease released to that peer, which resumes from this
// checkpoint. So no record runs on both workers and none runs twice. The
// drain is bounded as a stop's is (see awaitDrain).
//
// A failed handover is tried again at the next batch (the KCL calls
// ProcessRecords even for empty ones); the shard reads nothing meanwhile.
func (p *shardProcessor) handOver(cp kcl.IRecordProcessorCheckpointer) {
	p.drain()
	start := time.Now()
	p.awaitDrain()
	p.checkpoint(cp, true)
	p.mu.Lock()
	complete := len(p.pending) == 0 && (p.candidate == "" || p.candidate == p.written)
	p.mu.Unlock()
	if !complete {
		// A record stopped short or the checkpoint could not be written: the
		// peer resumes from the last checkpoint written, as after a failure.
		p.log.Warn("handing the shard over with records after its last checkpoint", "checkpoint", p.written)
	}
	err := p.o.handOver(p.shardID)
	switch {
	case err == nil:
		p.handedOver = true
		p.log.Info("shard handed over", "drain", time.Since(start).Round(time.Millisecond), "checkpoint", p.written)
	case errors.Is(err, leases.ErrLeaseLost):
		p.handedOver = true
		p.log.Warn("shard not handed over: the lease is gone", "err", err)
	default:
		p.log.Warn("handing the shard over failed; retrying at the next batch", "err", err)
	}
}

// abandon ends the shard's consumer after a record stopped without a final
// outcome while the lease was held: this consumer will never checkpoint
// past it, so only a new one can settle it. Like a handover it lets the
// admitted records finish (bounded by the drain timeout), writes the last
// checkpoint, which stays below that record, and then releases the lease
// (leases.Table.Abandon), so that another worker takes the shard at its
// next shard-sync pass, or this one once its backoff for the shard has
// passed (retake_in, which doubles with each release until a checkpoint
// reaches the record: a cause that persists does not become a loop of
// releases), and reads it again from that checkpoint. The WARN says why
// the record stopped, as its run told (entry.Stopped). The next owner
// takes claims for the records this worker may have started
// (PreviousLeaseEnd), so whether a command runs again is the claim's to
// decide, as after any failover, and as it was when a stop of the whole
// observer gave the shard up instead. The other shards go on untouched.
// Only a release that fails, with the lease still held, falls back on
// restarting the observer.
func (p *shardProcessor) abandon(cp kcl.IRecordProcessorCheckpointer) {
	p.drain()
	start := time.Now()
	p.awaitDrain()
	p.checkpoint(cp, true)
	p.mu.Lock()
	seq, why := p.unfinishedAt, p.unfinishedWhy
	p.mu.Unlock()
	p.handedOver = true
	// The observer's intake, not the shard's, which a drain that ran out
	// of time ended.
	if p.lease.Done(p.o.intake) {
		// Stopping, or the lease went meanwhile: the KCL's consumer ends
		// anyway, and the next owner reads from the same checkpoint.
		return
	}
	var err error
	var retakeIn time.Duration
	if p.o.abandon == nil {
		err = errors.New("the lease cannot be released on its own")
	} else {
		retakeIn, err = p.o.abandon(p.shardID, seq)
	}
	cause := stopCause(why)
	attrs := []any{"seq", seq, "checkpoint", p.written, "cause", cause}
	if why != nil {
		attrs = append(attrs, "cause_err", why)
	}
	switch {
	case err == nil:
		p.o.countHandoff(handoffReleased)
		p.log.Warn("a record stopped without an outcome; the shard's lease is released for it to be read again from the checkpoint",
			append(attrs, "drain", time.Since(start).Round(time.Millisecond), "retake_in", retakeIn)...)
	case errors.Is(err, leases.ErrLeaseLost):
		p.log.Warn("a record stopped without an outcome, and the shard's lease is gone; the next owner reads it again from the checkpoint",
			append(attrs, "err", err, "retake_in", retakeIn)...)
	default:
		p.log.Error("a record stopped without an outcome, and the shard's lease could not be released; restarting the observer",
			append(attrs, "err", err)...)
		p.o.fail(fmt.Errorf("shard %s stopped at sequence number %s without an outcome (%s), and its lease could not be released: %w", p.shardID, seq, cause, err))
	}
}

// awaitDrain waits for every admitted record to finish, for at most the
// drain timeout, as a stop does. Then it ends the shard's intake and work in
// flight: those records stop short, release their command claims, and stay
// after the last checkpoint for the next owner to read again.
func (p *shardProcessor) awaitDrain() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.wg.Wait()
	}()
	t := time.NewTimer(p.o.opts.DrainTimeout)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	p.log.Warn("in-flight commands did not finish in time for the handover; cancelling them", "drain_timeout", p.o.opts.DrainTimeout)
	p.stopIntake()
	p.stopHard()
	<-done
}

// pace holds the KCL's shard loop until one read interval after this batch's
// GetRecords started, so a shard is read at a steady rate and a command
// waits at most one interval. The KCL itself sleeps only after an empty read
// and then polls back to back after any record, which trips its own
// five-reads-per-second limiter into a stall of up to a second; that is where
// its latency tail comes from. The KCL's idle sleep is therefore set to
// almost nothing (see kclConfig) and this is the only pause. A full batch
// means the shard is behind: the next read goes as soon as the KCL's read
// budget allows it (readBudget), rather than after the whole seconds the KCL
// would sleep once it is short, and the KCL's limiter keeps that within
// Kinesis's five reads per second.
func (p *shardProcessor) pace(in *kcl.ProcessRecordsInput) {
	wait := p.o.budget.wait(p.shardID, time.Now())
	if in.CacheEntryTime != nil && len(in.Records) < p.o.cfg.MaxRecords {
		wait = max(wait, time.Until(in.CacheEntryTime.Add(p.o.cfg.IdleBetweenReads)))
	}
	if wait <= 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-p.intake.Done():
	case <-p.lost:
	case <-p.handoff:
	case <-p.unfinished:
	}
}

// admit waits for a free slot (and for the gate, while paused), then starts
// the record or queues it behind the earlier records of its key.
func (p *shardProcessor) admit(e *entry) bool {
	if g := p.o.opts.Gate; g != nil && g.Paused() {
		ctx, cancel := p.lease.Context(p.intake)
		err := g.Wait(ctx)
		cancel()
		if err != nil {
			return false
		}
	}
	// A stop is looked for first, then a free slot, each on its own: a
	// select of several channels locks them all, and the lost and stop
	// channels are every runner's; the select waits only when no slot is
	// free.
	if closed(p.intake.Done()) || closed(p.lost) || closed(p.handoff) || closed(p.unfinished) {
		return false
	}
	select {
	case p.slots <- struct{}{}:
	default:
		select {
		case p.slots <- struct{}{}:
		case <-p.intake.Done():
			return false
		case <-p.lost:
			return false
		case <-p.handoff:
			return false
		case <-p.unfinished:
			return false
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || p.draining {
		<-p.slots
		return false
	}
	p.pending = append(p.pending, e)
	q := append(p.waiting[e.key], e)
	p.waiting[e.key] = q
	if len(q) == 1 {
		p.start(e, nil)
	} else if prev := q[len(q)-2]; prev.released {
		p.start(e, prev)
	}
	p.o.addInFlight(1)
	return true
}

// start hands e to a runner at once (see runQueue), after prev (nil: no
// unfinished record of its key); p.mu is held.
func (p *shardProcessor) start(e, prev *entry) {
	if prev != nil {
		e.prior = &prev.end
	}
	p.wg.Add(1)
	q := &p.runq
	q.add(e)
	if q.runners-int(q.busy.Load())-len(q.idle) < q.waiting() {
		if n := len(q.idle); n > 0 {
			wake := q.idle[n-1]
			q.idle[n-1] = nil
			q.idle = q.idle[:n-1]
			wake <- struct{}{}
		} else {
			q.runners++
			go p.run()
			if q.watch == nil && !q.ended {
				q.watch = make(chan struct{})
				go p.watchEnd(q.watch)
			}
		}
	}
}

// release is called by e's run once its command's effect is final: it
// takes a token of recording (waiting while too many outcomes are not
// recorded yet), gives e's slot back and starts the next record of its key.
// Stopping first leaves e holding its slot until it finishes.
func (p *shardProcessor) release(e *entry) {
	// As in admit: the stop first, then a free token, the select only when
	// there is none.
	if closed(p.hard.Done()) || closed(p.lost) {
		return
	}
	select {
	case p.recording <- struct{}{}:
	default:
		select {
		case p.recording <- struct{}{}:
		case <-p.hard.Done():
			return
		case <-p.lost:
			return
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	e.released = true
	<-p.slots
	if p.stopped {
		return
	}
	q := p.waiting[e.key]
	for i := range q[:len(q)-1] {
		if q[i] == e {
			p.start(q[i+1], e)
			break
		}
	}
}

// finish records e's result, tells the next record of its key how e ended,
// starts that record unless e's release did, and moves the checkpoint
// candidate past the finished prefix; p.mu is held.
func (p *shardProcessor) finish(e *entry, final bool) {
	if e.released {
		<-p.recording
	} else {
		<-p.slots
	}
	e.end.End(final)
	p.o.addInFlight(-1)
	if !final {
		// e and everything after it stay unfinished: the next owner of the
		// shard re-reads them from the checkpoint. Unless the observer is
		// stopping or the shard moved to another worker, that next owner
		// must be a new consumer of the shard: this one would never
		// checkpoint it again. The KCL's loop releases the lease for one
		// (abandon).
		p.stopped = true
		p.endRunners()
		if !p.lease.Done(p.intake) {
			p.stopShort(e.seq, e.why)
		}
		return
	}
	e.done = true
	// The previous records of e's key finished first: e recorded its
	// outcome only after they ended with theirs (command.Turn).
	q := p.waiting[e.key][1:]
	if len(q) == 0 {
		delete(p.waiting, e.key)
	} else {
		p.waiting[e.key] = q
		if !e.released && !p.stopped {
			p.start(q[0], nil)
		}
	}
	n := 0
	for n < len(p.pending) && p.pending[n].done {
		n++
	}
	if n == 0 {
		return
	}
	// Records of one KPL aggregate share a sequence number: a checkpoint
	// inside an aggregate would skip its remaining records on restart, be
	// they admitted and unfinished or not admitted yet.
	last := p.pending[n-1].seq
	if p.pending[n-1].more {
		for n > 0 && p.pending[n-1].seq == last {
			n--
		}
		if n == 0 {
			return
		}
		last = p.pending[n-1].seq
	}
	p.candidate = last
	clear(p.pending[:n])
	p.pending = p.pending[n:]
}

// stopShort tells the KCL's loop, once, that the record at seq stopped
// without a final outcome while the lease was held, why (nil: unknown);
// p.mu is held.
func (p *shardProcessor) stopShort(seq string, why error) {
	p.unfinishedOnce.Do(func() {
		p.unfinishedAt, p.unfinishedWhy = seq, why
		close(p.unfinished)
	})
}

// stopCause names why a record stopped short (command.Turn.Stopped), for
// the log line of its shard's release: a stable word to search and alert
// on, the error itself going alongside.
func stopCause(why error) string {
	switch {
	case why == nil:
		return "unknown"
	case errors.Is(why, command.ErrClaimTakenOver):
		return "claim_taken_over"
	case errors.Is(why, command.ErrClaimExpired):
		return "claim_expired"
	case errors.Is(why, command.ErrDeadLetterNotWritten):
		return "dead_letter_not_written"
	case errors.Is(why, command.ErrOutcomeNotRecorded):
		return "outcome_not_recorded"
	case errors.Is(why, command.ErrEarlierUnfinished):
		return "earlier_record_unfinished"
	default:
		return "unknown"
	}
}

// handoffReleased is the handoff metric's kind for a lease released after
// a record stopped without an outcome (abandon).
const handoffReleased = "released"

// closed reports whether ch is closed (nil: never), without the lock a
// select of several channels takes on each.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (p *shardProcessor) isStopped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stopped || p.draining
}

func (p *shardProcessor) drain() {
	p.mu.Lock()
	p.draining = true
	p.endRunners()
	p.mu.Unlock()
}

func (p *shardProcessor) stop() {
	p.mu.Lock()
	p.stopped = true
	p.endRunners()
	p.mu.Unlock()
}

func (p *shardProcessor) Shutdown(in *kcl.ShutdownInput) {
	// The KCL's consumer of the shard ends with this call; another one
	// starts a budget of its own.
	defer p.o.budget.forget(p.shardID)
	// Whatever the reason, the records already admitted finish first (or
	// stop at the drain deadline); only then is the final checkpoint known.
	p.wg.Wait()
	// Ending hard also ends the shard's runners, parked by now (run).
	defer p.stopHard()
	defer p.stopIntake()
	switch in.ShutdownReason {
	case kcl.TERMINATE:
		p.mu.Lock()
		complete := !p.stopped && len(p.pending) == 0
		p.mu.Unlock()
		if !complete {
			p.checkpoint(in.Checkpointer, true)
			p.log.Warn("shard ended but not every record ran; leaving it open so it is read again")
			return
		}
		// SHARD_END lets the child shards start; without it they wait for ever.
		if p.write(in.Checkpointer, nil) {
			p.log.Info("shard finished")
		}
	default:
		p.checkpoint(in.Checkpointer, true)
		p.log.Info("shard released", "reason", aws.ToString(kcl.ShutdownReasonMessage(in.ShutdownReason)))
	}
}

// checkpoint writes the candidate if it moved, at most once per
// CheckpointInterval unless final: a redelivery after a crash costs a
// duplicate check per record, a checkpoint per record costs a DynamoDB write.
func (p *shardProcessor) checkpoint(cp kcl.IRecordProcessorCheckpointer, final bool) {
	p.mu.Lock()
	seq, due := p.candidate, final || time.Since(p.writtenAt) >= p.o.opts.CheckpointInterval
	p.mu.Unlock()
	if seq == "" || seq == p.written || !due || !p.o.held(p.shardID) {
		return
	}
	if p.write(cp, &seq) {
		p.written, p.writtenAt = seq, time.Now()
	}
}

// write stores seq (nil: SHARD_END), retrying until it succeeds, the lease
// is lost, or the observer must stop.
func (p *shardProcessor) write(cp kcl.IRecordProcessorCheckpointer, seq *string) bool {
	return p.persist(p.hard, "checkpoint", func() error { return cp.Checkpoint(seq) })
}

// persist makes a write to the shard's lease item (what names it in logs),
// retrying with backoff until it succeeds, ctx ends or the lease is lost. A
// write refused because the lease is gone, or as a checkpoint regression
// (retrying cannot help: the records stay uncheckpointed and are read again
// by the next owner), stops the shard.
func (p *shardProcessor) persist(ctx context.Context, what string, write func() error) bool {
	for attempt := 1; ; attempt++ {
		err := write()
		if err == nil {
			return true
		}
		if errors.Is(err, leases.ErrLeaseLost) {
			p.stop()
			p.log.Warn("lease lost; this worker stops processing the shard", "err", err)
			return false
		}
		if errors.Is(err, leases.ErrCheckpointRegression) {
			p.stop()
			p.log.Error("checkpoint refused as a regression; stopping the shard", "err", err)
			return false
		}
		p.log.Warn(what+" failed; retrying", "err", err, "attempt", attempt)
		if !p.lease.Sleep(ctx, backoff.Policy{First: firstBackoff, Max: 5 * time.Second}.Delay(attempt)) {
			return false
		}
	}
}

// runQueue passes started records to runner goroutines. A runner takes
// records until none is left, then parks on a channel of its own until a
// record is started for it. Runners end (endRunners) once the shard
// stopped or drains, or, told by watchEnd, once hard ended (Shutdown ends
// it once every record finished, a stop or an expired drain earlier) or
// the lease is lost or released: the KCL may leave a shard without a
// Shutdown, but never with its lease. A parked runner is woken, or a new
// one started, whenever a record would otherwise wait for a busy runner, so
// every started record runs at once, as with a goroutine per record, and
// there are never more runners than records that ran at once. Runners park
// rather than end because a fresh goroutine grows its stack through a run:
// ended whenever the queue ran dry, which it does several times a batch, a
// runner was started for about every other record, and growing stacks took
// about a tenth of the shard's CPU. The runner parked last is woken first:
// its stack is the likeliest not to have been shrunk by the collector since.
type runQueue struct {
	// ready[head:] wait for a runner; every field but busy is guarded by
	// shardProcessor.mu. Taken from the front by head, so that the array
	// is reused once the queue empties rather than a new one made as
	// records are started one by one.
	ready   []*entry
	head    int
	runners int
	// idle holds the wake channels of the parked runners, the runner
	// parked last at the end.
	idle []chan struct{}
	// ended is set once runners end rather than park (endRunners); watch,
	// made with the first runner, ends its watchEnd.
	ended bool
	watch chan struct{}
	// busy counts the runners holding a record. A runner stops counting
	// before it finishes its record, so that the record finish starts next
	// (the next one of its key, usually) goes to it, not to a new runner.
	busy atomic.Int32
}

// add queues e for a runner. A full array is compacted before it grows:
// one that never empties does not grow with what was taken from it.
func (q *runQueue) add(e *entry) {
	if q.head > 0 && len(q.ready) == cap(q.ready) {
		n := copy(q.ready, q.ready[q.head:])
		clear(q.ready[n:])
		q.ready, q.head = q.ready[:n], 0
	}
	q.ready = append(q.ready, e)
}

// waiting is the number of started records no runner took yet.
func (q *runQueue) waiting() int { return len(q.ready) - q.head }

// take returns the first record waiting; there is one.
func (q *runQueue) take() *entry {
	e := q.ready[q.head]
	q.ready[q.head] = nil
	q.head++
	if q.head == len(q.ready) {
		q.ready, q.head = q.ready[:0], 0
	}
	return e
}

func (p *shardProcessor) run() {
	q := &p.runq
	wake := make(chan struct{}, 1)
	p.mu.Lock()
	for {
		for q.waiting() > 0 {
			e := q.take()
			q.busy.Add(1)
			p.mu.Unlock()
			final := p.execute(e)
			q.busy.Add(-1)
			// One hold of p.mu finishes this record and takes the next.
			p.mu.Lock()
			p.finish(e, final)
			p.wg.Done()
		}
		if q.ended {
			break
		}
		q.idle = append(q.idle, wake)
		p.mu.Unlock()
		<-wake
		p.mu.Lock()
	}
	q.runners--
	p.mu.Unlock()
}

// endRunners ends the parked runners, and those that would park, once the
// shard stopped or drains or its consumer ended: it starts no record after,
// or the last few, each of which then starts a runner of its own; p.mu is
// held.
func (p *shardProcessor) endRunners() {
	q := &p.runq
	if q.ended {
		return
	}
	q.ended = true
	for i, wake := range q.idle {
		wake <- struct{}{}
		q.idle[i] = nil
	}
	q.idle = q.idle[:0]
	if q.watch != nil {
		close(q.watch)
	}
}

// watchEnd ends the runners once hard ends or the lease is lost or
// released, unless endRunners did first (stop closed). Runners park on
// their own channel alone: a select with these, shared by every runner and
// run of the shard, spent more on its locks than parking saved.
func (p *shardProcessor) watchEnd(stop <-chan struct{}) {
	select {
	case <-p.hard.Done():
	case <-p.lost:
	case <-stop:
		return
	}
	p.mu.Lock()
	p.endRunners()
	p.mu.Unlock()
}

// execute runs e's record to its final outcome; false when it had to stop
// first. What was prepared is let go: the entry stays until the checkpoint
// passes it.
func (p *shardProcessor) execute(e *entry) bool {
	final := p.commands.Execute(&e.cmd, command.Turn{Released: e, Prior: e.prior, Mark: &e.end, Stopped: e})
	e.cmd = command.Prepared{}
	return final
}

// leaseFence is the fence margin before the shard lease runs out by this
// worker's clock; zero when the lease is not held.
func (p *shardProcessor) leaseFence() time.Time {
	until := p.o.leaseUntil(p.shardID)
	if until.IsZero() {
		return until
	}
	return until.Add(-fence.Margin(p.o.cfg.LeaseDuration))
}

// firstBackoff is the longest wait before the first retry of a checkpoint
// write; it doubles with each further attempt.
const firstBackoff = 200 * time.Millisecond
