// Package testclock is a settable clock for tests: the code under test reads
// Now, the test moves time on with Add, so expiries and timestamps are
// decided by the test rather than by the machine's speed.
package testclock

import (
	"sync"
	"time"
)

// Clock is safe for concurrent use; the zero value stands at the zero time.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock standing at t.
func New(t time.Time) *Clock { return &Clock{now: t} }

// Now is the clock's time; pass the method value where a func() time.Time is
// wanted.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Add moves the clock on by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
