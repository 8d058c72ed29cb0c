// Package backoff spaces the retries of every retry loop in sauna:
// exponential growth with full jitter, between a floor and a ceiling.
//
// Full jitter (a uniformly random wait up to a growing ceiling) spreads the
// retries of many callers that failed together, a vendor outage or a
// throttled stream, instead of letting them return in lockstep; the floor
// keeps a retry from coming sooner than someone asked (a vendor's
// Retry-After) or than the caller's first delay.
package backoff

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

// Policy shapes the waits of one retry loop.
type Policy struct {
	// First is the longest wait before the first retry; the limit doubles
	// with each further attempt. Zero means Max from the start.
	First time.Duration
	// Floor is the shortest wait. It wins over Max when it is longer.
	Floor time.Duration
	// Max caps the limit. Zero means no cap beyond First's doubling.
	Max time.Duration
}

// Delay is the wait after failed attempt number attempt (1 for the first
// failure): uniformly random between Floor and min(Max, First*2^(attempt-1)),
// or Floor when that is no shorter. A zero Policy never waits.
func (p Policy) Delay(attempt int) time.Duration {
	ceiling := p.First
	if ceiling <= 0 {
		ceiling = p.Max
	}
	for n := 1; n < attempt && ceiling > 0 && (p.Max <= 0 || ceiling < p.Max) && ceiling <= math.MaxInt64/2; n++ {
		ceiling *= 2
	}
	if p.Max > 0 {
		ceiling = min(ceiling, p.Max)
	}
	floor := max(p.Floor, 0)
	if ceiling <= floor {
		return floor
	}
	return floor + rand.N(ceiling-floor)
}

// Sleep waits d, or less if ctx ends first; it reports whether the whole
// wait passed with ctx still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return ctx.Err() == nil
	case <-ctx.Done():
		return false
	}
}
