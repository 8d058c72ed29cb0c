package command

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sauna-io/sauna/observer/backoff"
	"github.com/sauna-io/sauna/observer/outcomes"
)

// Batching of the outcomes of runs made without a claim.
const (
	// BatchSize is the most outcomes one write carries (DynamoDB's
	// BatchWriteItem limit).
	BatchSize = 25
	// batchLinger is the longest an outcome waits for others to share its
	// write.
	batchLinger = 20 * time.Millisecond
	// maxWrites is the most writes in flight at once.
	maxWrites = 16
)

// ErrBatcherStopped is the error of an outcome that could not be written
// before its Batcher stopped.
var ErrBatcherStopped = errors.New("outcome batcher stopped")

// DoneWriter writes the outcomes of commands run without a claim
// (outcomes.Table): RecordDone in bulk and unconditionally, durably,
// retrying until ctx ends; RecordDoneIfAbsent one, only where no item holds
// its id, answering an error matching outcomes.ErrItemExists where one does.
type DoneWriter interface {
	RecordDone(ctx context.Context, done []outcomes.Done) error
	RecordDoneIfAbsent(ctx context.Context, d outcomes.Done) error
}

// Batcher writes the outcomes of an observer's runs made without a claim,
// many to a request. A run waits until its outcome is durably written
// before it counts as settled, so the checkpoint never passes an outcome
// that is not recorded. A write goes out when BatchSize outcomes are
// queued; or at once when no such run is between its first attempt and its
// outcome and no write is out, since then nobody will join it soon (a lone
// command is recorded without delay; while a write is out, the runs it
// settles free slots for more); or batchLinger after the oldest queued
// outcome. Up to maxWrites are in flight. The queue holds only outcomes
// whose runs wait for them, so it is bounded by the records the observer
// has in flight.
//
// An outcome may be queued after another (a partition key's previous one,
// Turn): it joins that outcome's batch while that is still the current
// one, and is otherwise parked on it until its write has landed; then the
// outcomes parked on it, as many of the key as became ready meanwhile,
// join the current batch together (or become it, or go alone when they do
// not fit), so that a key's waiting outcomes share a write instead of
// taking a round trip each. If that write failed, the parked outcomes fail
// with it, unwritten. A write carrying several outcomes of a key is not
// atomic: DynamoDB may apply a later one and return an earlier one
// unprocessed (outcomes.Table.RecordDone then writes it again at once),
// and a crash before that leaves the later one recorded alone.
//
// One goroutine, started by Start and ended by Stop, owns the writes of
// queued outcomes. An outcome that would go at once and alone is written
// by its own run instead (add, writeAlone), which waits for it anyway.
//
// The bulk writes are puts that nothing conditions in the table, so each
// is fenced on the leases its outcomes were run under (fenced): an outcome
// goes in one only while its lease is held, before its fence, by this
// worker's clock, and a write in flight ends at the earliest fence of its
// outcomes. A worker that was frozen with outcomes queued, or whose writes
// kept failing until its lease ran out, would otherwise land them after
// the shard's next owner claimed the command again, over its claim (which
// then fails) or its outcome. An outcome whose lease is past its fence
// waits for a renewal that comes late. One whose lease is known lost is
// still written, but alone and only where no item holds its id
// (RecordDoneIfAbsent, writeLost), under the Batcher's own stop rather
// than the lease's fence: its command ran (Peek found no item for it), so
// an item there now is the next owner's claim or outcome, which stays,
// and where there is none the outcome spares the next owner running the
// command again; but not where an earlier outcome of its key under that
// lease found an item, as the next owner runs that command again and
// would skip this later one, found done. Its run stops waiting once the lease is lost and ends
// unrecorded, as the shard is the next owner's to checkpoint; a run that
// was writing its outcome itself hands it to the loop's goroutine
// (writeAlone).
//
// The Batcher also takes over the Finish of a claimed run that had to end
// before its outcome landed (finishLate): its command ran, and Finish,
// fenced on the claim, is tried until it lands, the claim is found taken
// over or expires, or Stop's deadline. Likewise the outcome of a run
// without a claim that had to end before it knew it recorded (doneLate):
// it learns how the write holding it went (missed), or, when it was never
// queued, writes it where no item holds its id; either way after the
// previous outcome of its key is recorded, for the next one to follow.
type Batcher struct {
	w   DoneWriter
	log *slog.Logger

	mu sync.Mutex
	// cur collects outcomes until it is sealed; sealed wait for a write.
	cur    *batch
	sealed []*batch
	// active counts the runs between their first attempt and their
	// outcome. It is not under mu: every run counts itself in (begin), and
	// a lock taken for that alone had the runs of all shards queue on mu.
	// A count read under mu is as current as one that mu guarded, since a
	// run could count itself in just after mu was let go.
	active atomic.Int64
	// inFlight counts the loop's writes out; alone the runs writing their
	// outcome themselves (see add).
	inFlight, alone int
	// finishing counts the late outcomes of runs that ended (late).
	finishing int
	stopping  bool
	stopped   bool

	wake chan struct{}
	// fences holds the contexts of writes that end at a lease's fence
	// (fencedContext).
	fenceMu sync.Mutex
	fences  []fenceContext
	// missedKeys holds the keys of which writeLost left an outcome
	// unwritten, oldest first in missedOrder (missKey).
	lostMu      sync.Mutex
	missedKeys  map[lostKey]struct{}
	missedOrder []lostKey
	// ctx ends the writes in flight; cancel is called by Stop at its
	// deadline.
	ctx      context.Context
	cancel   context.CancelFunc
	finished chan struct{}
}

