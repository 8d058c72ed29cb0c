package delivery_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/responders/delivery"
	"github.com/sauna-io/sauna/responders/delivery/deliverytest"
)

type R = deliverytest.Reply

func ok200(r *delivery.Response) error {
	return delivery.Standard(r, delivery.Is(http.StatusOK), r.Text())
}

// offsets returns each request's arrival relative to start.
func offsets(reqs []deliverytest.Request, start time.Time) []time.Duration {
	out := make([]time.Duration, len(reqs))
	for i, r := range reqs {
		out[i] = r.At.Sub(start)
	}
	return out
}

// Send makes one request and returns its verdict; it never retries, even
// when the reply is retryable.
func TestSendVerdicts(t *testing.T) {
	s := time.Second
	tests := []struct {
		name      string
		policy    delivery.Policy
		reply     func(now time.Time) R
		classify  delivery.Classifier
		verdict   responders.Verdict
		after     time.Duration
		took      time.Duration
		errSubstr string
	}{
		{
			name:    "success",
			reply:   func(time.Time) R { return R{Status: 200, Body: "ok"} },
			verdict: responders.Done,
		},
		{
			name:      "5xx is retryable, with no delay of its own",
			reply:     func(time.Time) R { return R{Status: 503, Body: "maintenance"} },
			verdict:   responders.Retry,
			errSubstr: "POST http://vendor.test: HTTP 503 Service Unavailable: maintenance",
		},
		{name: "501 is retryable", reply: func(time.Time) R { return R{Status: 501} }, verdict: responders.Retry},
		{name: "599 is retryable", reply: func(time.Time) R { return R{Status: 599} }, verdict: responders.Retry},
		{name: "408 is retryable", reply: func(time.Time) R { return R{Status: 408} }, verdict: responders.Retry},
		{
			name:    "429 with Retry-After seconds",
			reply:   func(time.Time) R { return R{Status: 429, Header: map[string]string{"Retry-After": "7"}} },
			verdict: responders.Retry,
			after:   7 * s,
		},
		{
			name: "429 with Retry-After HTTP-date",
			reply: func(now time.Time) R {
				return R{Status: 429, Header: map[string]string{"Retry-After": now.Add(12 * s).UTC().Format(http.TimeFormat)}}
			},
			verdict: responders.Retry,
			after:   12 * s,
		},
		{
			name: "429 with X-RateLimit-Reset epoch seconds",
			reply: func(now time.Time) R {
				return R{Status: 429, Header: map[string]string{"X-RateLimit-Reset": strconv.FormatInt(now.Add(5*s).Unix(), 10)}}
			},
			verdict: responders.Retry,
			after:   5 * s,
		},
		{
			name:      "400 is permanent",
			reply:     func(time.Time) R { return R{Status: 400, Body: "invalid_payload"} },
			verdict:   responders.Fail,
			errSubstr: "POST http://vendor.test: HTTP 400 Bad Request: invalid_payload",
		},
		{
			name: "redirects are not followed",
			reply: func(time.Time) R {
				return R{Status: 302, Header: map[string]string{"Location": "http://169.254.169.254/"}}
			},
			verdict:   responders.Fail,
			errSubstr: "HTTP 302 Found",
		},
		{
			name:      "404 is permanent",
			reply:     func(time.Time) R { return R{Status: 404} },
			verdict:   responders.Fail,
			errSubstr: "HTTP 404 Not Found",
		},
		{
			name:      "slow vendor: the request times out",
			policy:    delivery.Policy{RequestTimeout: 2 * s},
			reply:     func(time.Time) R { return R{Status: 200, Delay: time.Hour} },
			verdict:   responders.Retry,
			took:      2 * s,
			errSubstr: "no response within the 2s request timeout",
		},
		{
			// The caller retries what no verdict marks as final.
			name:      "an unclassified error is retryable",
			reply:     func(time.Time) R { return R{Status: 200} },
			classify:  func(*delivery.Response) error { return errors.New("unexpected reply") },
			verdict:   responders.Retry,
			errSubstr: "unexpected reply",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				vendor := deliverytest.NewVendor(tt.reply(start), R{Status: 200})
				srv := deliverytest.NewServer(t, vendor)
				c, err := delivery.New(delivery.Options{Policy: tt.policy, Limit: delivery.Unlimited, Transport: srv.Transport})
				if err != nil {
					t.Fatal(err)
				}
				classify := tt.classify
				if classify == nil {
					classify = ok200
				}
				err = c.Send(t.Context(), delivery.Request{URL: srv.URL + "/hook", Body: []byte(`{}`)}, classify)
				if got := time.Since(start); got != tt.took {
					t.Errorf("Send took %v, want %v", got, tt.took)
				}
				verdict, after := responders.Classify(err)
				if verdict != tt.verdict || after != tt.after {
					t.Errorf("Classify = %v, %v; want %v, %v (err: %v)", verdict, after, tt.verdict, tt.after, err)
				}
				var re *responders.RetryableError
				if tt.verdict == responders.Retry && !errors.As(err, &re) {
					t.Errorf("err = %v, want a *responders.RetryableError", err)
				}
				if diff := cmp.Diff([]time.Duration{0}, offsets(vendor.Requests(), start)); diff != "" {
					t.Errorf("request times (-want +got):\n%s", diff)
				}
				if tt.errSubstr != "" && (err == nil || !strings.Contains(err.Error(), tt.errSubstr)) {
					t.Errorf("err = %v, want it to contain %q", err, tt.errSubstr)
				}
			})
		})
	}
}

