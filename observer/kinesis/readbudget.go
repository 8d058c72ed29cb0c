package kinesis

import (
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/worker"
)

// Kinesis serves a shard at most 2 MB/s through GetRecords; a read of up to
// 10 MB is allowed and the shard's next reads are then refused until the
// rate is back within the limit. The KCL's polling consumer keeps each
// shard within that on the client: a byte budget that starts at 10 MB,
// grows by 2 MB each second (never above 10 MB), and is charged, right
// before each read, the bytes of the read before. A read whose budget is
// below one byte is not made: the shard sleeps instead, for the previous
// read's size at 2 MB/s rounded up to whole seconds (3 s after a 10,000
// record batch of 480-byte commands), then tries again. Those whole seconds
// are most of what a shard that is behind by more than the burst loses:
// the budget is usually short by a fraction of one read.
//
// readBudget follows the KCL's budget of each shard from the reads it sees
// (the aggregate guard names their shards), so that the processor holds a
// shard's next read until the KCL's check will pass (wait) instead of
// letting the KCL sleep whole seconds. It never makes a shard read faster
// than the KCL lets it: it only waits, and only while the KCL would refuse
// the read.
type readBudget struct {
	mu     sync.Mutex
	shards map[string]*shardBudget
}

// The KCL's own constants, so that the budget cannot drift from the KCL's.
const (
	readBurstBytes     = worker.MaxBytes
	readBytesPerSecond = worker.MaxBytesPerSecond
)

// readBudgetSlack is added to every wait: the KCL checks its budget a
// moment after the processor returns, and its clock readings differ from
// the budget's by as much; a check that still fails costs a sleep of
// seconds, this one millisecond per wait of some hundreds.
const readBudgetSlack = 20 * time.Millisecond

// shardBudget is the KCL's budget of one shard: rem bytes as of last (zero
// until the first read answered), and the bytes of the last read, charged
// before the next one.
type shardBudget struct {
	rem  float64
	last time.Time
	read int
}

func newReadBudget() *readBudget {
	return &readBudget{shards: map[string]*shardBudget{}}
}

// started is a new KCL consumer of shard taking its iterator: its budget
// starts full.
func (b *readBudget) started(shard string) {
	if b == nil || shard == "" {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.shards[shard] = &shardBudget{rem: readBurstBytes}
}

// reading is the KCL making a read of shard at now: its check passed and
// the previous read was charged.
func (b *readBudget) reading(shard string, now time.Time) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.shards[shard]
	if s == nil || s.read == 0 {
		// The KCL checks nothing before its first read, nor after a read
		// that returned no bytes.
		return
	}
	s.rem = s.at(now) - float64(s.read)
	s.last = now
}

// answered is a read of shard returning recs at now.
func (b *readBudget) answered(shard string, recs []types.Record, now time.Time) {
	if b == nil {
		return
	}
	n := 0
	for i := range recs {
		n += len(recs[i].Data)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.shards[shard]
	if s == nil {
		return
	}
	s.read = n
	if s.last.IsZero() {
		s.last = now
	}
}

// forget drops shard once this worker no longer reads it.
func (b *readBudget) forget(shard string) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.shards, shard)
}

// wait is how long from now the KCL's next read of shard would be refused
// by its budget: zero when it would not be, or the shard is unknown.
func (b *readBudget) wait(shard string, now time.Time) time.Duration {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.shards[shard]
	if s == nil || s.read == 0 || s.last.IsZero() {
		return 0
	}
	short := 1 - s.at(now)
	if short <= 0 {
		return 0
	}
	return time.Duration(short/readBytesPerSecond*float64(time.Second)) + readBudgetSlack
}

// at is the budget at now before the next charge: grown since last, capped
// at the burst.
func (s *shardBudget) at(now time.Time) float64 {
	return min(readBurstBytes, s.rem+now.Sub(s.last).Seconds()*readBytesPerSecond)
}