// batch is the outcomes of one write, and its result: err is set before
// done is closed.
type batch struct {
	items []outcomes.Done
	// leases holds the lease each of items was run under, and keys its
	// record's partition key, in step with it; keys is nil for an outcome
	// its run wrote alone, which no outcome of its key is queued behind.
	leases []Lease
	keys   []string
	first  time.Time
	done   chan struct{}
	err    error
	// missed, set with err, holds the outcomes whose lease was lost and
	// that the loop did not record where no item held their ids
	// (writeLost): an item was there, or the Batcher stopped first.
	missed []outcomes.Identity
	// Under the Batcher's mu: landed is set once the write ended (err
	// tells how); parked while the batch waits for the write of the batch
	// it hangs from (as that one's next) before it is queued; next holds
	// the outcomes parked on this batch. moved is set, before done is
	// closed, when the batch's outcomes joined the current batch instead.
	landed, parked bool
	next, moved    *batch
}

// NewBatcher returns a Batcher writing to w; call Start before use.
func NewBatcher(w DoneWriter, log *slog.Logger) *Batcher {
	ctx, cancel := context.WithCancel(context.Background())
	return &Batcher{w: w, log: log, wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel, finished: make(chan struct{})}
}

// Start starts the goroutine that writes the batches.
func (b *Batcher) Start() { go b.loop() }

// Stop writes what is queued and waits for the writes in flight, late
// outcomes included, until ctx ends; then it abandons them (their runs see ErrBatcherStopped) and
// returns once the goroutine has ended. Call it once every run has ended.
func (b *Batcher) Stop(ctx context.Context) {
	b.mu.Lock()
	b.stopping = true
	b.mu.Unlock()
	b.poke()
	select {
	case <-b.finished:
	case <-ctx.Done():
		b.log.Warn("outcome writes did not finish in time; abandoning them (those commands stay unfinished and are read again)")
		b.cancel()
		<-b.finished
	}
	b.cancel()
}

// begin counts a run that is about to make its first attempt without a
// claim: a batch lingers for it, as its outcome comes soon.
func (b *Batcher) begin() { b.active.Add(1) }

