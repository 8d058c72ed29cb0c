package admin

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestGateOpenDoesNotWait(t *testing.T) {
	g := NewGate()
	if g.Paused() {
		t.Fatal("a new gate is paused")
	}
	if err := g.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = g.Wait(context.Background()) }); n != 0 {
		t.Errorf("Wait on an open gate allocates %v times", n)
	}
}

func TestGatePauseBlocksUntilResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := NewGate()
		if !g.Pause() {
			t.Fatal("Pause of an open gate reported no change")
		}
		if g.Pause() {
			t.Error("a second Pause reported a change")
		}
		if since := g.PausedSince(); !since.Equal(time.Now()) {
			t.Errorf("paused since %v, want now %v", since, time.Now())
		}
		const waiters = 3
		released := make(chan error, waiters)
		for range waiters {
			go func() { released <- g.Wait(context.Background()) }()
		}
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := len(released); n != 0 {
			t.Fatalf("%d waiters passed a closed gate", n)
		}
		if !g.Resume() {
			t.Fatal("Resume of a closed gate reported no change")
		}
		synctest.Wait()
		for range waiters {
			if err := <-released; err != nil {
				t.Errorf("waiter: %v", err)
			}
		}
		if g.Resume() || g.Paused() || !g.PausedSince().IsZero() {
			t.Error("the gate is not plainly open after Resume")
		}

		// Paused again: waiting is bounded by the caller's context (the
		// observer's stop).
		g.Pause()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := g.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Wait with an ending context: %v", err)
		}
	})
}
