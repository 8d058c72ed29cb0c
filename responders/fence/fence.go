// Package fence carries, on a context, the moment after which a worker may
// no longer start a side effect for the work it was given: by then the
// ownership it holds (a shard lease, a command claim) may have lapsed and
// another worker may be doing the same work.
//
// The observer sets the fence; whoever sends something checks it as late as
// it can, ideally just before the bytes leave (responders/delivery checks it
// on the connection's write). Neither side needs to know what the fence
// stands for.
//
// A fence is a function evaluated at every check, so that ownership renewed
// while a call waits (a lease renewal) moves it on. It passes when either
// clock says so: the monotonic clock, which keeps counting while the process
// is frozen (SIGSTOP, a paused VM) and ignores wall-clock steps, or the wall
// clock, which other hosts use to decide that the ownership lapsed and which
// moves on during a system suspend that the monotonic clock does not count.
package fence

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrPassed is matched (errors.Is) by the error of Check once the fence has
// passed. Nothing was sent: the caller may try again once its ownership is
// renewed, or must leave the work to the next owner.
var ErrPassed = errors.New("ownership fence passed")

// PassedError is Check's error: the fence in force and the time of the check.
type PassedError struct {
	Fence, At time.Time
}

func (e *PassedError) Error() string {
	if e.Fence.IsZero() {
		return "ownership fence passed: the lease or claim is no longer held, nothing was sent"
	}
	return fmt.Sprintf("ownership fence passed %s ago: the lease or claim may have lapsed, nothing was sent",
		e.At.Sub(e.Fence).Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrPassed) true.
func (e *PassedError) Is(target error) bool { return target == ErrPassed }

type key struct{}

type fences struct {
	outer *fences
	until func() time.Time
}

// With returns a copy of ctx fenced at until(), which is called at every
// check; a zero time means no ownership at all. A fence already on ctx still
// applies: the earliest one is in force.
func With(ctx context.Context, until func() time.Time) context.Context {
	outer, _ := ctx.Value(key{}).(*fences)
	return &fenced{Context: ctx, fences: fences{outer: outer, until: until}}
}

// fenced is ctx carrying its fences, in one allocation where
// context.WithValue and the fences would take two: an observer fences every
// attempt of every command.
type fenced struct {
	context.Context
	fences fences
}

func (c *fenced) Value(k any) any {
	if k == (key{}) {
		return &c.fences
	}
	return c.Context.Value(k)
}

// Until returns the fence in force on ctx, and false when ctx has none.
func Until(ctx context.Context) (time.Time, bool) {
	f, _ := ctx.Value(key{}).(*fences)
	if f == nil {
		return time.Time{}, false
	}
	t := f.until()
	for o := f.outer; o != nil; o = o.outer {
		if u := o.until(); u.Before(t) {
			t = u
		}
	}
	return t, true
}

// Check returns nil when ctx has no fence or its fence lies ahead by both
// clocks, and a *PassedError otherwise.
func Check(ctx context.Context) error {
	t, ok := Until(ctx)
	if !ok {
		return nil
	}
	return check(t, time.Now())
}

// CheckAt is Check as of now, a reading of time.Now the caller has just
// taken (to time a call from the same moment).
func CheckAt(ctx context.Context, now time.Time) error {
	t, ok := Until(ctx)
	if !ok {
		return nil
	}
	return check(t, now)
}

func check(t, now time.Time) error {
	if passed(t, now) {
		return &PassedError{Fence: t, At: now}
	}
	return nil
}

// passed reports whether fence t has passed at now, by the monotonic clock
// (when both carry a reading) or by the wall clock.
func passed(t, now time.Time) bool {
	return t.IsZero() || !now.Before(t) || !now.Round(0).Before(t.Round(0))
}

// Margin is how long before an ownership of duration d runs out by this
// worker's clock the worker stops sending under it: room for another host,
// which judges the expiry by its own wall clock, to be ahead of ours. A fifth
// of the duration, at most 5 s.
func Margin(d time.Duration) time.Duration { return min(d/5, 5*time.Second) }