// abandon uncounts a run counted by begin that will not queue an outcome
// (it took a claim, or stopped).
func (b *Batcher) abandon() {
	if b.active.Add(-1) != 0 {
		return
	}
	b.mu.Lock()
	idle := b.cur != nil
	b.mu.Unlock()
	if idle {
		b.poke()
	}
}

// add queues d; counted says the run was counted by begin. The batch
// returned is done once d is written, or could not be. When the run may
// write d itself (mayAlone) and d would go at once in a write of its own
// (nothing is queued or being written, and no run is about to join it),
// alone is set instead: the run writes it (writeAlone) rather than hand it
// to the loop's goroutine and wait, which spares a lone outcome the loop's
// wake-up, a goroutine and the run's wait. after, when not nil, is the
// batch of an outcome that must be written before d: d joins it while it
// is the current batch or parked, is parked on it while it waits for its
// write, and fails with it if that write failed.
func (b *Batcher) add(d outcomes.Done, key string, l Lease, counted, mayAlone bool, after *batch) (bt *batch, alone bool) {
	b.mu.Lock()
	active := b.active.Load()
	if counted {
		active = b.active.Add(-1)
	}
	if b.stopped {
		b.mu.Unlock()
		return failedBatch, false
	}
	for after != nil && after.moved != nil {
		after = after.moved
	}
	if after != nil && after != b.cur && (!after.landed || after.err != nil) {
		if after.landed {
			b.mu.Unlock()
			return after, false
		}
		// Parked: join the first batch hanging from after that has room.
		// Each of them is parked until the one before it landed, so d is
		// written in the same write as after or a later one.
		p := after
		for !p.parked || len(p.items) == BatchSize {
			if p.next == nil {
				p.next = &batch{parked: true, done: make(chan struct{})}
			}
			p = p.next
		}
		p.items = append(p.items, d)
		p.leases = append(p.leases, l)
		p.keys = append(p.keys, key)
		b.mu.Unlock()
		return p, false
	}
	if mayAlone && b.cur == nil && active <= 0 && b.inFlight+b.alone+len(b.sealed) == 0 {
		b.alone++
		b.mu.Unlock()
		return nil, true
	}
	if b.cur == nil {
		// Room for d and the runs that may join it (those between their
		// first attempt and their outcome), not BatchSize: a batch often
		// goes with one or two outcomes, and BatchSize of them is 4.6 kB.
		// One that gets more grows.
		n := min(BatchSize, int(active)+1)
		b.cur = &batch{items: make([]outcomes.Done, 0, n), leases: make([]Lease, 0, n), keys: make([]string, 0, n), first: time.Now(), done: make(chan struct{})}
	}
	cur := b.cur
	cur.items = append(cur.items, d)
	cur.leases = append(cur.leases, l)
	cur.keys = append(cur.keys, key)
	poke := false
	if len(cur.items) == BatchSize {
		b.sealed = append(b.sealed, cur)
		b.cur = nil
		poke = true
	} else {
		poke = active == 0 || len(cur.items) == 1
	}
	b.mu.Unlock()
	if poke {
		b.poke()
	}
	return cur, false
}

// writeAlone writes d, run under lease l, which add let its run write
// itself, retrying until it succeeds or ctx ends. ctx ends at the run's
// hard stop or once its lease is lost (Runner.HardOrLost), when the run
// would stop waiting for a batch. When it ended with the lease lost, d
// goes to the loop's goroutine, in the batch returned, which writes it
// where no item holds its id (writeLost) under the Batcher's context, as
// it would have in a batch; the run ends unrecorded all the same.
// Outcomes queued meanwhile waited for this write, as for any write out.
func (b *Batcher) writeAlone(ctx context.Context, d outcomes.Done, l Lease) (*batch, error) {
	lost, err := b.write(ctx, []outcomes.Done{d}, []Lease{l})
	var bt *batch
	b.mu.Lock()
	if len(lost) > 0 {
		// Queued before alone is let go, so that the loop has not ended:
		// it ends only once nothing is queued and no run writes alone.
		bt = &batch{items: lost, leases: []Lease{l}, first: time.Now(), done: make(chan struct{})}
		b.sealed = append(b.sealed, bt)
		err = errLeaseLost
	}
	b.alone--
	poke := b.cur != nil || b.stopping || len(b.sealed) > 0
	b.mu.Unlock()
	if poke {
		b.poke()
	}
	return bt, err
}

