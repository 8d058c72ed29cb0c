package leases

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	par "github.com/vmware/vmware-go-kcl-v2/clientlibrary/partition"
)

// slot is this process's view of one shard's lease.
//
// The KCL calls GetLease(shard, workerID) both to acquire (event loop) and to
// renew (the consumer's renewal goroutine), and tells them apart only by the
// in-memory owner. A renewal that fires while the consumer is releasing
// would look like an acquisition and take a lease nobody consumes, and the
// event loop would then skip the shard for ever ("owner = me"). So the slot
// remembers what was held and released, and GetLease acquires only when the
// shard is neither held nor fresh from a release (see GetLease).
type slot struct {
	// op serialises this shard's lease writes: a renewal changes the
	// LeaseTimeout that a concurrent checkpoint is fenced on.
	op sync.Mutex

	// Guarded by Table.mu (and changed only with op held too).
	cur      *lease
	released *par.ShardStatus // the ShardStatus whose lease was last released
}

// lease is one acquisition. Its fields are guarded by slot.op.
type lease struct {
	shard      *par.ShardStatus
	timeout    string // the LeaseTimeout we last wrote and know stored
	pending    string // a LeaseTimeout we tried to write, outcome unknown (the call failed)
	checkpoint string // the checkpoint we know stored
	// previousEnd is the LeaseTimeout stored when this lease was taken
	// (zero: none): an earlier owner may have read records until then.
	previousEnd time.Time
	lost        chan struct{}
	closeOnce   sync.Once
	// handoff is closed when a renewal finds that handoffTo asked for the
	// lease.
	handoff   chan struct{}
	handoffTo string
	// until is when the lease runs out by this process's monotonic clock,
	// counted from before the write that took or renewed it. Guarded by
	// Table.mu.
	until time.Time
}

func (l *lease) end() { l.closeOnce.Do(func() { close(l.lost) }) }

func (l *lease) ended() bool {
	select {
	case <-l.lost:
		return true
	default:
		return false
	}
}

var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

func (t *Table) slot(shardID string) *slot {
	t.mu.Lock()
	defer t.mu.Unlock()
	sl := t.slots[shardID]
	if sl == nil {
		sl = &slot{}
		t.slots[shardID] = sl
	}
	return sl
}

func (t *Table) current(sl *slot) *lease {
	t.mu.Lock()
	defer t.mu.Unlock()
	return sl.cur
}

// Lost returns a channel that is closed when this worker's current lease on
// shardID ends: found lost (a refused checkpoint or renewal, i.e. another
// worker owns the shard now), or released by the KCL when the shard's
// consumer stops. Each acquisition has its own channel, so a processor
// should call Lost once, in Initialize. When no lease is held the channel is
// already closed.
func (t *Table) Lost(shardID string) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if sl := t.slots[shardID]; sl != nil && sl.cur != nil {
		return sl.cur.lost
	}
	return closedChan
}

// HeldUntil returns when this worker's lease on shardID runs out by its own
// monotonic clock, counted from before the write that took or renewed it, or
// the zero time when no lease is held or it was found lost. A worker that was
// frozen (a paused VM, SIGSTOP) wakes with its leases possibly taken over
// before any renewal can tell it; side effects check HeldUntil first.
func (t *Table) HeldUntil(shardID string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	sl := t.slots[shardID]
	if sl == nil || sl.cur == nil || sl.cur.ended() {
		return time.Time{}
	}
	return sl.cur.until
}

