package kinesis

import (
	"context"
	"testing"
	"time"
)

// returnsWithin reports whether passStarting returned before limit. The
// limits are far apart from the waits they tell apart (an hour), so the
// test does not depend on the machine's speed.
func returnsWithin(p *syncPacer, limit time.Duration, before func()) bool {
	done := make(chan struct{})
	go func() {
		p.passStarting(context.Background())
		close(done)
	}()
	if before != nil {
		before()
	}
	select {
	case <-done:
		return true
	case <-time.After(limit):
		return false
	}
}

func TestSyncPacerWaitsOnlyWhenSettled(t *testing.T) {
	stopping := make(chan struct{})
	defer close(stopping) // ends the wait left running below
	p := newSyncPacer(time.Hour, stopping)

	if !returnsWithin(p, 10*time.Second, nil) {
		t.Fatal("the first pass waited; a starting worker must look for leases at once")
	}
	// Nothing was available in that pass: the next one waits for the interval.
	if returnsWithin(p, 100*time.Millisecond, nil) {
		t.Fatal("a settled pass did not wait for the interval")
	}
}

func TestSyncPacerWakeEndsTheWait(t *testing.T) {
	p := newSyncPacer(time.Hour, make(chan struct{}))
	p.passStarting(context.Background()) // first pass: busy

	// A pass that saw a takeable shard makes the next pass start at once.
	p.wake()
	if !returnsWithin(p, 10*time.Second, nil) {
		t.Fatal("the pass after a wake waited")
	}
	// A wake during a settled wait ends it.
	if !returnsWithin(p, 10*time.Second, func() { time.Sleep(20 * time.Millisecond); p.wake() }) {
		t.Fatal("wake did not end a settled wait")
	}
}

func TestSyncPacerStopEndsTheWait(t *testing.T) {
	stopping := make(chan struct{})
	p := newSyncPacer(time.Hour, stopping)
	p.passStarting(context.Background())
	if !returnsWithin(p, 10*time.Second, func() { close(stopping) }) {
		t.Fatal("stopping did not end a settled wait")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p2 := newSyncPacer(time.Hour, make(chan struct{}))
	p2.passStarting(ctx)
	done := make(chan struct{})
	go func() { p2.passStarting(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled call context did not end the wait")
	}
}
