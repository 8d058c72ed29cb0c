package backoff_test

import (
	"context"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sauna-io/sauna/observer/backoff"
)

const ms = time.Millisecond

// bounds draws many delays and returns the smallest and the largest.
func bounds(p backoff.Policy, attempt int) (lo, hi time.Duration) {
	lo, hi = time.Duration(math.MaxInt64), 0
	for range 2000 {
		d := p.Delay(attempt)
		lo, hi = min(lo, d), max(hi, d)
	}
	return lo, hi
}

func TestDelayGrowsBetweenFloorAndCeiling(t *testing.T) {
	tests := []struct {
		name    string
		p       backoff.Policy
		attempt int
		// The delays must lie in [lo, hi] and, being drawn uniformly, come
		// within a tenth of the range of both ends.
		lo, hi time.Duration
	}{
		{"first attempt", backoff.Policy{First: 200 * ms, Max: 5 * time.Second}, 1, 0, 200 * ms},
		{"doubles per attempt", backoff.Policy{First: 200 * ms, Max: 5 * time.Second}, 3, 0, 800 * ms},
		{"capped by Max", backoff.Policy{First: 200 * ms, Max: 5 * time.Second}, 10, 0, 5 * time.Second},
		{"floor raises the low end", backoff.Policy{First: 200 * ms, Floor: time.Second, Max: 30 * time.Second}, 5, time.Second, 3200 * ms},
		{"no First: Max from the start", backoff.Policy{Max: time.Second}, 1, 0, time.Second},
		{"huge attempt numbers do not overflow", backoff.Policy{First: time.Second, Max: time.Minute}, math.MaxInt, 0, time.Minute},
		{"no Max: doubling without overflow", backoff.Policy{First: time.Hour}, 200, 0, time.Duration(math.MaxInt64)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lo, hi := bounds(tt.p, tt.attempt)
			if lo < tt.lo || hi > tt.hi {
				t.Fatalf("delays in [%v, %v], want within [%v, %v]", lo, hi, tt.lo, tt.hi)
			}
			if tt.hi == time.Duration(math.MaxInt64) {
				if hi < time.Hour {
					t.Errorf("largest delay %v did not grow past First", hi)
				}
				return
			}
			slack := (tt.hi - tt.lo) / 10
			if lo > tt.lo+slack || hi < tt.hi-slack {
				t.Errorf("delays in [%v, %v]: not spread over [%v, %v]", lo, hi, tt.lo, tt.hi)
			}
		})
	}
}

// A floor above the ceiling wins: a vendor's Retry-After is honoured even
// on a first retry whose ceiling is much shorter.
func TestFloorAboveCeilingWins(t *testing.T) {
	p := backoff.Policy{First: 200 * ms, Floor: 7 * time.Second, Max: 5 * time.Second}
	for attempt := 1; attempt < 20; attempt++ {
		if d := p.Delay(attempt); d != 7*time.Second {
			t.Fatalf("Delay(%d) = %v, want the floor 7s", attempt, d)
		}
	}
	if d := (backoff.Policy{First: 50 * ms, Floor: 50 * ms, Max: time.Second}).Delay(1); d != 50*ms {
		t.Errorf("first delay with Floor = First: %v, want exactly 50ms", d)
	}
}

func TestDelayIsRandom(t *testing.T) {
	p := backoff.Policy{First: 500 * ms, Max: 8 * time.Second}
	distinct := map[time.Duration]bool{}
	for range 50 {
		distinct[p.Delay(1)] = true
	}
	if len(distinct) < 10 {
		t.Errorf("%d distinct delays out of 50: the jitter is not random", len(distinct))
	}
}

func TestSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		if !backoff.Sleep(t.Context(), 3*time.Second) {
			t.Error("Sleep with a live context returned false")
		}
		if got := time.Since(start); got != 3*time.Second {
			t.Errorf("Sleep(3s) took %v", got)
		}

		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(time.Second, cancel)
		start = time.Now()
		if backoff.Sleep(ctx, time.Hour) {
			t.Error("Sleep cut short by its context returned true")
		}
		if got := time.Since(start); got != time.Second {
			t.Errorf("Sleep returned %v after the start, want 1s (when its context ended)", got)
		}
		if backoff.Sleep(ctx, 0) {
			t.Error("Sleep(0) on an ended context returned true")
		}
		if !backoff.Sleep(t.Context(), 0) {
			t.Error("Sleep(0) on a live context returned false")
		}
	})
}
