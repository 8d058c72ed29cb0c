package admin

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Gate is the pause switch of the admin API: POST /pause closes it and POST
// /resume opens it. The record processor calls Wait before it takes a new
// record; commands already taken run to their outcome and are checkpointed as
// usual, so a pause loses nothing and a resume continues where intake
// stopped.
//
// The zero value is not usable; build one with NewGate.
type Gate struct {
	// paused mirrors the state for Wait's lock-free fast path: an open gate
	// is the normal case and is checked once per record.
	paused atomic.Bool

	mu     sync.Mutex
	since  time.Time
	resume chan struct{} // closed and replaced on every resume
	now    func() time.Time
}

// NewGate returns an open gate.
func NewGate() *Gate {
	return &Gate{resume: make(chan struct{}), now: time.Now}
}

// Pause closes the gate. It reports whether the gate was open.
func (g *Gate) Pause() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused.Load() {
		return false
	}
	g.since = g.now()
	g.paused.Store(true)
	return true
}

// Resume opens the gate and releases every waiter. It reports whether the
// gate was closed.
func (g *Gate) Resume() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.paused.Load() {
		return false
	}
	g.paused.Store(false)
	g.since = time.Time{}
	close(g.resume)
	g.resume = make(chan struct{})
	return true
}

// Paused reports whether the gate is closed.
func (g *Gate) Paused() bool { return g.paused.Load() }

// PausedSince returns when the gate was closed, or zero when it is open.
func (g *Gate) PausedSince() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.since
}

// Wait returns nil at once while the gate is open; while it is closed, it
// blocks until it opens (nil) or ctx ends (ctx's error).
func (g *Gate) Wait(ctx context.Context) error {
	for {
		if !g.paused.Load() {
			return nil
		}
		g.mu.Lock()
		paused, ch := g.paused.Load(), g.resume
		g.mu.Unlock()
		if !paused {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