// GetLease acquires or renews the lease on shard for owner (this worker).
//
// Renewal is a call for the ShardStatus this Table granted, while its
// in-memory owner is still this worker. Acquisition is any other call,
// except that a call for a lease that was released and not fetched again
// (FetchCheckpoint) since is a consumer's last renewal racing its own
// release: it writes nothing and returns nil.
//
// Acquisition takes a free lease or an expired one, fenced on the exact
// owner and LeaseTimeout read. It refuses a finished shard (SHARD_END), a
// shard claimed by another worker, a live lease (whoever holds it), and a
// child whose parents are not finished. Refusals are *NotAcquiredError. On
// success the stored checkpoint is copied into shard, and Lost(shard) gets a
// new channel.
//
// Renewal extends the LeaseTimeout only, so it cannot undo a checkpoint. If
// the table refuses it (another owner, or another worker's claim), the lease
// is lost: Lost(shard) is closed and the error wraps ErrLeaseLost. Any other
// failure is returned as is; the KCL ends the consumer either way.
func (t *Table) GetLease(shard *par.ShardStatus, owner string) error {
	if owner != t.cfg.WorkerID {
		return fmt.Errorf("lease table %q: GetLease for worker %q, but this table serves worker %q",
			t.cfg.TableName, owner, t.cfg.WorkerID)
	}
	sl := t.slot(shard.ID)
	sl.op.Lock()
	defer sl.op.Unlock()

	t.mu.Lock()
	cur, released := sl.cur, sl.released
	t.mu.Unlock()
	switch {
	case cur != nil && cur.shard == shard && shard.GetLeaseOwner() == owner:
		return t.renew(cur)
	case cur != nil:
		return notAcquired(shard.ID, "this worker holds the lease for another consumer or is releasing it")
	case released == shard:
		// Only a consumer's last renewal, racing its own release, gets here:
		// the KCL fetches the checkpoint before it acquires. That consumer has
		// already stopped, so there is nothing to renew and nothing to report;
		// an error would only be logged by the KCL as a failed renewal.
		t.shardLog(shard.ID).Debug("renewal after release ignored")
		return nil
	}
	return t.acquire(sl, shard)
}

