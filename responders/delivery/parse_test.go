package delivery_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/time/rate"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/responders/delivery"
	"github.com/sauna-io/sauna/responders/delivery/deliverytest"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		header map[string]string
		want   time.Duration
		ok     bool
	}{
		{"none", nil, 0, false},
		{"seconds", map[string]string{"Retry-After": "120"}, 2 * time.Minute, true},
		{"zero seconds", map[string]string{"Retry-After": "0"}, 0, true},
		{"HTTP-date", map[string]string{"Retry-After": "Sun, 22 Nov 2026 10:00:30 GMT"}, 30 * time.Second, true},
		{"HTTP-date in the past", map[string]string{"Retry-After": "Sun, 22 Nov 2026 09:00:00 GMT"}, 0, true},
		{"garbage Retry-After falls through to the reset header", map[string]string{"Retry-After": "soon", "X-RateLimit-Reset": "1795341605"}, 5 * time.Second, true},
		{"negative seconds are garbage", map[string]string{"Retry-After": "-5"}, 0, false},
		{"Retry-After wins over X-RateLimit-Reset", map[string]string{"Retry-After": "3", "X-RateLimit-Reset": "1795341605"}, 3 * time.Second, true},
		{"reset epoch seconds", map[string]string{"X-RateLimit-Reset": "1795341660"}, time.Minute, true},
		{"reset already past", map[string]string{"X-RateLimit-Reset": "1795341000"}, 0, true},
		{"reset as seconds from now", map[string]string{"X-RateLimit-Reset": "42"}, 42 * time.Second, true},
		{"reset garbage", map[string]string{"X-RateLimit-Reset": "tomorrow"}, 0, false},
		{"absurd seconds do not overflow", map[string]string{"Retry-After": "99999999999999999"}, time.Duration(1<<63 - 1).Truncate(time.Second), true},
	}
	if now.Unix() != 1795341600 {
		t.Fatalf("test clock is %d", now.Unix())
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.header {
				h.Set(k, v)
			}
			got, ok := delivery.ParseRetryAfter(h, now)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ParseRetryAfter = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestRateParams(t *testing.T) {
	def := delivery.PerSecond(1, 3)
	tests := []struct {
		params  string
		want    delivery.Limit
		wantErr string
		// param is the ParamError's Param when Limit refuses the value.
		param string
	}{
		{`{}`, def, "", ""},
		{`{"rateLimitPerSecond": 2.5, "rateLimitBurst": 10}`, delivery.PerSecond(2.5, 10), "", ""},
		{`{"rateLimitPerSecond": null, "rateLimitBurst": 3}`, delivery.Limit{Rate: rate.Inf, Burst: 3}, "", ""},
		{`{"rateLimitBurst": 7}`, delivery.PerSecond(1, 7), "", ""},
		{`{"rateLimitPerSecond": 0}`, delivery.Limit{}, "parameters.rateLimitPerSecond: must be greater than 0", "rateLimitPerSecond"},
		{`{"rateLimitPerSecond": -1}`, delivery.Limit{}, "parameters.rateLimitPerSecond: must be greater than 0", "rateLimitPerSecond"},
		{`{"rateLimitBurst": 0}`, delivery.Limit{}, "parameters.rateLimitBurst: must be at least 1", "rateLimitBurst"},
		{`{"rateLimitPerSecond": "fast"}`, delivery.Limit{}, "cannot unmarshal", ""},
	}
	for _, tt := range tests {
		t.Run(tt.params, func(t *testing.T) {
			var p delivery.RateParams
			err := json.Unmarshal([]byte(tt.params), &p)
			var got delivery.Limit
			if err == nil {
				got, err = p.Limit(def)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if pe, ok := errors.AsType[*responders.ParamError](err); tt.param != "" && (!ok || pe.Param != tt.param) {
					t.Errorf("err = %T: %v, want a *responders.ParamError for %q", err, err, tt.param)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Error(diff)
			}
		})
	}
}

func TestOneLine(t *testing.T) {
	tests := map[string]string{
		"channel_not_found\n":                   "channel_not_found",
		"line one\r\nFAKE LOG LINE level=error": "line one FAKE LOG LINE level=error",
		"  tabs\tand\x00nul  ":                  "tabs and nul",
		"bad utf8 \xff here":                    "bad utf8 \uFFFD here",
		strings.Repeat("é", 400):                strings.Repeat("é", 150) + "…",
	}
	for in, want := range tests {
		if got := delivery.OneLine(in); got != want {
			t.Errorf("OneLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOrigin(t *testing.T) {
	tests := map[string]string{
		"https://hooks.slack.com/services/T0/B0/secret":   "https://hooks.slack.com",
		"https://user:pw@example.com:8443/p?token=secret": "https://example.com:8443",
		"not a url":   "(invalid URL)",
		"http://[::1": "(invalid URL)",
	}
	for in, want := range tests {
		if got := delivery.Origin(in); got != want {
			t.Errorf("Origin(%q) = %q, want %q", in, got, want)
		}
	}
}

// A turn that cannot come before the caller's deadline is not waited for.
func TestLimiterWaitBeyondTheDeadlineGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := deliverytest.NewServer(t, deliverytest.NewVendor())
		c, _ := delivery.New(delivery.Options{Limit: delivery.PerSecond(1.0/60, 1), Transport: srv.Transport})
		if err := c.Send(t.Context(), delivery.Request{URL: srv.URL}, ok200); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		start := time.Now()
		err := c.Send(ctx, delivery.Request{URL: srv.URL}, ok200)
		if v, _ := responders.Classify(err); v != responders.Retry || !strings.Contains(err.Error(), "local rate limit") {
			t.Errorf("err = %v (%v), want a retryable local rate limit error", err, v)
		}
		if waited := time.Since(start); waited != 0 {
			t.Errorf("waited %v for a turn that cannot come before the deadline", waited)
		}
	})
}