// failedBatch is what add returns once the Batcher has stopped.
var failedBatch = func() *batch {
	b := &batch{done: make(chan struct{}), err: ErrBatcherStopped, landed: true}
	close(b.done)
	return b
}()

// curFirst is when the oldest outcome of the current batch was queued;
// b.mu is held.
func (b *Batcher) curFirst() time.Time {
	if b.cur == nil {
		return time.Time{}
	}
	return b.cur.first
}

func (b *Batcher) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *Batcher) loop() {
	defer close(b.finished)
	// The writes go to writer goroutines that stay for the next write
	// rather than end: a fresh goroutine grows its stack through the SDK's
	// call of every write, which cost about a sixth of a write's CPU. There
	// are never more writers than writes that were out at once (at most
	// maxWrites, so a write is never left waiting in jobs for a writer);
	// they end once jobs is closed, when the loop ends.
	var wg sync.WaitGroup
	jobs := make(chan *batch, maxWrites)
	writers := 0
	defer func() {
		close(jobs)
		wg.Wait()
	}()
	written := make(chan struct{}, maxWrites)
	// returned counts the writes back since b.inFlight was last updated.
	returned := 0
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		b.mu.Lock()
		b.inFlight -= returned
		returned = 0
		inFlight := b.inFlight
		// The current batch goes when no run is about to join it and no
		// write is out (one that is will free slots, and so bring more
		// outcomes, when it comes back), or once it lingered long enough;
		// while every write slot is taken it keeps growing instead.
		idle := b.active.Load() <= 0 && inFlight+b.alone+len(b.sealed) == 0
		lingered := inFlight+len(b.sealed) < maxWrites && time.Since(b.curFirst()) >= batchLinger
		if b.cur != nil && (idle || lingered || b.stopping) {
			cur := b.cur
			b.sealed = append(b.sealed, cur)
			b.cur = nil
		}
		var start []*batch
		for len(b.sealed) > 0 && inFlight+len(start) < maxWrites {
			start = append(start, b.sealed[0])
			b.sealed[0] = nil
			b.sealed = b.sealed[1:]
		}
		linger := time.Duration(-1)
		if b.cur != nil && inFlight+len(start) < maxWrites {
			linger = batchLinger - time.Since(b.cur.first)
		}
		done := b.stopping && b.cur == nil && len(b.sealed) == 0 && inFlight+len(start)+b.alone+b.finishing == 0
		if done {
			b.stopped = true
		}
		b.inFlight += len(start)
		b.mu.Unlock()
		if done {
			return
		}
		for ; writers < inFlight+len(start); writers++ {
			wg.Go(func() {
				for bt := range jobs {
					lost, err := b.write(b.ctx, bt.items, bt.leases)
					var missed []outcomes.Identity
					if len(lost) > 0 {
						// Before the batch lands: the outcomes parked on
						// it, of the same keys and so under the same
						// leases, are written after these.
						items, leases, keys := bt.lostInOrder(lost)
						missed = b.writeLost(b.ctx, items, leases, keys)
					}
					b.landed(bt, err, missed)
					written <- struct{}{}
				}
			})
		}
		for _, bt := range start {
			jobs <- bt
		}
		var tick <-chan time.Time
		if linger >= 0 {
			timer.Reset(max(linger, 0))
			tick = timer.C
		}
		select {
		case <-b.wake:
		case <-tick:
		case <-written:
			returned++
		}
	}
}

