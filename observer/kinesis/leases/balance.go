package leases

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"

	"github.com/sauna-io/sauna/observer/ddbtable"
)

// Scale-out: several workers with the same observer id share a stream's
// shards through the lease table alone, with no coordinator.
//
//   - Census. Every worker keeps an item "sauna#worker#<id>" whose Expires
//     it pushes forward every third of the lease duration, and deletes it
//     when it stops. A worker holding no lease is therefore still counted.
//   - Balance. A worker scans the table and computes its share of the
//     workable shards (unfinished, parents finished): floor or ceil of
//     shards / live workers. It scans every BalanceInterval while anything
//     moves, and doubles the period up to BalanceMaxInterval while scans
//     find nothing changed and nothing to do, so that a settled cluster
//     costs a scan per worker every few seconds instead of every second
//     (scanPace says what brings the fast period back). It acquires no
//     lease beyond the ceiling, and, when nothing is free and the most
//     loaded worker holds at least two more than it does, it asks that
//     worker for one lease (HandoffTo = itself, written only if the lease
//     carries no request yet).
//   - Graceful handoff. The owner sees the request at its next renewal
//     (which returns the item), stops admitting the shard's records, lets
//     the admitted ones finish, writes the final checkpoint and then
//     reserves the lease for the requester: AssignedTo removed, HandoffTo
//     kept, LeaseTimeout = now + lease duration. Only the requester may take
//     a reserved lease until that timeout; after it, anyone may (the
//     requester died). An owner that dies or freezes stops renewing, and its
//     lease expires and is taken as in any failover.
//   - Shutdown. A stopping worker rescans the census and reserves each
//     lease it releases for the least loaded live peer, which takes it at
//     its next shard-sync pass or scan, whichever comes first (the pass
//     finds the reservation and kicks a scan), instead of the peers racing
//     for it.
//
// Items whose ShardID contains '#' are sauna's own (stream binding, census,
// and any other marker): Kinesis shard ids never contain '#', and every
// listing here skips them (IsLeaseKey).

// Attributes and keys of scale-out.
const (
	attrHandoffTo = "HandoffTo" // the worker that asked for the lease, or that it is reserved for
	attrHandoffAt = "HandoffAt" // when the request was written (RFC3339Nano)
	attrWorker    = "Worker"    // census: the worker id
	attrExpires   = "Expires"   // census: when the worker counts as gone (RFC3339Nano)

	// CensusPrefix starts the ShardID of a worker's census item.
	CensusPrefix = "sauna#worker#"
)

// Defaults of the scale-out settings.
const (
	DefaultBalanceInterval = time.Second
	// DefaultBalanceMaxInterval bounds how stale a settled worker's view
	// gets; what needs a fresh one sooner kicks a scan (scanPace).
	DefaultBalanceMaxInterval = 10 * time.Second
	DefaultHandoffTimeout     = 30 * time.Second // the KCL 3.x gracefulLeaseHandoffTimeoutMillis default
	DefaultTakesPerPass       = 1
)

// IsLeaseKey tells a shard's lease item from sauna's own items (stream
// binding, census, markers), whose keys contain '#'.
func IsLeaseKey(id string) bool { return id != "" && !strings.Contains(id, "#") }

// LeaseInfo is one shard's lease as last scanned.
type LeaseInfo struct {
	Shard      string
	Owner      string // "" when none
	Checkpoint string
	Timeout    time.Time // zero when none
	HandoffTo  string    // a pending request, or the worker the lease is reserved for
	Live       bool      // owned and not expired
}

// View is the lease table as the last scan saw it.
type View struct {
	At      time.Time
	Leases  []LeaseInfo
	Workers map[string]int // live workers (census or live lease owner) and their live leases
	// Workable counts the shards that are unfinished and whose parents are
	// finished; Floor and Ceil are the per-worker share of them.
	Workable    int
	Floor, Ceil int
}

// Snapshot returns the last scan's view (zero before the first one).
func (t *Table) Snapshot() View {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.view
}