func (t *Table) acquire(sl *slot, shard *par.ShardStatus) error {
	me := t.cfg.WorkerID
	log := t.shardLog(shard.ID)
	// The KCL's pass read the row just before (FetchCheckpoint): a lease it
	// found live in another worker's hands is refused without reading it
	// again, which halves what a settled worker's passes read.
	if o, ts := shard.GetLeaseOwner(), shard.GetLeaseTimeout(); o != "" && o != me && t.now().Before(ts) {
		return notAcquired(shard.ID, "held by worker %q until %s", o, formatTimeout(ts))
	}
	// Released by this worker after a record stopped without an outcome:
	// not before its backoff ends, reserved for this worker or not (see
	// retake.go). Asked before any read: the pass that reads the shard
	// every shard-sync interval meanwhile must cost nothing more.
	if d := t.retakeIn(shard.ID); d > 0 {
		return notAcquired(shard.ID, "released by this worker after a record stopped without an outcome; it takes it again in %s", d.Round(time.Millisecond))
	}
	// Taken before the LeaseTimeout below is computed: the local expiry must
	// not come after the one other workers read.
	start := time.Now()
	r, err := t.getRow(shard.ID)
	if err != nil {
		return fmt.Errorf("lease table %q: read lease of shard %s: %w", t.cfg.TableName, shard.ID, err)
	}
	now := t.now()
	if r.checkpoint == checkpoint.ShardEnd {
		return &NotAcquiredError{Shard: shard.ID, Reason: ShardFinishedText, Finished: true}
	}
	ts, tsOK := r.leaseTimeout()
	// As the KCL: a claim lapses once the lease it targets has been expired
	// for ClaimTimeout (the claimer is presumed gone).
	claimExpired := tsOK && ts.Before(now.Add(-t.cfg.ClaimTimeout))
	if r.claim != "" && r.claim != me && !claimExpired {
		return notAcquired(shard.ID, "claimed by worker %q (%s)", r.claim, checkpoint.ErrShardClaimed)
	}
	// Our own id counts like any other: it may belong to another Table of
	// this process (an observer restarted in-process while its old worker
	// still runs), which keeps renewing; a lease orphaned by a failed release
	// frees up when it expires.
	if r.owner != "" && tsOK && now.Before(ts) {
		return notAcquired(shard.ID, "held by worker %q until %s", r.owner, r.timeout)
	}
	reserved := r.owner == "" && r.handoff != "" && tsOK && now.Before(ts)
	if reserved && r.handoff != me {
		return notAcquired(shard.ID, "handed over to worker %q until %s", r.handoff, r.timeout)
	}
	// A lease handed to this worker is taken whatever its share: refusing
	// it would leave the shard idle until the reservation runs out.
	if !reserved && !t.mayTake() {
		return notAcquired(shard.ID, "this worker holds its share of the leases")
	}
	if reason, err := t.lineageBlocks(shard); err != nil {
		return fmt.Errorf("lease table %q: check parents of shard %s: %w", t.cfg.TableName, shard.ID, err)
	} else if reason != "" {
		log.Debug("child lease refused", "reason", reason)
		return notAcquired(shard.ID, "%s", reason)
	}

	var e expr
	var conds []string
	if r.hasOwner {
		conds = append(conds, e.name(attrOwner)+" = "+e.value("prev_owner", r.owner))
		if r.hasTimeout {
			conds = append(conds, e.name(attrTimeout)+" = "+e.value("prev_timeout", r.timeout))
		} else {
			conds = append(conds, "attribute_not_exists("+e.name(attrTimeout)+")")
		}
	} else {
		conds = append(conds, "attribute_not_exists("+e.name(attrOwner)+")")
		if r.handoff != "" {
			conds = append(conds, e.name(attrHandoffTo)+" = "+e.value("prev_handoff", r.handoff))
		} else {
			conds = append(conds, "attribute_not_exists("+e.name(attrHandoffTo)+")")
		}
	}
	if r.claim != "" && r.claim == me && !claimExpired {
		conds = append(conds, e.name(attrClaim)+" = "+e.value("me", me))
	}
	newTS := now.Add(t.cfg.LeaseDuration).UTC()
	newTimeout := formatTimeout(newTS)
	sets := []string{
		e.name(attrOwner) + " = " + e.value("me", me),
		e.name(attrTimeout) + " = " + e.value("timeout", newTimeout),
	}
	parent := shard.ParentShardId
	if parent == "" {
		parent = r.parent
	}
	if parent != "" {
		sets = append(sets, e.name(attrParent)+" = "+e.value("parent", parent))
	}
	// A completed steal consumes the claim, as the KCL's PutItem does.
	// Taking a lease also ends any handoff on it: done (reserved for us) or
	// moot (the owner is gone).
	update := "SET " + strings.Join(sets, ", ") + " REMOVE " + e.name(attrClaim) + ", " +
		e.name(attrHandoffTo) + ", " + e.name(attrHandoffAt)
	out, err := t.update(&dynamodb.UpdateItemInput{
		Key:                       map[string]types.AttributeValue{attrShardID: s(shard.ID)},
		UpdateExpression:          aws.String(update),
		ConditionExpression:       aws.String(strings.Join(conds, " AND ")),
		ExpressionAttributeNames:  e.Names,
		ExpressionAttributeValues: e.Values,
		ReturnValues:              types.ReturnValueAllNew,
	})
	if err != nil {
		if isConditionFailed(err) {
			return notAcquired(shard.ID, "the lease changed since it was read")
		}
		return fmt.Errorf("lease table %q: acquire lease of shard %s: %w", t.cfg.TableName, shard.ID, err)
	}
	// The stored checkpoint as of our write: a checkpoint the previous
	// owner wrote after our read is included.
	stored := parseRow(out.Attributes)
	t.progressed(shard.ID, stored.checkpoint)
	l := &lease{shard: shard, timeout: newTimeout, checkpoint: stored.checkpoint, lost: make(chan struct{}),
		handoff: make(chan struct{}), until: start.Add(t.cfg.LeaseDuration)}
	if tsOK {
		// Our write was conditioned on this timeout (or on no owner, whose
		// last timeout stays stored): no owner wrote a later one.
		l.previousEnd = ts
	}
	t.mu.Lock()
	sl.cur, sl.released = l, nil
	t.mu.Unlock()
	setShard(shard, func(sh *par.ShardStatus) {
		sh.AssignedTo = me
		sh.LeaseTimeout = newTS
		sh.Checkpoint = stored.checkpoint
		sh.ClaimRequest = ""
		if sh.ParentShardId == "" {
			sh.ParentShardId = parent
		}
	})
	log.Info("lease acquired", "previous_owner", r.owner, "checkpoint", stored.checkpoint,
		"lease_timeout", newTimeout, "handed_over", reserved)
	if r.owner != "" && r.owner != me && t.cfg.OnHandoff != nil {
		// Taken from an owner that stopped renewing (dead or frozen).
		t.cfg.OnHandoff("expired")
	}
	if t.cfg.OnAcquired != nil {
		t.cfg.OnAcquired()
	}
	return nil
}