// landed ends bt's write with err, missed being its outcomes left
// unrecorded by writeLost: the outcomes parked on it are queued to go at
// once, or fail with it.
func (b *Batcher) landed(bt *batch, err error, missed []outcomes.Identity) {
	b.mu.Lock()
	bt.err, bt.missed, bt.landed = err, missed, true
	next := bt.next
	bt.next = nil
	if next != nil && err == nil {
		b.unpark(next)
	}
	for next != nil && err != nil {
		// next fails unwritten, and with it what hangs from it.
		failed := next
		next, failed.next = failed.next, nil
		failed.parked = false
		failed.err, failed.landed = err, true
		close(failed.done)
	}
	b.mu.Unlock()
	close(bt.done)
}

// unpark queues n, whose outcomes waited for the write that just landed:
// it becomes the current batch, or joins it when both fit in one write
// (unless both hold parked outcomes of their own), or else goes alone;
// b.mu is held.
func (b *Batcher) unpark(n *batch) {
	n.parked = false
	cur := b.cur
	switch {
	case cur == nil:
		n.first = time.Now()
		b.cur = n
	case len(cur.items)+len(n.items) <= BatchSize && (n.next == nil || cur.next == nil):
		cur.items = append(cur.items, n.items...)
		cur.leases = append(cur.leases, n.leases...)
		cur.keys = append(cur.keys, n.keys...)
		if n.next != nil {
			cur.next = n.next
		}
		n.items, n.leases, n.keys, n.next, n.moved = nil, nil, nil, nil, cur
		close(n.done)
		if len(cur.items) == BatchSize {
			b.sealed = append(b.sealed, cur)
			b.cur = nil
		}
	default:
		b.sealed = append(b.sealed, n)
	}
}

// write writes items, run under leases, retrying with backoff until it
// succeeds or ctx ends (the Batcher's, ended once it is stopped; or that
// of a run writing its outcome alone): the items are puts of final
// outcomes, so a write repeated after a lost answer changes nothing, and
// their runs wait for them (or give up at their own stop). Each try puts
// in bulk only the items whose leases are held, and ends at the earliest
// of their fences (fenced). The items whose leases are lost, before or
// during the write (a write that ctx ended as they were lost included),
// are returned for writeLost, not written: err says how the others went,
// nil when there were none.
func (b *Batcher) write(ctx context.Context, items []outcomes.Done, leases []Lease) (lost []outcomes.Done, err error) {
	for attempt := 1; ; attempt++ {
		live, liveLeases, gone, until, err := fenced(ctx, items, leases)
		if err != nil {
			if allLost(leases) {
				return append(lost, items...), nil
			}
			b.log.Error("recording command outcomes stopped; those commands stay unfinished and are read again", "commands", len(items), "err", err)
			return lost, err
		}
		if len(gone) > 0 {
			b.log.Info("the shard lease of command outcomes is lost; recording them only where no item holds their ids",
				"commands", len(gone))
			lost = append(lost, gone...)
			items, leases = live, liveLeases
			if len(items) == 0 {
				return lost, nil
			}
		}
		wctx := ctx
		if !until.IsZero() {
			wctx = b.fencedContext(ctx, until)
		}
		err = b.w.RecordDone(wctx, items)
		fenceHit := wctx.Err() != nil
		if err == nil {
			return lost, nil
		}
		if ctx.Err() != nil {
			if allLost(leases) {
				return append(lost, items...), nil
			}
			b.log.Error("recording command outcomes failed; those commands stay unfinished and are read again", "commands", len(items), "err", err)
			return lost, err
		}
		if fenceHit {
			// A lease fence passed during the write: look at the leases
			// again at once.
			b.log.Warn("recording command outcomes reached a shard lease's fence; retrying under the leases held", "commands", len(items), "attempt", attempt, "err", err)
			continue
		}
		b.log.Warn("recording command outcomes failed; retrying", "commands", len(items), "attempt", attempt, "err", err)
		if !backoff.Sleep(ctx, backoff.Policy{First: firstBackoff, Max: 5 * time.Second}.Delay(attempt)) {
			if allLost(leases) {
				return append(lost, items...), nil
			}
			return lost, err
		}
	}
}

