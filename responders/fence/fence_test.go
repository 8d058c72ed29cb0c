package fence_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sauna-io/sauna/responders/fence"
)

func TestNoFence(t *testing.T) {
	if err := fence.Check(t.Context()); err != nil {
		t.Errorf("Check without a fence = %v", err)
	}
	if _, ok := fence.Until(t.Context()); ok {
		t.Error("Until reports a fence on a bare context")
	}
}

// The fence passes at its time, not a tick later, and its function is read
// at every check: a renewal while a call waits moves it on.
func TestFencePassesAndMovesOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		until := time.Now().Add(time.Second)
		ctx := fence.With(t.Context(), func() time.Time { return until })
		if err := fence.Check(ctx); err != nil {
			t.Fatalf("Check before the fence = %v", err)
		}
		time.Sleep(999 * time.Millisecond)
		if err := fence.Check(ctx); err != nil {
			t.Fatalf("Check 1 ms before the fence = %v", err)
		}
		time.Sleep(time.Millisecond)
		err := fence.Check(ctx)
		var pe *fence.PassedError
		if !errors.Is(err, fence.ErrPassed) || !errors.As(err, &pe) || !pe.Fence.Equal(until) {
			t.Fatalf("Check at the fence = %v, want a *PassedError at %v", err, until)
		}

		// Renewed meanwhile.
		until = time.Now().Add(time.Second)
		if err := fence.Check(ctx); err != nil {
			t.Errorf("Check after a renewal = %v", err)
		}
		time.Sleep(2 * time.Second)
		if err := fence.Check(ctx); !errors.Is(err, fence.ErrPassed) {
			t.Errorf("Check long after the renewed fence = %v", err)
		}
	})
}

// Fences nest: the earliest is in force, whichever was set last.
func TestEarliestFenceApplies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		near, far := now.Add(time.Second), now.Add(time.Minute)
		for _, tc := range []struct {
			name         string
			outer, inner time.Time
		}{
			{"outer earlier", near, far},
			{"inner earlier", far, near},
		} {
			ctx := fence.With(context.Background(), func() time.Time { return tc.outer })
			ctx = fence.With(ctx, func() time.Time { return tc.inner })
			if got, ok := fence.Until(ctx); !ok || !got.Equal(near) {
				t.Errorf("%s: Until = %v, %v; want %v", tc.name, got, ok, near)
			}
		}
	})
}

// No ownership at all is a fence long passed.
func TestZeroFenceHasPassed(t *testing.T) {
	ctx := fence.With(t.Context(), func() time.Time { return time.Time{} })
	err := fence.Check(ctx)
	if !errors.Is(err, fence.ErrPassed) {
		t.Fatalf("Check with a zero fence = %v", err)
	}
	if msg := err.Error(); msg != "ownership fence passed: the lease or claim is no longer held, nothing was sent" {
		t.Errorf("message %q", msg)
	}
}

// A fence known only by the wall clock (read from another host, say) is
// judged by the wall clock.
func TestWallClockFence(t *testing.T) {
	wall := time.Now().Round(0)
	if err := fence.Check(fence.With(t.Context(), func() time.Time { return wall.Add(time.Hour) })); err != nil {
		t.Errorf("wall-clock fence an hour ahead: %v", err)
	}
	if err := fence.Check(fence.With(t.Context(), func() time.Time { return wall.Add(-time.Millisecond) })); !errors.Is(err, fence.ErrPassed) {
		t.Errorf("wall-clock fence just passed: %v", err)
	}
}

// A fenced context is its parent in every other respect: the parent's
// values, its end, and contexts derived from it end with it.
func TestFencedKeepsTheParent(t *testing.T) {
	type other struct{}
	parent, cancel := context.WithCancel(context.WithValue(t.Context(), other{}, "kept"))
	ctx := fence.With(parent, func() time.Time { return time.Now().Add(time.Hour) })
	if v := ctx.Value(other{}); v != "kept" {
		t.Errorf("parent's value = %v", v)
	}
	child, stop := context.WithCancel(ctx)
	defer stop()
	cancel()
	select {
	case <-child.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a context derived from a fenced one did not end with its parent")
	}
	if ctx.Err() != context.Canceled {
		t.Errorf("Err = %v, want Canceled", ctx.Err())
	}
}

// CheckAt judges the fence as of the time it is given.
func TestCheckAt(t *testing.T) {
	until := time.Now().Add(time.Minute)
	ctx := fence.With(t.Context(), func() time.Time { return until })
	if err := fence.CheckAt(ctx, until.Add(-time.Second)); err != nil {
		t.Errorf("CheckAt before the fence = %v", err)
	}
	var pe *fence.PassedError
	if err := fence.CheckAt(ctx, until); !errors.As(err, &pe) || !pe.At.Equal(until) {
		t.Errorf("CheckAt at the fence = %v, want a *PassedError at %v", err, until)
	}
	if err := fence.CheckAt(t.Context(), until); err != nil {
		t.Errorf("CheckAt without a fence = %v", err)
	}
}