// Alone reports whether the last scan found no live worker but this one
// (no census item, no live lease of another owner); false before any scan.
func (t *Table) Alone() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.view.At.IsZero() {
		return false
	}
	for w := range t.view.Workers {
		if w != t.cfg.WorkerID {
			return false
		}
	}
	return true
}

// Leave marks this worker as stopping: its leases, when released, are
// reserved for live peers, and its census item is deleted so peers stop
// counting it. It is best effort (a failed delete expires on its own).
func (t *Table) Leave() {
	// A settled worker's view may be several seconds old: the peers its
	// released leases go to (successor) must be the live ones now.
	ctx, cancel := t.callCtx()
	defer cancel()
	rows, census, err := scanTable(ctx, t.db, t.cfg.TableName, t.cfg.CallTimeout, t.now())
	t.mu.Lock()
	if err == nil {
		t.view.Workers = t.liveWorkers(rows, census)
	}
	t.leaving = true
	t.mu.Unlock()
	if err != nil {
		t.log.Warn("could not rescan the lease table before leaving; peers are chosen from the last scan", "err", err)
	}
	dctx, dcancel := t.callCtx()
	defer dcancel()
	_, err = t.db.DeleteItem(dctx, &dynamodb.DeleteItemInput{
		TableName: aws.String(t.cfg.TableName),
		Key:       map[string]types.AttributeValue{attrShardID: s(CensusPrefix + t.cfg.WorkerID)},
	})
	if err != nil {
		t.log.Warn("could not remove this worker from the census; it expires on its own", "err", err)
	}
}

// RunBalancer keeps this worker in the census and, with Balance on, asks
// overloaded peers for leases. wake is called whenever a lease may be taken
// by this worker (free, expired, or reserved for it), and seen (if set) with
// every scan's view; neither may block. It returns when ctx ends.
func (t *Table) RunBalancer(ctx context.Context, wake func(), seen func(View)) {
	base := t.cfg.BalanceInterval
	beatEvery := t.cfg.LeaseDuration / 3
	interval := base
	var nextBeat, lastScan time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		now := time.Now()
		if !now.Before(nextBeat) {
			if err := t.Heartbeat(); err != nil {
				t.log.Warn("census heartbeat failed", "err", err)
				nextBeat = now.Add(base)
			} else {
				nextBeat = now.Add(beatEvery)
			}
		}
		if now.Sub(lastScan) >= interval {
			lastScan = now
			settled, err := t.balanceOnce(ctx, wake)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				t.log.Warn("lease balance pass failed", "err", err)
			} else if seen != nil {
				seen(t.Snapshot())
			}
			interval = nextScanInterval(interval, settled && err == nil, base, t.cfg.BalanceMaxInterval)
		}
		next := lastScan.Add(interval)
		if nextBeat.Before(next) {
			next = nextBeat
		}
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-t.scans.kick:
			// The next scan comes one base interval after the last at the
			// latest, never sooner: kicks cannot make the balancer spin.
			// (The timer is Reset above with no drain: since Go 1.23 a
			// stopped or reset timer delivers no stale tick.)
			interval = base
		}
	}
}

// scanPace is what makes a settled balancer scan sooner than its stretched
// period. A settled worker's view only matters when this worker may take a
// lease (the shard-sync pass found one free, expired or reserved for it:
// its share may have changed too, e.g. a peer died or the stream was
// resharded) or when a worker it does not know asks it for a lease (a peer
// that joined since its last scan). Both kick a scan; a worker that joins,
// asks for leases or is asked for one by a known peer needs no kick, since
// the scans that find a change keep the fast period anyway.
type scanPace struct {
	kick chan struct{}
	// last sums up the previous scan (see settled); only balanceOnce,
	// called by one goroutine, uses it.
	last string
}

// kickScan asks the balancer to scan within one BalanceInterval of its last
// scan; it never blocks.
func (t *Table) kickScan() {
	select {
	case t.scans.kick <- struct{}{}:
	default:
	}
}

// nextScanInterval is the balancer's next period: the base while scans find
// something changed or to do, doubling up to max while they find nothing.
func nextScanInterval(cur time.Duration, settled bool, base, ceiling time.Duration) time.Duration {
	if !settled {
		return base
	}
	return min(max(cur*2, base), ceiling)
}