// allLost reports whether every one of leases is known lost (none: false).
func allLost(leases []Lease) bool {
	for _, l := range leases {
		if !isClosed(l.Lost) {
			return false
		}
	}
	return len(leases) > 0
}

// writeLost writes items, whose leases are lost, one by one and in order,
// each only where no item holds its id (RecordDoneIfAbsent), retrying
// with backoff until it is written or found present, or ctx ends. No
// fence ends these writes: the condition keeps them off whatever the
// shard's next owner wrote. An item found present is that owner's claim
// or outcome (or this worker's own, from a bulk write cut off at the fence
// after it landed): the answer expected, not a failure. It returns the
// identities of the items it did not write, found present or left at
// ctx's end, which do not count as recorded (recordLate).
//
// leases and keys, when set, are items' leases and partition keys, in
// step with them. An item of a key of which an earlier outcome under the
// same lease was not written, in this call or an earlier one
// (missedKeys), is not written either: the next owner runs that earlier
// command again, and would find this later one done and skip it, leaving
// the key's last effect an earlier command's.
func (b *Batcher) writeLost(ctx context.Context, items []outcomes.Done, leases []Lease, keys []string) (missed []outcomes.Identity) {
	for i, d := range items {
		k := lostKeyOf(d, i, leases, keys)
		if b.keyMissed(k) {
			b.log.Info("not recording the outcome of a command (its shard lease lost, or its run stopped): an earlier command of its partition key has no recorded outcome and runs again first",
				"shard", d.Claim.Shard, "seq", d.Claim.Sequence, "command_id", d.Claim.CommandID)
			missed = append(missed, d.Claim.Identity())
			continue
		}
		written, err := b.writeIfAbsent(ctx, d)
		if err != nil {
			b.log.Error("recording the outcomes of commands where no item holds their ids stopped; the shard's next owner reads them again",
				"commands", len(items)-i, "err", err)
			for j := i; j < len(items); j++ {
				b.missKey(lostKeyOf(items[j], j, leases, keys))
			}
			return unwritten(missed, items[i:])
		}
		if !written {
			b.missKey(k)
			missed = append(missed, d.Claim.Identity())
		}
	}
	return missed
}

// writeIfAbsent writes d where no item holds its id, retrying with backoff
// until it is written, found present (written false) or ctx ends (err).
func (b *Batcher) writeIfAbsent(ctx context.Context, d outcomes.Done) (written bool, err error) {
	for attempt := 1; ; attempt++ {
		err := b.w.RecordDoneIfAbsent(ctx, d)
		if err == nil {
			b.log.Info("recorded the outcome of a command where no item held its id (its shard lease lost, or its run stopped)",
				"shard", d.Claim.Shard, "seq", d.Claim.Sequence, "command_id", d.Claim.CommandID)
			return true, nil
		}
		if errors.Is(err, outcomes.ErrItemExists) {
			b.log.Info("not recording the outcome of a command (its shard lease lost, or its run stopped): an item holds its id already (the next owner's claim or outcome, or this worker's earlier write)",
				"shard", d.Claim.Shard, "seq", d.Claim.Sequence, "command_id", d.Claim.CommandID)
			return false, nil
		}
		if ctx.Err() != nil {
			return false, err
		}
		b.log.Warn("recording the outcome of a command where no item holds its id failed; retrying",
			"shard", d.Claim.Shard, "seq", d.Claim.Sequence, "command_id", d.Claim.CommandID, "attempt", attempt, "err", err)
		if !backoff.Sleep(ctx, backoff.Policy{First: firstBackoff, Max: 5 * time.Second}.Delay(attempt)) {
			return false, err
		}
	}
}