func (t *Table) renew(l *lease) error {
	shard := l.shard
	if l.ended() {
		return t.lostErr(shard.ID, RenewalAfterEndText)
	}
	me := t.cfg.WorkerID
	for attempt := 0; ; attempt++ {
		// Before the new LeaseTimeout is computed, as in acquire.
		sent := time.Now()
		newTS := t.now().Add(t.cfg.LeaseDuration).UTC()
		newTimeout := formatTimeout(newTS)
		var e expr
		cond := e.name(attrOwner) + " = " + e.value("me", me) +
			" AND " + e.name(attrTimeout) + " = " + e.value("mine", l.timeout) +
			// A claim by another worker asks us to hand the shard over.
			" AND (attribute_not_exists(" + e.name(attrClaim) + ") OR " + e.name(attrClaim) + " = :me)"
		out, err := t.update(&dynamodb.UpdateItemInput{
			Key:                       map[string]types.AttributeValue{attrShardID: s(shard.ID)},
			UpdateExpression:          aws.String("SET " + e.name(attrTimeout) + " = " + e.value("timeout", newTimeout)),
			ConditionExpression:       aws.String(cond),
			ExpressionAttributeNames:  e.Names,
			ExpressionAttributeValues: e.Values,
			// The item as renewed carries any handoff request, at no extra cost.
			ReturnValues: types.ReturnValueAllNew,
		})
		if err == nil {
			l.timeout, l.pending = newTimeout, ""
			t.mu.Lock()
			l.until = sent.Add(t.cfg.LeaseDuration)
			t.mu.Unlock()
			shard.SetLeaseTimeout(newTS)
			if to, _ := str(out.Attributes, attrHandoffTo); to != "" && to != me && l.handoffTo == "" && t.mayHandTo(to) {
				l.handoffTo = to
				close(l.handoff)
				t.shardLog(shard.ID).Info("lease handoff asked for", "by", to)
			}
			return nil
		}
		if !isConditionFailed(err) {
			// The write may have landed: remember it so that the fence can
			// recognise our own timeout later.
			l.pending = newTimeout
			err = fmt.Errorf("lease table %q: renew lease of shard %s: %w", t.cfg.TableName, shard.ID, err)
			if t.ranOut(l) {
				// Another worker may hold the lease by now (a worker wakes
				// from a freeze with its renewal's deadline long past):
				// nothing may run under it any more, and the operator learns
				// why the shard stopped.
				why := "renewal failed after the lease ran out by this worker's clock: " + err.Error()
				t.markLost(l, why)
				return t.lostErr(shard.ID, why)
			}
			return err
		}
		r, adopted, rerr := t.reconcile(l)
		if rerr != nil {
			return fmt.Errorf("lease table %q: renew lease of shard %s: %w (reading the lease: %v)",
				t.cfg.TableName, shard.ID, err, rerr)
		}
		if adopted && r.claim != "" && r.claim != me {
			t.markLost(l, "claimed by worker "+r.claim)
			return t.lostErr(shard.ID, fmt.Sprintf("claimed by worker %q (%s)", r.claim, checkpoint.ErrShardClaimed))
		}
		if !adopted || attempt > 0 {
			t.markLost(l, describeOwner(r))
			return t.lostErr(shard.ID, describeOwner(r))
		}
	}
}