func TestStatusErrorIsReachable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := deliverytest.NewServer(t, deliverytest.NewVendor(R{Status: 404, Body: "channel_not_found"}))
		c, _ := delivery.New(delivery.Options{Limit: delivery.Unlimited, Transport: srv.Transport})
		err := c.Send(t.Context(), delivery.Request{URL: srv.URL}, ok200)
		var se *delivery.StatusError
		if !errors.As(err, &se) {
			t.Fatalf("errors.As(%v, *StatusError) = false", err)
		}
		if diff := cmp.Diff(&delivery.StatusError{Status: 404, Detail: "channel_not_found"}, se); diff != "" {
			t.Error(diff)
		}
		if !errors.Is(err, responders.ErrPermanent) {
			t.Error("a 404 is not permanent")
		}
	})
}

func TestLimiterSpacesRequestsPerDestination(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		vendor := deliverytest.NewVendor()
		srv := deliverytest.NewServer(t, vendor)
		c, _ := delivery.New(delivery.Options{Limit: delivery.PerSecond(1, 2), Transport: srv.Transport})
		for range 5 {
			if err := c.Send(t.Context(), delivery.Request{URL: srv.URL + "/a", Destination: "a"}, ok200); err != nil {
				t.Fatal(err)
			}
		}
		// Another destination has its own bucket: no wait.
		if err := c.Send(t.Context(), delivery.Request{URL: srv.URL + "/b", Destination: "b"}, ok200); err != nil {
			t.Fatal(err)
		}
		want := []time.Duration{0, 0, time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}
		if diff := cmp.Diff(want, offsets(vendor.Requests(), start)); diff != "" {
			t.Errorf("arrival times (-want +got):\n%s", diff)
		}
	})
}

