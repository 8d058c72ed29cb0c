package leases

import (
	"time"

	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
)

// Retake backoff. A shard released after a record stopped without an
// outcome (Abandon) is read again from its checkpoint by its next owner.
// When the cause persists (a dead letter the stream refuses, a claim taken
// over at every delivery), a worker that took the shard back at its next
// shard-sync pass would fail, drain and release it again in a tight loop:
// a lease write, a re-read of the shard's records and a WARN line every
// pass. So this worker does not take a shard it released that way again
// until a wait has passed that doubles with each release of the shard from
// RetakeBackoff up to RetakeBackoffMax. The wait ends early, and the count
// starts again, once the shard's checkpoint is seen at or past the record
// that stopped (SHARD_END included): whoever read it, the record was
// settled. It lives in this Table alone, for this run of the observer: a
// restarted worker starts afresh, and other workers are not told. They may
// take the shard meanwhile, as the lease protocol lets them; this worker
// neither counts the shard as one it could take (no wake, no fast
// shard-sync passes) nor asks a peer holding it to hand it over.

// Defaults of the retake backoff.
const (
	DefaultRetakeBackoff = 2 * time.Second
	// DefaultRetakeBackoffMax is where the doubling stops: at it, a shard
	// whose record keeps stopping costs one release, one re-read of its
	// records and one WARN line a minute, and a cause that was fixed (a
	// permission, a stream) is picked up within a minute.
	DefaultRetakeBackoffMax = time.Minute
)

// retake is the backoff of one shard this worker released after a record
// stopped without an outcome. Guarded by Table.mu.
type retake struct {
	// at is the sequence number of the record that stopped, the last
	// time: a checkpoint at or past it ends the backoff.
	at string
	// releases counts the releases since the shard last made progress.
	releases int
	// until is when this worker may take the shard again (Table.now).
	until time.Time
}

// retakeDelay is the wait after the nth release without progress: base,
// doubled with each further one, capped at ceiling.
func retakeDelay(n int, base, ceiling time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}

// passed reports whether checkpoint cp is at or past sequence number at:
// the record at at was settled. What is not a sequence number (the KCL's
// TRIM_HORIZON, LATEST) is no progress.
func passed(cp, at string) bool {
	if cp == checkpoint.ShardEnd {
		return true
	}
	return isDecimal(cp) && !later(at, cp)
}

// backOff records a release of shardID after the record at stopped, and
// returns the wait before this worker takes the shard again.
func (t *Table) backOff(shardID, at string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.retakes == nil {
		t.retakes = map[string]*retake{}
	}
	r := t.retakes[shardID]
	if r == nil {
		r = &retake{}
		t.retakes[shardID] = r
	}
	r.at = at
	r.releases++
	d := retakeDelay(r.releases, t.cfg.RetakeBackoff, t.cfg.RetakeBackoffMax)
	r.until = t.now().Add(d)
	return d
}

// retakeIn is how long this worker still waits before it takes shardID
// again (zero: it may now).
func (t *Table) retakeIn(shardID string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.retakeInLocked(shardID, t.now())
}

// retakeInLocked is retakeIn with Table.mu held.
func (t *Table) retakeInLocked(shardID string, now time.Time) time.Duration {
	r := t.retakes[shardID]
	if r == nil || !now.Before(r.until) {
		return 0
	}
	return r.until.Sub(now)
}

// progressed tells the backoff of shardID that its stored checkpoint is
// cp: at or past the record that stopped, the backoff ends and its count
// starts again.
func (t *Table) progressed(shardID, cp string) {
	t.mu.Lock()
	r := t.retakes[shardID]
	if r == nil || !passed(cp, r.at) {
		t.mu.Unlock()
		return
	}
	delete(t.retakes, shardID)
	t.mu.Unlock()
	t.shardLog(shardID).Info("shard checkpointed past the record that stopped; its retake backoff is reset",
		"checkpoint", cp, "seq", r.at, "releases", r.releases)
}

// backingOff is the set of shards this worker backs off from at now.
func (t *Table) backingOff(now time.Time) map[string]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	var set map[string]bool
	for id := range t.retakes {
		if t.retakeInLocked(id, now) > 0 {
			if set == nil {
				set = map[string]bool{}
			}
			set[id] = true
		}
	}
	return set
}