// reconcile reads the lease after a refused fenced write. adopted is true
// when the item still carries our lease: with the timeout we hold, or with
// one whose write we could not confirm (which then becomes the one we hold).
func (t *Table) reconcile(l *lease) (r row, adopted bool, err error) {
	r, err = t.getRow(l.shard.ID)
	if err != nil {
		return row{}, false, err
	}
	if r.owner != t.cfg.WorkerID {
		return r, false, nil
	}
	switch {
	case r.timeout == l.timeout:
		return r, true, nil
	case l.pending != "" && r.timeout == l.pending:
		l.timeout, l.pending = l.pending, ""
		if ts, ok := r.leaseTimeout(); ok {
			l.shard.SetLeaseTimeout(ts)
		}
		return r, true, nil
	}
	return r, false, nil
}

func describeOwner(r row) string {
	switch {
	case !r.exists:
		return "the lease item is gone"
	case r.owner == "":
		return "the lease has no owner"
	default:
		return fmt.Sprintf("owned by worker %q until %s", r.owner, r.timeout)
	}
}

// ranOut reports whether l's time is up by this process's monotonic clock.
func (t *Table) ranOut(l *lease) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !time.Now().Before(l.until)
}

func (t *Table) markLost(l *lease, why string) {
	if !l.ended() {
		t.shardLog(l.shard.ID).Warn("lease lost", "reason", why)
	}
	l.end()
}

func (t *Table) lostErr(shardID, why string) error {
	return fmt.Errorf("%w: lease table %q, shard %s, worker %q: %s", ErrLeaseLost, t.cfg.TableName, shardID, t.cfg.WorkerID, why)
}

// PreviousLeaseEnd is the LeaseTimeout stored on shardID when this worker
// took its current lease (zero when there was none, or no lease is held):
// an earlier owner may have read, and started, the shard's records that
// arrived before then, and none that arrived later (it stops before its
// lease ends by its own clock).
func (t *Table) PreviousLeaseEnd(shardID string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if sl := t.slots[shardID]; sl != nil && sl.cur != nil {
		return sl.cur.previousEnd
	}
	return time.Time{}
}

// CheckpointSequence stores shard's in-memory checkpoint (set by the KCL just
// before; SHARD_END for a finished shard), fenced on this worker's lease
// (AssignedTo and the exact LeaseTimeout). A refused write means another
// worker owns the shard: Lost(shard) is closed and the error wraps
// ErrLeaseLost. A checkpoint below the stored one, or anything after
// SHARD_END, is refused with ErrCheckpointRegression. On any failure the
// in-memory checkpoint is put back to the stored one.
func (t *Table) CheckpointSequence(shard *par.ShardStatus) error {
	value := shard.GetCheckpoint()
	sl := t.slot(shard.ID)
	sl.op.Lock()
	defer sl.op.Unlock()
	l := t.current(sl)
	if l == nil {
		return t.lostErr(shard.ID, "no lease held")
	}
	restore := func() { shard.SetCheckpoint(l.checkpoint) }
	if l.ended() {
		restore()
		return t.lostErr(shard.ID, "checkpoint after the lease ended")
	}
	if value == "" {
		restore()
		return fmt.Errorf("lease table %q: shard %s: empty checkpoint", t.cfg.TableName, shard.ID)
	}
	if regresses(l.checkpoint, value) {
		restore()
		return fmt.Errorf("%w: lease table %q, shard %s: stored %q, asked %q",
			ErrCheckpointRegression, t.cfg.TableName, shard.ID, l.checkpoint, value)
	}
	err := t.fenced(l, fmt.Sprintf("checkpoint shard %s at %s", shard.ID, value), func(e *expr) string {
		return "SET " + e.name(attrCheckpoint) + " = " + e.value("checkpoint", value)
	})
	if err != nil {
		restore()
		return err
	}
	l.checkpoint = value
	t.progressed(shard.ID, value)
	return nil
}