// Heartbeat writes this worker's census item.
func (t *Table) Heartbeat() error {
	ctx, cancel := t.callCtx()
	defer cancel()
	_, err := t.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(t.cfg.TableName),
		Item: map[string]types.AttributeValue{
			attrShardID: s(CensusPrefix + t.cfg.WorkerID),
			attrWorker:  s(t.cfg.WorkerID),
			attrExpires: s(formatTimeout(t.now().Add(t.cfg.LeaseDuration))),
		},
	})
	if err != nil {
		return fmt.Errorf("lease table %q: census heartbeat: %w", t.cfg.TableName, err)
	}
	return nil
}

// Refresh scans the table once and updates the view, without asking for
// any lease. The observer calls it before its first shard-sync pass so that
// a joining worker knows its share before it acquires anything. Ending ctx
// abandons the scan (a stop must not wait for a hung endpoint).
func (t *Table) Refresh(ctx context.Context) error {
	_, err := t.scanView(ctx)
	return err
}

// scanned is a lease item with what the balancer needs.
type scanned struct {
	LeaseInfo
	handoffAt string
	r         row
}

func (t *Table) scanView(ctx context.Context) ([]scanned, error) {
	now := t.now()
	rows, census, err := scanTable(ctx, t.db, t.cfg.TableName, t.cfg.CallTimeout, now)
	if err != nil {
		return nil, err
	}
	workers := t.liveWorkers(rows, census)
	workable, err := t.workable(ctx, rows)
	if err != nil {
		return nil, err
	}
	v := View{At: now, Workers: workers, Workable: workable}
	v.Floor, v.Ceil = share(workable, len(workers), t.cfg.MaxLeases)
	for _, r := range rows {
		v.Leases = append(v.Leases, r.LeaseInfo)
		t.progressed(r.Shard, r.Checkpoint)
	}
	t.mu.Lock()
	t.view = v
	t.mu.Unlock()
	return rows, nil
}

// liveWorkers counts the live leases of every live worker: this one, those
// of the census, and any owner of a live lease.
func (t *Table) liveWorkers(rows []scanned, census map[string]bool) map[string]int {
	workers := map[string]int{t.cfg.WorkerID: 0}
	for w := range census {
		workers[w] = 0
	}
	for _, r := range rows {
		if r.Live && r.Checkpoint != checkpoint.ShardEnd {
			workers[r.Owner]++
		}
	}
	return workers
}

// scanTable reads every item of a lease table (consistent, every page,
// each call bounded by callTimeout): the shards' leases, sorted by shard,
// and the workers whose census item has not expired by now.
func scanTable(ctx context.Context, db ddbtable.Client, table string, callTimeout time.Duration, now time.Time) ([]scanned, map[string]bool, error) {
	var rows []scanned
	census := map[string]bool{}
	in := &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)}
	for page := 0; ; page++ {
		if page == maxScanPages {
			return nil, nil, fmt.Errorf("lease table %q: scan: more than %d pages", table, maxScanPages)
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		out, err := db.Scan(cctx, in)
		cancel()
		if err != nil {
			return nil, nil, fmt.Errorf("lease table %q: scan: %w", table, err)
		}
		for _, item := range out.Items {
			id, _ := str(item, attrShardID)
			if strings.HasPrefix(id, CensusPrefix) {
				w, _ := str(item, attrWorker)
				exp, _ := str(item, attrExpires)
				if ts, err := time.Parse(time.RFC3339Nano, exp); err == nil && now.Before(ts) && w != "" {
					census[w] = true
				}
				continue
			}
			if !IsLeaseKey(id) {
				continue
			}
			r := parseRow(item)
			sc := scanned{r: r}
			sc.Shard, sc.Owner, sc.Checkpoint, sc.HandoffTo = id, r.owner, r.checkpoint, r.handoff
			sc.handoffAt, _ = str(item, attrHandoffAt)
			if ts, ok := r.leaseTimeout(); ok {
				sc.Timeout = ts
				sc.Live = r.owner != "" && now.Before(ts)
			}
			rows = append(rows, sc)
		}
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Shard < rows[j].Shard })
	return rows, census, nil
}

