package kinesis

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go/middleware"
)

// kclSyncMillis is the KCL's own shard-sync period. Its event loop sleeps
// between half of it and one and a half times it before every pass; at 1 ms
// that sleep is nothing, and syncPacer alone decides when a pass starts.
const kclSyncMillis = 1

// fastSync is the pause between the starts of two passes while there are
// leases to take but the last pass took none (a lease held by a peer that
// is about to expire, a child waiting for its parent), jittered 0.5-1.5x
// as the KCL jitters its own period, so that workers started together do
// not list the shards in step.
const fastSync = 100 * time.Millisecond

// syncPacer decides when the KCL's next shard-sync pass starts. A pass
// lists the shards and reads the lease row of every shard the worker does
// not hold, and the KCL takes at most one new lease per pass:
//
//   - After a pass that acquired a lease, the next one starts at once if a
//     fresh census scan finds this worker alone (solo): with no peer to
//     share with, waiting would only delay the next shard's first delivery
//     (16 shards took 16 waits). With a peer, taking leases back to back
//     would race the balancing, so the pause below applies.
//   - After a pass that saw a shard it could take (wake) but took nothing,
//     the next one starts fastSync after it.
//   - Once a pass has seen no shard it could take, the next one waits until
//     the configured shardSyncInterval has passed since the last: a settled
//     worker costs what the configured interval costs. A wake during that
//     wait brings the start forward to fastSync after the last pass.
//
// The first pass starts at once. The wait happens inside the pass's first
// ListShards call, the only hook the KCL's event loop offers; it ends early
// when the observer stops.
type syncPacer struct {
	interval time.Duration
	stopping <-chan struct{}
	kick     chan struct{}
	// solo rescans the census and reports whether this worker is alone;
	// nil means never.
	solo func(context.Context) bool
	// jitter scales fastSync; nil means a random factor in [0.5, 1.5).
	jitter func() float64

	mu       sync.Mutex
	lastPass time.Time
	busy     bool
	took     bool
}

func newSyncPacer(interval time.Duration, stopping <-chan struct{}, solo func(context.Context) bool) *syncPacer {
	return &syncPacer{interval: interval, stopping: stopping, kick: make(chan struct{}, 1), busy: true, solo: solo}
}

// wake says a shard may be taken: the next pass starts fastSync after the
// last one, and a pass waiting now starts then.
func (s *syncPacer) wake() {
	s.mu.Lock()
	s.busy = true
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// acquired says the current pass took a lease (leases.Config.OnAcquired).
func (s *syncPacer) acquired() {
	s.mu.Lock()
	s.took, s.busy = true, true
	s.mu.Unlock()
}

func (s *syncPacer) fast() time.Duration {
	f := 0.5 + rand.Float64()
	if s.jitter != nil {
		f = s.jitter()
	}
	return time.Duration(float64(fastSync) * f)
}

// passStarting is called as a pass begins; it returns when the pass may
// start, or early if ctx ends or the observer stops.
func (s *syncPacer) passStarting(ctx context.Context) {
	select {
	case <-s.kick: // a wake from the previous pass is already in busy
	default:
	}
	s.mu.Lock()
	busy, took, last := s.busy, s.took, s.lastPass
	s.busy, s.took = false, false
	s.mu.Unlock()
	if d := s.pause(ctx, last, busy, took); d > 0 {
		s.wait(ctx, last, d)
	}
	s.mu.Lock()
	s.lastPass = time.Now()
	s.mu.Unlock()
}

// pause is how long after last the pass may start, given what the passes
// since last saw: a shard to take (busy) and a lease taken (took).
func (s *syncPacer) pause(ctx context.Context, last time.Time, busy, took bool) time.Duration {
	switch {
	case last.IsZero():
		return 0
	case took && s.solo != nil && s.solo(ctx):
		// Not cut short when the observer stops: one scan, bounded by
		// the lease table's call timeout, that the worker's shutdown
		// waits for like the rest of the pass.
		return 0
	case busy:
		return s.fast()
	default:
		return s.interval
	}
}

// wait sleeps until last+d; a wake shortens a longer wait to fastSync after
// last.
func (s *syncPacer) wait(ctx context.Context, last time.Time, d time.Duration) {
	t := time.NewTimer(time.Until(last.Add(d)))
	defer t.Stop()
	kick := s.kick
	for {
		select {
		case <-t.C:
			return
		case <-kick:
			kick = nil // one shortening is enough; busy is set for the next pass
			if f := s.fast(); f < d {
				d = f
				t.Reset(time.Until(last.Add(d)))
			}
		case <-s.stopping:
			return
		case <-ctx.Done():
			return
		}
	}
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