// fenced writes the shard's item with the update expression that set
// builds, on the condition that the item still carries lease l (this
// worker's id and the exact LeaseTimeout). l's slot.op must be held. A
// refused write is retried once if the item carries l after all (a renewal
// whose outcome was unknown had landed); otherwise l is lost: it is ended
// and the error wraps ErrLeaseLost. Any other failure is returned wrapped,
// prefixed with what.
func (t *Table) fenced(l *lease, what string, set func(*expr) string) error {
	me := t.cfg.WorkerID
	for attempt := 0; ; attempt++ {
		var e expr
		update := set(&e)
		_, err := t.update(&dynamodb.UpdateItemInput{
			Key:              map[string]types.AttributeValue{attrShardID: s(l.shard.ID)},
			UpdateExpression: aws.String(update),
			ConditionExpression: aws.String(e.name(attrOwner) + " = " + e.value("me", me) +
				" AND " + e.name(attrTimeout) + " = " + e.value("mine", l.timeout)),
			ExpressionAttributeNames:  e.Names,
			ExpressionAttributeValues: e.Values,
		})
		if err == nil {
			return nil
		}
		if !isConditionFailed(err) {
			return fmt.Errorf("lease table %q: %s: %w", t.cfg.TableName, what, err)
		}
		r, adopted, rerr := t.reconcile(l)
		if rerr != nil {
			return fmt.Errorf("lease table %q: %s: %w (reading the lease: %v)", t.cfg.TableName, what, err, rerr)
		}
		if !adopted || attempt > 0 {
			t.markLost(l, describeOwner(r))
			return t.lostErr(l.shard.ID, describeOwner(r))
		}
	}
}

// regresses tells whether writing next over stored moves the checkpoint
// back: below the stored sequence number, or away from SHARD_END. What is
// not a sequence number is not judged (see later).
func regresses(stored, next string) bool {
	if stored == checkpoint.ShardEnd {
		return next != checkpoint.ShardEnd
	}
	return later(stored, next)
}

// FetchCheckpoint reads the shard's item (consistent read) into shard:
// Checkpoint (empty when none), ClaimRequest, and, unless this Table holds
// the lease, AssignedTo and LeaseTimeout. It returns
// checkpoint.ErrSequenceIDNotFound, unwrapped as the KCL compares it with ==,
// exactly when the item is missing or has no Checkpoint; any other error is a
// real failure.
//
// An item still naming this worker although this Table holds no lease (a
// release whose write failed) is shown as unowned: with our own id in memory
// the KCL's event loop would skip the shard for ever instead of taking it
// back once it expires.
func (t *Table) FetchCheckpoint(shard *par.ShardStatus) error {
	me := t.cfg.WorkerID
	ownerBefore := shard.GetLeaseOwner()
	r, err := t.getRow(shard.ID)
	if err != nil {
		return fmt.Errorf("lease table %q: fetch checkpoint of shard %s: %w", t.cfg.TableName, shard.ID, err)
	}
	sl := t.slot(shard.ID)
	t.mu.Lock()
	held := sl.cur != nil && sl.cur.shard == shard
	if ownerBefore != me && sl.released == shard {
		// The event loop is looking at the shard again: it may acquire it.
		sl.released = nil
	}
	t.mu.Unlock()
	t.progressed(shard.ID, r.checkpoint)
	// A shard this worker backs off from is none it may take: no wake, no
	// fast passes while the backoff runs (see retake.go).
	backingOff := t.retakeIn(shard.ID) > 0
	var badTimeout, available bool
	now := t.now()
	setShard(shard, func(sh *par.ShardStatus) {
		sh.Checkpoint = r.checkpoint
		sh.ClaimRequest = r.claim
		if held {
			return
		}
		sh.AssignedTo = r.owner
		if r.owner == me {
			sh.AssignedTo = ""
		}
		ts, ok := r.leaseTimeout()
		badTimeout = r.hasTimeout && !ok
		sh.LeaseTimeout = ts
		reservedElsewhere := r.owner == "" && r.handoff != "" && r.handoff != me && now.Before(ts)
		available = r.checkpoint != checkpoint.ShardEnd && !reservedElsewhere && !backingOff &&
			(sh.AssignedTo == "" || !now.Before(ts) || r.handoff == me)
	})
	if badTimeout {
		t.shardLog(shard.ID).Warn("unreadable LeaseTimeout; treating the lease as expired", "lease_timeout", r.timeout)
	}
	if available {
		// This worker's share may have changed too (a peer died, the
		// stream was resharded): a settled balancer looks again soon.
		t.kickScan()
		if t.cfg.OnAvailable != nil {
			t.cfg.OnAvailable()
		}
	}
	if !r.hasCheckpt {
		return checkpoint.ErrSequenceIDNotFound
	}
	return nil
}