// ReadTable reads a lease table for operators: every shard's lease, and
// the live workers of the census, sorted.
func ReadTable(ctx context.Context, db ddbtable.Client, table string) ([]LeaseInfo, []string, error) {
	rows, census, err := scanTable(ctx, db, table, DefaultCallTimeout, time.Now())
	if err != nil {
		return nil, nil, err
	}
	out := make([]LeaseInfo, 0, len(rows))
	for _, r := range rows {
		out = append(out, r.LeaseInfo)
	}
	workers := make([]string, 0, len(census))
	for w := range census {
		workers = append(workers, w)
	}
	sort.Strings(workers)
	return out, workers, nil
}

// share is the per-worker floor and ceiling of n shards over w workers,
// capped at max (0: no cap).
func share(n, w, max int) (floor, ceil int) {
	if w < 1 {
		w = 1
	}
	floor, ceil = n/w, (n+w-1)/w
	if max > 0 {
		floor, ceil = min(floor, max), min(ceil, max)
	}
	return floor, ceil
}

// workable counts the listed shards that are unfinished and whose parents
// are finished or gone. A shard with no item yet counts as unfinished.
func (t *Table) workable(ctx context.Context, rows []scanned) (int, error) {
	listed, err := t.listedShards(ctx, "")
	if err != nil {
		return 0, err
	}
	ended := map[string]bool{}
	for _, r := range rows {
		if r.Checkpoint == checkpoint.ShardEnd {
			ended[r.Shard] = true
		}
	}
	n := 0
	for id, sh := range listed {
		if ended[id] {
			continue
		}
		ok := true
		for _, p := range uniqueNonEmpty(aws.ToString(sh.ParentShardId), aws.ToString(sh.AdjacentParentShardId)) {
			if _, stillListed := listed[p]; stillListed && !ended[p] {
				ok = false
			}
		}
		if ok {
			n++
		}
	}
	return n, nil
}

// mayTake reports whether this worker may acquire one more lease by its
// share: below the ceiling of the last view, and below MaxLeases. Before
// the first scan only MaxLeases applies.
func (t *Table) mayTake() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	held := 0
	for _, sl := range t.slots {
		if sl.cur != nil && !sl.cur.ended() {
			held++
		}
	}
	if t.cfg.MaxLeases > 0 && held >= t.cfg.MaxLeases {
		return false
	}
	if !t.cfg.Balance || t.view.At.IsZero() {
		return true
	}
	return held < t.view.Ceil
}

