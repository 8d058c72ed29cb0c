package delivery

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/sauna-io/sauna/responders"
)

// Limit is the request rate allowed towards one destination: Rate requests
// per second on average, in bursts of up to Burst.
type Limit struct {
	Rate  rate.Limit
	Burst int
}

// Unlimited lets every request through at once.
var Unlimited = Limit{Rate: rate.Inf, Burst: 1}

// PerSecond returns a Limit of n requests per second in bursts of burst.
func PerSecond(n float64, burst int) Limit { return Limit{Rate: rate.Limit(n), Burst: burst} }

func (l Limit) validate() error {
	if l.Rate == rate.Inf {
		return nil
	}
	if !(l.Rate > 0) || math.IsInf(float64(l.Rate), 0) {
		return fmt.Errorf("rate limit must be greater than 0 requests per second, got %v", float64(l.Rate))
	}
	if l.Burst < 1 {
		return fmt.Errorf("rate limit burst must be at least 1, got %d", l.Burst)
	}
	return nil
}

func (l Limit) String() string {
	if l.Rate == rate.Inf {
		return "unlimited"
	}
	return fmt.Sprintf("%g/s, burst %d", float64(l.Rate), l.Burst)
}

// RateParams are the rateLimitPerSecond and rateLimitBurst parameters of the
// responder config versions that have them. Embedded in a parameters
// struct, they decode with it.
type RateParams struct {
	RateLimitPerSecond OptionalRate `json:"rateLimitPerSecond"`
	RateLimitBurst     *int         `json:"rateLimitBurst"`
}

// OptionalRate tells an absent rateLimitPerSecond (a config version that
// predates it: the responder's default applies) from an explicit null (no
// limit).
type OptionalRate struct {
	Present bool
	Null    bool
	Value   float64
}

// UnmarshalJSON records that the field was present.
func (o *OptionalRate) UnmarshalJSON(b []byte) error {
	*o = OptionalRate{Present: true}
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		o.Null = true
		return nil
	}
	return json.Unmarshal(b, &o.Value)
}

// Limit resolves the parameters against the responder's default. A value it
// refuses is a *responders.ParamError naming its parameter.
func (p RateParams) Limit(def Limit) (Limit, error) {
	l := def
	switch r := p.RateLimitPerSecond; {
	case !r.Present:
	case r.Null:
		l.Rate = rate.Inf
	case !(r.Value > 0):
		return Limit{}, responders.ParamErrorf("rateLimitPerSecond", "must be greater than 0 (or null for no limit), got %v", r.Value)
	default:
		l.Rate = rate.Limit(r.Value)
	}
	if p.RateLimitBurst != nil {
		if *p.RateLimitBurst < 1 {
			return Limit{}, responders.ParamErrorf("rateLimitBurst", "must be at least 1, got %d", *p.RateLimitBurst)
		}
		l.Burst = *p.RateLimitBurst
	}
	if l.Burst < 1 {
		l.Burst = 1
	}
	if err := l.validate(); err != nil {
		return Limit{}, &responders.ParamError{Param: "rateLimitPerSecond", Err: err}
	}
	return l, nil
}

// maxDestinations bounds the limiter table: PagerDuty routing keys come from
// the commands, so their number is not under the operator's control.
const maxDestinations = 4096

// destinations holds one limiter per destination, keyed by a hash so that
// the table never holds the secrets themselves.
type destinations struct {
	limit Limit
	now   func() time.Time
	mu    sync.Mutex
	m     map[[sha256.Size]byte]*destination
}

type destination struct {
	lim      *rate.Limiter
	mu       sync.Mutex
	paused   time.Time
	lastUsed time.Time
}

func newDestinations(l Limit, now func() time.Time) *destinations {
	return &destinations{limit: l, now: now, m: map[[sha256.Size]byte]*destination{}}
}

func (ds *destinations) get(key string) *destination {
	h := sha256.Sum256([]byte(key))
	now := ds.now()
	ds.mu.Lock()
	defer ds.mu.Unlock()
	d, ok := ds.m[h]
	if !ok {
		if len(ds.m) >= maxDestinations {
			ds.evictLocked(now)
		}
		d = &destination{lim: rate.NewLimiter(ds.limit.Rate, ds.limit.Burst)}
		ds.m[h] = d
	}
	d.mu.Lock()
	d.lastUsed = now
	d.mu.Unlock()
	return d
}

// evictLocked forgets the least recently used destination. A destination
// idle long enough to refill its bucket loses nothing by being forgotten;
// one still in use at worst gets a fresh bucket.
func (ds *destinations) evictLocked(now time.Time) {
	type candidate struct {
		key   [sha256.Size]byte
		used  time.Time
		found bool
	}
	// A paused destination is kept if at all possible: forgetting it would
	// forget the vendor's request to wait.
	var idle, oldest candidate
	for k, d := range ds.m {
		d.mu.Lock()
		used, paused := d.lastUsed, d.paused
		d.mu.Unlock()
		if !oldest.found || used.Before(oldest.used) {
			oldest = candidate{k, used, true}
		}
		if !paused.After(now) && (!idle.found || used.Before(idle.used)) {
			idle = candidate{k, used, true}
		}
	}
	switch {
	case idle.found:
		delete(ds.m, idle.key)
	case oldest.found:
		delete(ds.m, oldest.key)
	}
}

func (d *destination) pauseUntil(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t.After(d.paused) {
		d.paused = t
	}
}

func (d *destination) pausedUntil() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.paused
}