// lostKey is a partition key of a shard under one tenure of its lease
// (its Lost channel), whose outcomes writeLost writes; the zero lostKey
// is that of an outcome whose key is not known.
type lostKey struct {
	lost       <-chan struct{}
	shard, key string
}

// lostKeyOf is the lostKey of items[i], d, given their leases and keys.
func lostKeyOf(d outcomes.Done, i int, leases []Lease, keys []string) lostKey {
	if leases == nil || keys == nil || leases[i].Lost == nil {
		return lostKey{}
	}
	return lostKey{lost: leases[i].Lost, shard: d.Claim.Shard, key: keys[i]}
}

// maxMissedKeys bounds missedKeys. A key matters there only until the
// later outcomes of the key queued under the lost lease are written, which
// is soon: the runs under a lost lease queue nothing once it is known lost.
const maxMissedKeys = 1024

// keyMissed reports whether an outcome of k was not written (missKey).
func (b *Batcher) keyMissed(k lostKey) bool {
	if k == (lostKey{}) {
		return false
	}
	b.lostMu.Lock()
	defer b.lostMu.Unlock()
	_, ok := b.missedKeys[k]
	return ok
}

// missKey notes that an outcome of k was not written by writeLost, so
// that the later ones of k are not either; the oldest key is forgotten
// past maxMissedKeys.
func (b *Batcher) missKey(k lostKey) {
	if k == (lostKey{}) {
		return
	}
	b.lostMu.Lock()
	defer b.lostMu.Unlock()
	if _, ok := b.missedKeys[k]; ok {
		return
	}
	if b.missedKeys == nil {
		b.missedKeys = map[lostKey]struct{}{}
	}
	if len(b.missedOrder) == maxMissedKeys {
		delete(b.missedKeys, b.missedOrder[0])
		b.missedOrder = append(b.missedOrder[:0], b.missedOrder[1:]...)
	}
	b.missedKeys[k] = struct{}{}
	b.missedOrder = append(b.missedOrder, k)
}

// lostInOrder returns those of bt's items that write returned lost, with
// their leases and keys, in bt's order: write returns them in the order
// their leases were found lost, which may put an outcome before an
// earlier one of its key.
func (bt *batch) lostInOrder(lost []outcomes.Done) (items []outcomes.Done, leases []Lease, keys []string) {
	for i, d := range bt.items {
		if !slices.ContainsFunc(lost, func(l outcomes.Done) bool { return l.Claim == d.Claim }) {
			continue
		}
		items = append(items, d)
		leases = append(leases, bt.leases[i])
		if bt.keys != nil {
			keys = append(keys, bt.keys[i])
		}
	}
	return items, leases, keys
}

// unwritten appends the identities of items to missed.
func unwritten(missed []outcomes.Identity, items []outcomes.Done) []outcomes.Identity {
	for _, d := range items {
		missed = append(missed, d.Claim.Identity())
	}
	return missed
}

// fenceContext is parent ended at until.
type fenceContext struct {
	parent context.Context
	until  time.Time
	ctx    context.Context
	cancel context.CancelFunc
}

// maxFenceContexts bounds the fence contexts kept: a few per shard whose
// outcomes are being written, each until its lease is renewed.
const maxFenceContexts = 64