// RemoveLeaseOwner releases this worker's lease on shardID (the KCL calls it
// when a shard consumer stops): Lost(shardID) is closed and AssignedTo is
// removed if it still names this worker. A lease already taken over is not
// an error.
func (t *Table) RemoveLeaseOwner(shardID string) error {
	sl := t.slot(shardID)
	sl.op.Lock()
	defer sl.op.Unlock()
	t.mu.Lock()
	l := sl.cur
	if l != nil {
		sl.cur, sl.released = nil, l.shard
	}
	t.mu.Unlock()
	if l != nil {
		if t.cfg.OnAvailable != nil {
			// After the write below, so the next pass reads the row free.
			defer t.cfg.OnAvailable()
		}
	}
	log := t.shardLog(shardID)
	if l != nil && !l.ended() {
		if to := t.successor(); to != "" {
			// A stopping worker: the peer takes the shard at its next
			// census scan instead of at its next slow shard-sync pass.
			l.end()
			err := t.reserve(shardID, l.timeout, to)
			if err == nil {
				log.Info("lease released to a peer", "to", to)
				if t.cfg.OnHandoff != nil {
					t.cfg.OnHandoff("graceful")
				}
				return nil
			}
			log.Debug("lease not handed to a peer; releasing it", "err", err)
		}
	}
	// Whether this worker still took the lease for its own: a release that
	// finds it gone is then the first news of its loss.
	wasLive := l != nil && !l.ended()
	if l != nil {
		l.end()
	}
	var e expr
	_, err := t.update(&dynamodb.UpdateItemInput{
		Key:                       map[string]types.AttributeValue{attrShardID: s(shardID)},
		UpdateExpression:          aws.String("REMOVE " + e.name(attrOwner)),
		ConditionExpression:       aws.String(e.name(attrOwner) + " = " + e.value("me", t.cfg.WorkerID)),
		ExpressionAttributeNames:  e.Names,
		ExpressionAttributeValues: e.Values,
	})
	switch {
	case err == nil:
		log.Info("lease released")
		return nil
	case isConditionFailed(err):
		if wasLive {
			log.Warn("lease lost", "reason", "taken by another worker before this worker released it")
		} else {
			log.Debug("lease not released: no longer ours")
		}
		return nil
	default:
		// The lease then expires after LeaseDuration.
		return fmt.Errorf("lease table %q: release lease of shard %s: %w", t.cfg.TableName, shardID, err)
	}
}

// RemoveLeaseInfo deletes the shard's item (the KCL calls it for shards that
// left ListShards, i.e. were trimmed).
func (t *Table) RemoveLeaseInfo(shardID string) error {
	if !IsLeaseKey(shardID) {
		return fmt.Errorf("lease table %q: refusing to delete %q, which is not a shard's lease", t.cfg.TableName, shardID)
	}
	ctx, cancel := t.callCtx()
	defer cancel()
	_, err := t.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(t.cfg.TableName),
		Key:       map[string]types.AttributeValue{attrShardID: s(shardID)},
	})
	if err != nil {
		return fmt.Errorf("lease table %q: delete lease of shard %s: %w", t.cfg.TableName, shardID, err)
	}
	t.mu.Lock()
	if sl := t.slots[shardID]; sl != nil && sl.cur == nil {
		delete(t.slots, shardID)
	}
	// A trimmed shard is never read again.
	delete(t.retakes, shardID)
	t.mu.Unlock()
	t.shardLog(shardID).Info("lease item deleted")
	return nil
}

// GetLeaseOwner returns the stored owner of shardID, or
// checkpoint.NoLeaseOwnerErr when there is none.
func (t *Table) GetLeaseOwner(shardID string) (string, error) {
	r, err := t.getRow(shardID)
	if err != nil {
		return "", fmt.Errorf("lease table %q: read lease of shard %s: %w", t.cfg.TableName, shardID, err)
	}
	if !r.hasOwner {
		return "", checkpoint.NoLeaseOwnerErr
	}
	return r.owner, nil
}