// balanceOnce scans the table, wakes the shard-sync pass when this worker
// may take a lease, and asks for a handoff when it is short of its share.
// settled reports that it did nothing and found the table as the previous
// scan did (same workers with the same counts, same workable shards, free
// leases and pending handoffs): the balancer may then scan less often.
func (t *Table) balanceOnce(ctx context.Context, wake func()) (settled bool, err error) {
	rows, err := t.scanView(ctx)
	if err != nil {
		return false, err
	}
	me := t.cfg.WorkerID
	now := t.now()
	v := t.Snapshot()
	counts := map[string]int{}
	for w, n := range v.Workers {
		counts[w] = n
	}
	// free counts the leases no one holds; takeable those of them this
	// worker may take now, all but those it backs off from (retake.go),
	// which it neither wakes the shard-sync passes for nor asks a peer
	// holding them for.
	free, takeable, pending, asked := 0, 0, 0, 0
	mine := counts[me]
	var mayWake, acted bool
	backingOff := t.backingOff(now)
	for _, r := range rows {
		if r.HandoffTo != "" && r.Checkpoint != checkpoint.ShardEnd {
			asked++
		}
		if r.Checkpoint == checkpoint.ShardEnd {
			continue
		}
		reserved := r.Owner == "" && r.HandoffTo != "" && now.Before(r.Timeout)
		switch {
		case reserved && r.HandoffTo == me && backingOff[r.Shard]:
			// Refused until the backoff ends: the reservation lapses, and
			// any worker may take the lease then.
		case reserved && r.HandoffTo == me:
			mine++
			mayWake = true
		case reserved:
		case !r.Live:
			free++
			if !backingOff[r.Shard] {
				takeable++
			}
		case r.HandoffTo == me:
			pending++
			mine++
			counts[r.Owner]--
			mayWake = true
		case r.Owner == me && r.HandoffTo != "" && !v.live(r.HandoffTo):
			// Asked for by a worker that has left: the request would only
			// block others.
			t.clearRequest(r)
			acted = true
		case r.HandoffTo != "":
			// Promised to someone else already.
			counts[r.Owner]--
			if _, ok := counts[r.HandoffTo]; ok {
				counts[r.HandoffTo]++
			}
		}
		if r.Live && r.HandoffTo == me && t.requestStale(r, now) {
			t.withdraw(r)
			acted = true
		}
	}
	if takeable > 0 && mine < v.Ceil {
		mayWake = true
	}
	if mayWake && wake != nil {
		wake()
	}
	summary := scanSummary(v, free, asked)
	unchanged := summary == t.scans.last
	t.scans.last = summary
	settled = unchanged && !mayWake && !acted && pending == 0
	if !t.cfg.Balance || free > 0 || pending > 0 {
		return settled, nil
	}
	for taken := 0; taken < t.cfg.TakesPerPass; taken++ {
		if t.cfg.MaxLeases > 0 && mine >= t.cfg.MaxLeases {
			return settled, nil
		}
		donor, most := "", 0
		for w, n := range counts {
			if w != me && (n > most || n == most && w < donor) {
				donor, most = w, n
			}
		}
		if donor == "" || most-mine < 2 {
			return settled, nil
		}
		var candidates []scanned
		for _, r := range rows {
			if r.Live && r.Owner == donor && r.HandoffTo == "" && r.Checkpoint != checkpoint.ShardEnd && !backingOff[r.Shard] {
				candidates = append(candidates, r)
			}
		}
		if len(candidates) == 0 {
			return settled, nil
		}
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(candidates))))
		pick := candidates[n.Int64()]
		settled = false
		if err := t.requestHandoff(pick); err != nil {
			return false, err
		}
		counts[donor]--
		mine++
		if wake != nil {
			wake()
		}
	}
	return settled, nil
}

// scanSummary is what a scan found that decides whether anything moved:
// the live workers and their lease counts, the workable shards, the free
// leases and the pending handoffs.
func scanSummary(v View, free, asked int) string {
	ws := make([]string, 0, len(v.Workers))
	for w, n := range v.Workers {
		ws = append(ws, fmt.Sprintf("%s=%d", w, n))
	}
	sort.Strings(ws)
	return fmt.Sprintf("%s|workable=%d|free=%d|asked=%d", strings.Join(ws, ","), v.Workable, free, asked)
}

// requestStale tells whether our request on a lease its owner keeps
// renewing has gone unanswered for HandoffTimeout (an owner that does not
// know the protocol, or one stuck draining).
func (t *Table) requestStale(r scanned, now time.Time) bool {
	at, err := time.Parse(time.RFC3339Nano, r.handoffAt)
	return err != nil || now.Sub(at) > t.cfg.HandoffTimeout
}

func (t *Table) requestHandoff(r scanned) error {
	var e expr
	cond := "attribute_not_exists(" + e.name(attrHandoffTo) + ") AND " +
		e.name(attrOwner) + " = " + e.value("owner", r.Owner) + " AND " +
		e.name(attrTimeout) + " = " + e.value("timeout", r.r.timeout)
	_, err := t.update(&dynamodb.UpdateItemInput{
		Key: map[string]types.AttributeValue{attrShardID: s(r.Shard)},
		UpdateExpression: aws.String("SET " + e.name(attrHandoffTo) + " = " + e.value("me", t.cfg.WorkerID) + ", " +
			e.name(attrHandoffAt) + " = " + e.value("at", formatTimeout(t.now()))),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  e.Names,
		ExpressionAttributeValues: e.Values,
	})
	switch {
	case err == nil:
		t.shardLog(r.Shard).Info("lease handoff requested", "owner", r.Owner)
		return nil
	case isConditionFailed(err):
		return nil // renewed or asked for meanwhile: the next pass decides again
	default:
		return fmt.Errorf("lease table %q: request handoff of shard %s: %w", t.cfg.TableName, r.Shard, err)
	}
}