// fencedContext returns parent ended at until, the fence of a lease. The
// writes under one lease share a context until the lease is renewed: made
// for each write, with its timer, it cost several allocations a command.
// A context evicted while a write uses it ends that write early, which is
// then tried again.
func (b *Batcher) fencedContext(parent context.Context, until time.Time) context.Context {
	b.fenceMu.Lock()
	defer b.fenceMu.Unlock()
	kept := b.fences[:0]
	var found context.Context
	for _, f := range b.fences {
		if f.ctx.Err() != nil {
			f.cancel()
			continue
		}
		if found == nil && f.parent == parent && f.until.Equal(until) {
			found = f.ctx
		}
		kept = append(kept, f)
	}
	clear(b.fences[len(kept):])
	b.fences = kept
	if found != nil {
		return found
	}
	if len(b.fences) == maxFenceContexts {
		b.fences[0].cancel()
		b.fences = append(b.fences[:0], b.fences[1:]...)
	}
	ctx, cancel := context.WithDeadline(parent, until)
	b.fences = append(b.fences, fenceContext{parent: parent, until: until, ctx: ctx, cancel: cancel})
	return ctx
}

// fenced splits items into those whose leases are held (live, with
// their leases) and those whose leases are lost (gone), waiting while a
// lease is past its fence but not known lost (a renewal that comes late,
// as Lease.Await), and returns the earliest fence of the held leases
// (zero: none fences them). leases nil, or a Lease without Fence, fences
// nothing. live and liveLeases are items and leases themselves when gone
// is empty. err is set once ctx ended.
func fenced(ctx context.Context, items []outcomes.Done, leases []Lease) (live []outcomes.Done, liveLeases []Lease, gone []outcomes.Done, until time.Time, err error) {
	var kept []outcomes.Done
	var keptLeases []Lease
	for i := range items {
		var l Lease
		if leases != nil {
			l = leases[i]
		}
		held := true
		if l.Fence != nil {
			f := l.Fence()
			if !time.Now().Before(f) && !f.IsZero() && !isClosed(l.Lost) && l.Await(ctx) {
				f = l.Fence()
			}
			if err := ctx.Err(); err != nil {
				return nil, nil, nil, time.Time{}, err
			}
			held = !isClosed(l.Lost) && time.Now().Before(f)
			if held && (until.IsZero() || f.Before(until)) {
				until = f
			}
		}
		switch {
		case !held:
			if gone == nil {
				kept = append(make([]outcomes.Done, 0, len(items)-1), items[:i]...)
				if leases != nil {
					keptLeases = append(make([]Lease, 0, len(items)-1), leases[:i]...)
				}
			}
			gone = append(gone, items[i])
		case gone != nil:
			kept = append(kept, items[i])
			if leases != nil {
				keptLeases = append(keptLeases, l)
			}
		}
	}
	if gone == nil {
		return items, leases, nil, until, nil
	}
	return kept, keptLeases, gone, until, nil
}

// isClosed reports whether ch is closed (nil: never).
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// wait waits until bt is written; false when it could not be, or when ctx
// ended or the lease was lost first (the write may still land).
func (bt *batch) wait(ctx context.Context, lost <-chan struct{}) (bool, error) {
	for {
		select {
		case <-bt.done:
			if bt.moved != nil {
				bt = bt.moved
				continue
			}
			if bt.err == nil && isClosed(lost) {
				// The bulk write left out this outcome, whose lease was
				// lost (fenced), and wrote it only where no item held
				// its id (writeLost): it may be another's.
				return false, errLeaseLost
			}
			return bt.err == nil, bt.err
		case <-ctx.Done():
			return false, ctx.Err()
		case <-lost:
			return false, errLeaseLost
		}
	}
}

var errLeaseLost = errors.New("lease lost")

// recorded waits until bt landed and reports whether it recorded the
// outcome under id: false when its write failed, or it left id unrecorded
// (missed), or ctx ended first. A write that failed may have recorded the
// outcomes it wrote where no item held their ids, before it failed; they
// are taken as unrecorded all the same, which only runs the next record
// of their keys again (recordLate).
func (bt *batch) recorded(ctx context.Context, id outcomes.Identity) bool {
	for {
		select {
		case <-bt.done:
			if bt.moved != nil {
				bt = bt.moved
				continue
			}
			return bt.err == nil && !slices.Contains(bt.missed, id)
		case <-ctx.Done():
			return false
		}
	}
}