// The limiter's wait is bounded by the caller's context; a request that
// gave up its turn sends nothing.
func TestLimiterWaitEndsWithTheCaller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		vendor := deliverytest.NewVendor()
		srv := deliverytest.NewServer(t, vendor)
		c, _ := delivery.New(delivery.Options{Limit: delivery.PerSecond(0.1, 1), Transport: srv.Transport})
		if err := c.Send(t.Context(), delivery.Request{URL: srv.URL}, ok200); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(3*time.Second, cancel)
		err := c.Send(ctx, delivery.Request{URL: srv.URL}, ok200)
		if v, _ := responders.Classify(err); v != responders.Retry || !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v (%v), want a retryable context.Canceled", err, v)
		}
		if got := time.Since(start); got != 3*time.Second {
			t.Errorf("Send returned after %v, want 3s (when its caller gave up)", got)
		}
		// The turn given up goes to the next request, about 10 s after the
		// first (the limiter's arithmetic is in floating point).
		if err := c.Send(t.Context(), delivery.Request{URL: srv.URL}, ok200); err != nil {
			t.Fatal(err)
		}
		got := offsets(vendor.Requests(), start)
		if len(got) != 2 || got[1] < 10*time.Second-time.Millisecond || got[1] > 10*time.Second {
			t.Errorf("arrival times %v, want [0s ~10s]", got)
		}
	})
}

// A vendor's delay pauses the destination: until it passes, Send to that
// destination sends nothing and hands back what is left of it, for the
// caller to wait out.
func TestVendorDelayHoldsTheWholeDestination(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		vendor := deliverytest.NewVendor(R{Status: 429, Header: map[string]string{"Retry-After": "10"}}, R{Status: 200})
		srv := deliverytest.NewServer(t, vendor)
		c, _ := delivery.New(delivery.Options{Limit: delivery.Unlimited, Transport: srv.Transport})
		send := func(dest string) error {
			return c.Send(t.Context(), delivery.Request{URL: srv.URL, Destination: dest}, ok200)
		}
		if v, after := responders.Classify(send("d")); v != responders.Retry || after != 10*time.Second {
			t.Fatalf("first Send: %v after %v, want retryable after 10s", v, after)
		}
		time.Sleep(time.Second)
		err := send("d")
		if v, after := responders.Classify(err); v != responders.Retry || after != 9*time.Second {
			t.Errorf("Send during the pause: %v after %v, want retryable after the 9s left (err: %v)", v, after, err)
		}
		if err == nil || !strings.Contains(err.Error(), "paused by the vendor") || !strings.Contains(err.Error(), "nothing sent") {
			t.Errorf("err = %v, want it to say the destination is paused and nothing was sent", err)
		}
		// Another destination is not held.
		if err := send("e"); err != nil {
			t.Errorf("Send to another destination: %v", err)
		}
		time.Sleep(9 * time.Second)
		if err := send("d"); err != nil {
			t.Errorf("Send once the pause is over: %v", err)
		}
		want := []time.Duration{0, time.Second, 10 * time.Second}
		if diff := cmp.Diff(want, offsets(vendor.Requests(), start)); diff != "" {
			t.Errorf("arrival times (-want +got):\n%s", diff)
		}
	})
}

// A vendor asking for a day's pause holds the destination for
// MaxVendorDelay at most, and says so to the caller.
func TestVendorDelayIsCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		vendor := deliverytest.NewVendor(R{Status: 429, Header: map[string]string{"Retry-After": "100000"}}, R{Status: 200})
		srv := deliverytest.NewServer(t, vendor)
		c, _ := delivery.New(delivery.Options{Limit: delivery.Unlimited, Transport: srv.Transport})
		err := c.Send(t.Context(), delivery.Request{URL: srv.URL, Destination: "d"}, ok200)
		verdict, after := responders.Classify(err)
		if verdict != responders.Retry || after != delivery.MaxVendorDelay {
			t.Fatalf("Classify = %v, %v; want retry after %s (err: %v)", verdict, after, delivery.MaxVendorDelay, err)
		}
		time.Sleep(after)
		if err := c.Send(t.Context(), delivery.Request{URL: srv.URL, Destination: "d"}, ok200); err != nil {
			t.Errorf("the destination is still paused after %s: %v", delivery.MaxVendorDelay, err)
		}
		want := []time.Duration{0, delivery.MaxVendorDelay}
		if diff := cmp.Diff(want, offsets(vendor.Requests(), start)); diff != "" {
			t.Errorf("arrival times (-want +got):\n%s", diff)
		}
	})
}

func TestCallerCancelStopsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := deliverytest.NewServer(t, deliverytest.NewVendor(R{Status: 200, Delay: time.Hour}))
		c, _ := delivery.New(delivery.Options{Limit: delivery.Unlimited, Transport: srv.Transport})
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(3*time.Second, cancel)
		start := time.Now()
		err := c.Send(ctx, delivery.Request{URL: srv.URL}, ok200)
		if got := time.Since(start); got != 3*time.Second {
			t.Errorf("Send returned after %v, want 3s", got)
		}
		if v, _ := responders.Classify(err); v != responders.Retry || !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v (%v), want a retryable context.Canceled", err, v)
		}
	})
}

// Prepare sees the moment of sending, after the rate limiter's wait, so
// that a signature's timestamp is fresh.
func TestPrepareRunsWhenSending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vendor := deliverytest.NewVendor()
		srv := deliverytest.NewServer(t, vendor)
		c, _ := delivery.New(delivery.Options{Limit: delivery.PerSecond(2, 1), Transport: srv.Transport})
		req := delivery.Request{
			URL:    srv.URL,
			Header: http.Header{"Content-Type": {"application/json"}},
			Prepare: func(h http.Header, now time.Time) {
				h.Set("X-Time", strconv.FormatInt(now.UnixMilli(), 10))
			},
		}
		for range 2 {
			if err := c.Send(t.Context(), req, ok200); err != nil {
				t.Fatal(err)
			}
		}
		reqs := vendor.Requests()
		t0, _ := strconv.ParseInt(reqs[0].Header.Get("X-Time"), 10, 64)
		t1, _ := strconv.ParseInt(reqs[1].Header.Get("X-Time"), 10, 64)
		if t1-t0 != 500 {
			t.Errorf("X-Time moved by %d ms between requests, want the limiter's 500", t1-t0)
		}
		if got := req.Header.Get("X-Time"); got != "" {
			t.Errorf("Prepare changed the caller's header map: X-Time = %q", got)
		}
		if got := reqs[0].Header.Get("User-Agent"); got != "sauna" {
			t.Errorf("User-Agent = %q", got)
		}
	})
}

func TestResponseBodyIsCapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		huge := strings.Repeat("x", 1<<20)
		srv := deliverytest.NewServer(t, deliverytest.NewVendor(R{Status: 400, Body: huge}))
		c, _ := delivery.New(delivery.Options{
			Policy:    delivery.Policy{MaxResponseBytes: 1024},
			Limit:     delivery.Unlimited,
			Transport: srv.Transport,
		})
		var got *delivery.Response
		err := c.Send(t.Context(), delivery.Request{URL: srv.URL}, func(r *delivery.Response) error {
			got = r
			return ok200(r)
		})
		if len(got.Body) != 1024 || !got.Truncated {
			t.Errorf("body: %d bytes, truncated %v; want 1024, true", len(got.Body), got.Truncated)
		}
		if n := len(err.Error()); n > 400 {
			t.Errorf("error message is %d bytes long; vendor text must be capped", n)
		}
	})
}