// live reports whether w is a live worker by this view (a census item or
// a live lease).
func (v View) live(w string) bool {
	_, ok := v.Workers[w]
	return ok
}

// clearRequest removes a request from a worker that has left, from a lease
// this worker holds.
func (t *Table) clearRequest(r scanned) {
	var e expr
	_, err := t.update(&dynamodb.UpdateItemInput{
		Key:              map[string]types.AttributeValue{attrShardID: s(r.Shard)},
		UpdateExpression: aws.String("REMOVE " + e.name(attrHandoffTo) + ", " + e.name(attrHandoffAt)),
		ConditionExpression: aws.String(e.name(attrHandoffTo) + " = " + e.value("by", r.HandoffTo) + " AND " +
			e.name(attrOwner) + " = " + e.value("me", t.cfg.WorkerID)),
		ExpressionAttributeNames:  e.Names,
		ExpressionAttributeValues: e.Values,
	})
	if err == nil {
		t.shardLog(r.Shard).Info("handoff request of a departed worker dropped", "by", r.HandoffTo)
	}
}

func (t *Table) withdraw(r scanned) {
	var e expr
	_, err := t.update(&dynamodb.UpdateItemInput{
		Key:              map[string]types.AttributeValue{attrShardID: s(r.Shard)},
		UpdateExpression: aws.String("REMOVE " + e.name(attrHandoffTo) + ", " + e.name(attrHandoffAt)),
		ConditionExpression: aws.String(e.name(attrHandoffTo) + " = " + e.value("me", t.cfg.WorkerID) + " AND " +
			e.name(attrHandoffAt) + " = " + e.value("at", r.handoffAt) + " AND attribute_exists(" + e.name(attrOwner) + ")"),
		ExpressionAttributeNames:  e.Names,
		ExpressionAttributeValues: e.Values,
	})
	if err == nil {
		t.shardLog(r.Shard).Warn("lease handoff request unanswered; withdrawn", "owner", r.Owner, "handoff_timeout", t.cfg.HandoffTimeout)
	}
}

// mayHandTo reports whether a request from worker w is to be honoured: w
// is live by the last scan (before any scan, every request is). An unknown
// w kicks a scan.
func (t *Table) mayHandTo(w string) bool {
	t.mu.Lock()
	ok := t.view.At.IsZero() || t.view.live(w)
	t.mu.Unlock()
	if !ok {
		// Perhaps a worker that joined after this worker's last scan: look
		// again, so that its request is honoured at the next renewal.
		t.kickScan()
	}
	return ok
}

// HandoffRequested returns a channel that is closed when another worker asks
// for this worker's current lease on shardID (seen at a renewal). Like
// Lost, it belongs to one acquisition; with no lease held it never closes.
func (t *Table) HandoffRequested(shardID string) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if sl := t.slots[shardID]; sl != nil && sl.cur != nil {
		return sl.cur.handoff
	}
	return nil
}

// HandOver ends this worker's lease on shardID by reserving it for the
// worker that asked for it. The caller has written the final checkpoint
// and runs nothing more of the shard. The lease counts as lost from here
// (Lost is closed), so the KCL's consumer ends at its next renewal.
func (t *Table) HandOver(shardID string) error {
	sl := t.slot(shardID)
	sl.op.Lock()
	defer sl.op.Unlock()
	l := t.current(sl)
	if l == nil || l.ended() {
		return t.lostErr(shardID, "hand over after the lease ended")
	}
	to := l.handoffTo
	if to == "" {
		return fmt.Errorf("lease table %q: hand over shard %s: no worker asked for it", t.cfg.TableName, shardID)
	}
	if err := t.reserve(shardID, l.timeout, to); err != nil {
		return err
	}
	t.shardLog(shardID).Info("lease handed over", "to", to, "checkpoint", l.checkpoint)
	if t.cfg.OnHandoff != nil {
		t.cfg.OnHandoff("graceful")
	}
	l.end()
	return nil
}

