package kinesis

import (
	"context"
	"sync"
	"time"

	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go/middleware"
)

// fastSyncMillis is the KCL's shard-sync period (jittered 0.5-1.5x) while
// there are leases to take. The KCL takes at most one new lease per pass, so
// the pass period bounds how fast a worker picks up a stream: 16 shards take
// about 16 passes.
const fastSyncMillis = 100

// syncPacer makes the KCL's shard-sync passes fast only while they have
// work. A pass lists the shards and reads the lease row of every shard the
// worker does not hold; at the fast period that would be 10 ListShards calls
// and 10 reads per foreign shard every second for ever. So once a pass has
// seen no shard it could take, the next one waits until the configured
// shardSyncInterval has passed since the last: a settled worker costs what
// the configured interval costs, a starting worker or one with a peer's
// expired leases to take runs at the fast period.
//
// The wait happens inside the pass's first ListShards call, the only hook
// the KCL's event loop offers; it ends early when the observer stops or when
// something locally frees a shard.
type syncPacer struct {
	interval time.Duration
	stopping <-chan struct{}
	kick     chan struct{}

	mu       sync.Mutex
	lastPass time.Time
	busy     bool
}

func newSyncPacer(interval time.Duration, stopping <-chan struct{}) *syncPacer {
	return &syncPacer{interval: interval, stopping: stopping, kick: make(chan struct{}, 1), busy: true}
}

// wake says a shard may be taken: the next pass starts without waiting for
// the interval, and a pass waiting now starts at once.
func (s *syncPacer) wake() {
	s.mu.Lock()
	s.busy = true
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// passStarting is called as a pass begins; it waits while the worker is
// settled and returns early if ctx ends.
func (s *syncPacer) passStarting(ctx context.Context) {
	select {
	case <-s.kick: // a wake from the previous pass is already in busy
	default:
	}
	s.mu.Lock()
	busy, last := s.busy, s.lastPass
	s.busy = false
	s.mu.Unlock()
	if !busy {
		if wait := time.Until(last.Add(s.interval)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-s.kick:
			case <-s.stopping:
			case <-ctx.Done():
			}
			t.Stop()
		}
	}
	s.mu.Lock()
	s.lastPass = time.Now()
	s.mu.Unlock()
}

// apply installs the pacer on the KCL's Kinesis client. Only a pass's first
// ListShards page carries the stream name; later pages go straight through.
func (s *syncPacer) apply(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("SaunaSyncPacer",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			if req, ok := in.Parameters.(*kds.ListShardsInput); ok && req.StreamName != nil {
				s.passStarting(ctx)
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}
