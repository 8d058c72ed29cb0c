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
	p := newSyncPacer(time.Hour, stopping, nil)

	if !returnsWithin(p, 10*time.Second, nil) {
		t.Fatal("the first pass waited; a starting worker must look for leases at once")
	}
	// Nothing was available in that pass: the next one waits for the interval.
	if returnsWithin(p, 100*time.Millisecond, nil) {
		t.Fatal("a settled pass did not wait for the interval")
	}
}

func TestSyncPacerWakeEndsTheWait(t *testing.T) {
	p := newSyncPacer(time.Hour, make(chan struct{}), nil)
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
	p := newSyncPacer(time.Hour, stopping, nil)
	p.passStarting(context.Background())
	if !returnsWithin(p, 10*time.Second, func() { close(stopping) }) {
		t.Fatal("stopping did not end a settled wait")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p2 := newSyncPacer(time.Hour, make(chan struct{}), nil)
	p2.passStarting(ctx)
	done := make(chan struct{})
	go func() { p2.passStarting(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled call context did not end the wait")
	}
}

// What a pass waits for after the previous one, by what the passes saw:
// nothing waits after a lease taken by a worker the census finds alone.
func TestSyncPacerPause(t *testing.T) {
	const interval = time.Hour
	last := time.Now()
	tests := []struct {
		name       string
		last       time.Time
		busy, took bool
		solo       func(context.Context) bool // nil: no census check
		want       time.Duration
		wantAsked  bool
	}{
		{name: "first pass", busy: true, want: 0},
		{name: "settled", last: last, want: interval},
		{name: "a shard to take", last: last, busy: true, want: fastSync},
		{name: "a lease taken, alone", last: last, busy: true, took: true,
			solo: func(context.Context) bool { return true }, want: 0, wantAsked: true},
		{name: "a lease taken, a peer in the census", last: last, busy: true, took: true,
			solo: func(context.Context) bool { return false }, want: fastSync, wantAsked: true},
		{name: "a lease taken, no census check", last: last, busy: true, took: true, want: fastSync},
		{name: "a shard to take, alone, nothing taken", last: last, busy: true,
			solo: func(context.Context) bool { return true }, want: fastSync},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			asked := false
			var solo func(context.Context) bool
			if tc.solo != nil {
				solo = func(ctx context.Context) bool { asked = true; return tc.solo(ctx) }
			}
			p := newSyncPacer(interval, make(chan struct{}), solo)
			p.jitter = func() float64 { return 1 }
			if got := p.pause(context.Background(), tc.last, tc.busy, tc.took); got != tc.want {
				t.Errorf("pause = %s, want %s", got, tc.want)
			}
			if asked != tc.wantAsked {
				t.Errorf("census checked: %v, want %v", asked, tc.wantAsked)
			}
		})
	}
}

// acquired is what the lease table reports within a pass; the pass after
// reads it once.
func TestSyncPacerAcquiredCountsForOnePass(t *testing.T) {
	solos := 0
	p := newSyncPacer(time.Hour, make(chan struct{}), func(context.Context) bool { solos++; return true })
	p.passStarting(context.Background()) // first pass
	p.acquired()
	p.passStarting(context.Background()) // at once: a lease was taken and the worker is alone
	if solos != 1 {
		t.Fatalf("census checked %d times after one acquisition, want 1", solos)
	}
	p.mu.Lock()
	busy, took := p.busy, p.took
	p.mu.Unlock()
	if busy || took {
		t.Errorf("after the pass started: busy %v, took %v; want both cleared for the next pass", busy, took)
	}
}