// Abandon ends this worker's lease on shardID at once, fenced on it, so
// that any worker may take the shard at a later shard-sync pass and read it
// again from its checkpoint. The caller has written its last checkpoint and
// runs nothing more of the shard: the record at sequence number stoppedAt
// stopped without an outcome, and only a new consumer may read it again.
// This worker itself takes the shard again only after retakeIn, which
// doubles with every release of the shard until a checkpoint at or past
// the record that stopped is seen (see retake.go); others may take it
// meanwhile. The LeaseTimeout stays: the next owner takes claims for the
// records this worker may have started (PreviousLeaseEnd). The lease counts
// as lost from here (Lost is closed), so the KCL's consumer ends at its
// next renewal. ErrLeaseLost means the lease was gone already (the backoff
// applies all the same); any other error leaves it held, with no backoff.
func (t *Table) Abandon(shardID, stoppedAt string) (retakeIn time.Duration, err error) {
	sl := t.slot(shardID)
	sl.op.Lock()
	defer sl.op.Unlock()
	l := t.current(sl)
	if l == nil || l.ended() {
		return t.backOff(shardID, stoppedAt), t.lostErr(shardID, "release after the lease ended")
	}
	err = t.fenced(l, "release lease of shard "+shardID, func(e *expr) string {
		return "REMOVE " + e.name(attrOwner)
	})
	if errors.Is(err, ErrLeaseLost) {
		return t.backOff(shardID, stoppedAt), err
	}
	if err != nil {
		return 0, err
	}
	// Before the lease ends: the shard-sync pass its end wakes must find
	// the backoff.
	retakeIn = t.backOff(shardID, stoppedAt)
	l.end()
	// No OnAvailable: this worker may not take the shard before retakeIn,
	// and the first shard-sync pass after it finds the shard free (which
	// wakes the passes then).
	t.shardLog(shardID).Info("lease released for the shard to be read again", "checkpoint", l.checkpoint, "retake_in", retakeIn)
	return retakeIn, nil
}

// reserve releases our lease (exact timeout mine) and keeps it for worker to
// until one lease duration from now.
func (t *Table) reserve(shardID, mine, to string) error {
	var e expr
	_, err := t.update(&dynamodb.UpdateItemInput{
		Key: map[string]types.AttributeValue{attrShardID: s(shardID)},
		UpdateExpression: aws.String("SET " + e.name(attrHandoffTo) + " = " + e.value("to", to) + ", " +
			e.name(attrTimeout) + " = " + e.value("until", formatTimeout(t.now().Add(t.cfg.LeaseDuration))) +
			" REMOVE " + e.name(attrOwner)),
		ConditionExpression: aws.String(e.name(attrOwner) + " = " + e.value("me", t.cfg.WorkerID) + " AND " +
			e.name(attrTimeout) + " = " + e.value("mine", mine)),
		ExpressionAttributeNames:  e.Names,
		ExpressionAttributeValues: e.Values,
	})
	if err != nil {
		if isConditionFailed(err) {
			return t.lostErr(shardID, "the lease changed before it could be handed over")
		}
		return fmt.Errorf("lease table %q: hand over shard %s to %q: %w", t.cfg.TableName, shardID, to, err)
	}
	return nil
}

// successor picks the live peer with the fewest leases for a lease this
// stopping worker releases, counting the ones already given; "" when there
// is none.
func (t *Table) successor() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.leaving {
		return ""
	}
	best, fewest := "", 0
	for w, n := range t.view.Workers {
		if w == t.cfg.WorkerID {
			continue
		}
		n += t.given[w]
		if best == "" || n < fewest || n == fewest && w < best {
			best, fewest = w, n
		}
	}
	if best != "" {
		if t.given == nil {
			t.given = map[string]int{}
		}
		t.given[best]++
	}
	return best
}