// roundTripFunc fails the way a broken network does.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestSecretsNeverLeak(t *testing.T) {
	const (
		pathSecret = "XyZzy0123456789SecretPath"
		apiKey     = "SG.planted-api-key-0123456789"
		userPass   = "hunter2hunter2"
	)
	secretURL := "http://user:" + userPass + "@" + deliverytest.Host + "/services/T000/B000/" + pathSecret + "?token=" + pathSecret
	planted := []string{pathSecret, apiKey, userPass, "/services/T000/B000/"}
	echo := "you sent " + secretURL + " with key " + apiKey + " escaped " + strings.ReplaceAll(secretURL, "/", `\/`)

	tests := []struct {
		name      string
		transport func(srv *deliverytest.Server) http.RoundTripper
		replies   []R
	}{
		{name: "permanent error echoing the request", replies: []R{{Status: 400, Body: echo}}},
		{name: "retryable errors echoing the request", replies: []R{{Status: 503, Body: echo}}},
		{name: "timeouts", replies: []R{{Status: 200, Delay: time.Hour}}},
		{
			name: "network errors",
			transport: func(*deliverytest.Server) http.RoundTripper {
				return roundTripFunc(func(r *http.Request) (*http.Response, error) {
					return nil, errors.New("connection reset by peer")
				})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := deliverytest.NewServer(t, deliverytest.NewVendor(tt.replies...))
				var tr http.RoundTripper = srv.Transport
				if tt.transport != nil {
					tr = tt.transport(srv)
				}
				var logs bytes.Buffer
				c, _ := delivery.New(delivery.Options{
					Policy:    delivery.Policy{RequestTimeout: time.Second},
					Limit:     delivery.Unlimited,
					Transport: tr,
					Logger:    slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
				})
				err := c.Send(t.Context(), delivery.Request{
					URL:         secretURL,
					Header:      http.Header{"Authorization": {"Bearer " + apiKey}},
					Destination: apiKey,
					Secrets:     []string{apiKey},
				}, ok200)
				if err == nil {
					t.Fatal("Send succeeded")
				}
				for _, s := range planted {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error contains secret %q: %v", s, err)
					}
					if strings.Contains(logs.String(), s) {
						t.Errorf("logs contain secret %q:\n%s", s, logs.String())
					}
				}
				if !strings.Contains(err.Error(), "http://"+deliverytest.Host) {
					t.Errorf("error does not name the destination's origin: %v", err)
				}
				// The caller logs the failure it is handed; a line here would
				// show it twice.
				if logs.Len() != 0 {
					t.Errorf("the failure was logged by Send:\n%s", logs.String())
				}
			})
		})
	}
}

// A secret-bearing header value is redacted also by its parts: a receiver
// quoting the bare credential must not put it in an error or a log line.
func TestSecretPartsNeverLeak(t *testing.T) {
	const (
		token    = "tok-0123456789abcdef"
		password = "pw-s3cr3t-hunter2"
		sig      = "sigvalue0123456789"
		keyPart  = "keypart-abcdef012345"
	)
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("svc:"+password))
	echo := "invalid token " + token + "; bad password " + password + "; sig=" + sig + "; revoked " + keyPart +
		"; encoded " + url.QueryEscape(token+" "+password)
	synctest.Test(t, func(t *testing.T) {
		srv := deliverytest.NewServer(t, deliverytest.NewVendor(R{Status: 503, Body: echo}, R{Status: 401, Body: echo}))
		var logs bytes.Buffer
		c, _ := delivery.New(delivery.Options{
			Limit:     delivery.Unlimited,
			Transport: srv.Transport,
			Logger:    slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
		err := c.Send(t.Context(), delivery.Request{
			URL: srv.URL + "/hook",
			// Authorization is a secret without being listed.
			Header:  http.Header{"Authorization": {"Bearer " + token}},
			Secrets: []string{basic, "keyId=abc, signature=\"" + sig + "\"", "SG.id0123456." + keyPart, "a b c d"},
		}, ok200)
		if err == nil {
			t.Fatal("Send succeeded")
		}
		for _, s := range []string{token, password, sig, keyPart, url.QueryEscape(token)} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("error contains secret %q: %v", s, err)
			}
			if strings.Contains(logs.String(), s) {
				t.Errorf("logs contain secret %q:\n%s", s, logs.String())
			}
		}
		if !strings.Contains(err.Error(), "invalid token "+delivery.Redacted) || !strings.Contains(err.Error(), "bad password") {
			t.Errorf("the receiver's text is lost, not redacted: %v", err)
		}
	})
}

func TestNewRejectsBadLimits(t *testing.T) {
	for _, l := range []delivery.Limit{{Rate: 0, Burst: 1}, {Rate: -1, Burst: 1}, {Rate: 1, Burst: 0}} {
		if _, err := delivery.New(delivery.Options{Limit: l}); err == nil {
			t.Errorf("New accepted limit %+v", l)
		}
	}
}
