package command

import (
	"context"
	"time"

	"github.com/sauna-io/sauna/observer/backoff"
)

// Lease is the hold an observer has on the source of its records (a
// Kinesis shard lease). No command starts a side effect once the source may
// belong to another worker.
type Lease struct {
	// Lost is closed once the lease is known lost.
	Lost <-chan struct{}
	// Fence is when this worker must stop starting side effects under the
	// lease, by its own clock; zero when the lease is not held.
	Fence func() time.Time
}

// Await waits while the lease is past its fence by this worker's clock but
// not known lost: a renewal that comes late (a loaded machine, a slow
// DynamoDB) moves the fence on, and the worker carries on instead of giving
// up the source. It returns false once the lease is not held or ctx ends;
// the owner of a lease whose renewal fails ends it, so the wait is bounded.
func (l Lease) Await(ctx context.Context) bool {
	for attempt := 1; ; attempt++ {
		f := l.Fence()
		if time.Now().Before(f) {
			return true
		}
		if f.IsZero() || !l.Sleep(ctx, backoff.Policy{First: firstBackoff, Max: time.Second}.Delay(attempt)) {
			return false
		}
	}
}

// Sleep waits for d unless ctx ends or the lease is lost first.
func (l Lease) Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-l.Lost:
		return false
	}
}

// Context derives a context from parent that also ends when the lease is
// lost: once another worker owns the source, our side effects must stop.
func (l Lease) Context(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		select {
		case <-l.Lost:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Done reports whether ctx ended or the lease is lost.
func (l Lease) Done(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return true
	case <-l.Lost:
		return true
	default:
		return false
	}
}
