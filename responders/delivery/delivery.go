// Package delivery is the HTTP discipline shared by every responder that
// calls a vendor: one rate limiter per destination, waited on before every
// attempt; bounded retries with exponential backoff and full jitter inside a
// per-command time budget; the vendor's own Retry-After honoured, up to
// MaxVendorDelay; request timeouts; response bodies read with a size cap;
// errors and log lines that never carry a secret; and the caller's
// ownership fence (package fence) checked on every write to the connection,
// so that nothing is sent once it has passed.
//
// A responder builds one Client in its constructor and calls Send once per
// command with a Classifier that turns each vendor reply into nil (done),
// responders.Permanent(err) or responders.Retryable(err, after). Send returns
// nil, the first permanent error, or, once the attempts or the budget run
// out, the last error as retryable with the delay the vendor asked for: the
// caller above decides whether to try again later or to dead-letter. A fence
// that passed ends Send at once with a retryable error wrapping
// fence.ErrPassed: nothing of that attempt was sent.
package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/responders/fence"
)

// Policy bounds the work spent on one command. Zero fields take the defaults
// of DefaultPolicy.
type Policy struct {
	// MaxAttempts is the number of requests Send makes at most.
	MaxAttempts int
	// MaxElapsed is the budget for all attempts of one Send, waits included.
	// The caller holds a Kinesis shard while Send runs, so it stays short;
	// longer outages are retried by the caller.
	MaxElapsed time.Duration
	// BaseDelay and MaxDelay shape the backoff: before attempt n+1 Send waits
	// a uniformly random time in [0, min(MaxDelay, BaseDelay*2^(n-1))),
	// unless the vendor named a delay.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// RequestTimeout bounds one attempt, from dialling to the end of the body.
	RequestTimeout time.Duration
	// MaxResponseBytes caps how much of a response body is read.
	MaxResponseBytes int64
	// MaxVendorDelay caps a delay the vendor names (Retry-After,
	// X-RateLimit-Reset): a reply asking for a day would otherwise hold every
	// command bound to the destination, and the shards they came from, for
	// that day.
	MaxVendorDelay time.Duration
}

// DefaultPolicy returns the policy used for zero Policy fields.
func DefaultPolicy() Policy {
	return Policy{
		MaxAttempts:      4,
		MaxElapsed:       30 * time.Second,
		BaseDelay:        500 * time.Millisecond,
		MaxDelay:         8 * time.Second,
		RequestTimeout:   10 * time.Second,
		MaxResponseBytes: 64 << 10,
		MaxVendorDelay:   MaxVendorDelay,
	}
}

// MaxVendorDelay is the longest delay named by a vendor that is honoured;
// longer ones are cut to it.
const MaxVendorDelay = 5 * time.Minute

func (p Policy) withDefaults() Policy {
	d := DefaultPolicy()
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.MaxElapsed <= 0 {
		p.MaxElapsed = d.MaxElapsed
	}
	if p.BaseDelay <= 0 {
		p.BaseDelay = d.BaseDelay
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = d.MaxDelay
	}
	if p.RequestTimeout <= 0 {
		p.RequestTimeout = d.RequestTimeout
	}
	if p.MaxResponseBytes <= 0 {
		p.MaxResponseBytes = d.MaxResponseBytes
	}
	if p.MaxVendorDelay <= 0 {
		p.MaxVendorDelay = d.MaxVendorDelay
	}
	return p
}

// Options configure a Client. Only Limit is required.
type Options struct {
	Policy Policy
	// Limit is the rate allowed towards each destination (see Request.Destination).
	Limit Limit
	// Transport carries the requests; nil means a dedicated clone of
	// http.DefaultTransport speaking HTTP/1.1 only, which checks the
	// context's fence (package fence) on every write to a connection. Any
	// other transport gets the fence checked only before each request.
	// Redirects are never followed, whatever the transport: a redirect could
	// carry credentials to another host or turn a fixed webhook URL into a
	// request to an internal address.
	Transport http.RoundTripper
	// Logger receives one line per attempt; nil discards them.
	Logger *slog.Logger
	// UserAgent is sent unless the request sets its own; "" means "sauna".
	UserAgent string

	// Now, Sleep and Jitter default to the real clock and math/rand/v2. Tests
	// usually keep them and run under testing/synctest, whose fake clock also
	// drives the rate limiters; a Sleep that records instead of waiting suits
	// tests that talk to a real loopback server.
	Now    func() time.Time
	Sleep  func(ctx context.Context, d time.Duration) error
	Jitter func(ceiling time.Duration) time.Duration
}

// Client sends requests under one Policy and Limit. It is safe for
// concurrent use.
type Client struct {
	policy    Policy
	limit     Limit
	http      *http.Client
	closeIdle func()
	log       *slog.Logger
	userAgent string
	now       func() time.Time
	sleep     func(context.Context, time.Duration) error
	jitter    func(time.Duration) time.Duration
	dests     *destinations
}

// New returns a Client; it does no I/O.
func New(o Options) (*Client, error) {
	if err := o.Limit.validate(); err != nil {
		return nil, err
	}
	tr := o.Transport
	if tr == nil {
		tr = fencedTransport()
	}
	c := &Client{
		policy: o.Policy.withDefaults(),
		limit:  o.Limit,
		http: &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		closeIdle: func() {},
		log:       o.Logger,
		userAgent: o.UserAgent,
		now:       o.Now,
		sleep:     o.Sleep,
		jitter:    o.Jitter,
	}
	if ci, ok := tr.(interface{ CloseIdleConnections() }); ok {
		c.closeIdle = ci.CloseIdleConnections
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.userAgent == "" {
		c.userAgent = "sauna"
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.sleep == nil {
		c.sleep = sleep
	}
	if c.jitter == nil {
		c.jitter = fullJitter
	}
	c.dests = newDestinations(o.Limit, c.now)
	return c, nil
}

// Policy returns the effective policy, defaults filled in.
func (c *Client) Policy() Policy { return c.policy }

// Limit returns the rate allowed towards each destination.
func (c *Client) Limit() Limit { return c.limit }

// Close releases idle connections. Send may still be called afterwards.
func (c *Client) Close() error {
	c.closeIdle()
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func fullJitter(ceiling time.Duration) time.Duration {
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(ceiling)))
}

// backoff is the wait after a failed attempt when the vendor named none.
// Full jitter spreads the retries of many commands that failed together
// (one vendor outage) instead of letting them return in lockstep.
func (c *Client) backoff(attempt int) time.Duration {
	ceiling := c.policy.MaxDelay
	if shift := attempt - 1; shift < 32 {
		if d := c.policy.BaseDelay << shift; d > 0 && d < ceiling {
			ceiling = d
		}
	}
	return c.jitter(ceiling)
}

// Request is one logical call to a vendor; Send may make it several times.
type Request struct {
	// Method defaults to POST.
	Method string
	// URL may carry secrets (a webhook path, a token in the query); it is
	// never printed: errors and logs show only its scheme and host.
	URL    string
	Header http.Header
	Body   []byte
	// Destination selects the rate limiter: requests with equal destinations
	// share one. It is usually a secret (a webhook URL, a routing key, an API
	// key) and is only kept hashed. "" means URL.
	Destination string
	// Secrets are removed from every error and log line of this Send, on top
	// of the secret-looking parts of URL and the credentials of the
	// Authorization and Proxy-Authorization headers; each also by its parts
	// (the credential after an auth scheme, ...). Entries shorter than 4
	// bytes are ignored.
	Secrets []string
	// Prepare, if set, runs before each attempt on that attempt's headers, so
	// that a signature can cover the attempt's own timestamp.
	Prepare func(h http.Header, now time.Time)
}

// Send makes req until classify accepts a reply, a reply is permanent, or
// the policy is exhausted. See the package doc for what it returns.
func (c *Client) Send(ctx context.Context, req Request, classify Classifier) error {
	if req.Method == "" {
		req.Method = http.MethodPost
	}
	red := newRedactor(req.URL, slices.Concat(req.Secrets, req.Header.Values("Authorization"), req.Header.Values("Proxy-Authorization")))
	origin := Origin(req.URL)
	label := req.Method + " " + origin
	if _, err := url.Parse(req.URL); err != nil {
		// url.Parse quotes the whole URL in its error; say nothing of it.
		return responders.Permanent(fmt.Errorf("%s: the destination URL does not parse", label))
	}
	key := req.Destination
	if key == "" {
		key = req.URL
	}
	dest := c.dests.get(key)
	log := c.log.With("destination", origin)

	start := c.now()
	deadline := start.Add(c.policy.MaxElapsed)
	budget, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	var last error
	for attempt := 1; ; attempt++ {
		if err := c.waitTurn(budget, dest, deadline); err != nil {
			if last == nil {
				last = &sendError{msg: label + ": " + err.Error(), err: err}
			}
			return c.giveUp(ctx, log, red, dest, last, attempt-1, start)
		}
		resp, err := c.attempt(budget, &req, classify, red)
		if errors.Is(err, fence.ErrPassed) {
			// Nothing was sent, and trying again cannot help until the
			// caller has renewed what the fence stands for.
			log.Debug("attempt not sent: fence passed", "attempt", attempt, "err", err.Error())
			return responders.Retryable(&sendError{msg: label + ": " + err.Error(), err: err}, 0)
		}
		verdict, after := responders.Classify(err)
		status := 0
		if resp != nil {
			status = resp.Status
		}
		if err == nil {
			log.Debug("delivered", "attempt", attempt, "status", status, "elapsed", c.now().Sub(start))
			return nil
		}
		err = &sendError{msg: red.string(label + ": " + err.Error()), err: err}
		if verdict == responders.Fail {
			log.Debug("attempt failed permanently", "attempt", attempt, "status", status, "err", err.Error())
			return err
		}
		last = err
		after = min(after, c.policy.MaxVendorDelay)
		if after > 0 {
			// A rate limit applies to the destination, not to this command:
			// hold every command bound there until the vendor's delay passes.
			dest.pauseUntil(c.now().Add(after))
		}
		if ctx.Err() != nil || attempt >= c.policy.MaxAttempts {
			return c.giveUp(ctx, log, red, dest, last, attempt, start)
		}
		delay := after
		if delay <= 0 {
			delay = c.backoff(attempt)
		}
		// An attempt must have some budget left once the wait is over.
		if !c.now().Add(delay).Before(deadline) {
			return c.giveUp(ctx, log, red, dest, last, attempt, start)
		}
		log.Info("attempt failed; retrying", "attempt", attempt, "status", status, "retry_in", delay, "err", err.Error())
		if err := c.sleep(budget, delay); err != nil {
			return c.giveUp(ctx, log, red, dest, last, attempt, start)
		}
	}
}

// waitTurn blocks until the destination accepts another request: first any
// pause a vendor asked for, then the rate limiter.
func (c *Client) waitTurn(ctx context.Context, d *destination, deadline time.Time) error {
	if until, now := d.pausedUntil(), c.now(); until.After(now) {
		if !until.Before(deadline) {
			return fmt.Errorf("destination paused by the vendor for %s, beyond the retry budget", until.Sub(now).Round(time.Millisecond))
		}
		if err := c.sleep(ctx, until.Sub(now)); err != nil {
			return err
		}
	}
	if err := d.lim.Wait(ctx); err != nil {
		return fmt.Errorf("local rate limit: %w", err)
	}
	return nil
}

// giveUp returns the last failure as retryable, carrying what is left of the
// vendor's delay so the caller does not come back sooner than it asked.
func (c *Client) giveUp(ctx context.Context, log *slog.Logger, red *redactor, dest *destination, last error, attempts int, start time.Time) error {
	now := c.now()
	elapsed := now.Sub(start).Round(time.Millisecond)
	after := max(dest.pausedUntil().Sub(now), 0)
	why := fmt.Sprintf("gave up after %d attempt(s) in %s", attempts, elapsed)
	if ctx.Err() != nil {
		why = fmt.Sprintf("stopped after %d attempt(s): %v", attempts, ctx.Err())
	}
	err := &sendError{msg: red.string(last.Error()) + " (" + why + ")", err: last}
	log.Info("delivery not completed", "attempts", attempts, "elapsed", elapsed, "err", err.Error())
	var re *responders.RetryableError
	if errors.As(last, &re) && re.After == after {
		return err
	}
	return responders.Retryable(err, after)
}

// attempt makes one request. The returned error is already classified; it
// wraps fence.ErrPassed when the fence stopped the request before any of it
// was sent.
func (c *Client) attempt(ctx context.Context, req *Request, classify Classifier, red *redactor) (*Response, error) {
	if err := fence.Check(ctx); err != nil {
		return nil, err
	}
	fctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	wctx, unbind := watchFence(fctx, abort)
	defer unbind()
	actx, cancel := context.WithTimeout(wctx, c.policy.RequestTimeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(actx, req.Method, req.URL, bytes.NewReader(req.Body))
	if err != nil {
		return nil, responders.Permanent(errors.New("the request cannot be built (invalid method or URL)"))
	}
	if req.Header != nil {
		hreq.Header = req.Header.Clone()
	}
	if hreq.Header.Get("User-Agent") == "" {
		hreq.Header.Set("User-Agent", c.userAgent)
	}
	if req.Prepare != nil {
		req.Prepare(hreq.Header, c.now())
	}
	hresp, err := c.http.Do(hreq)
	if err != nil {
		if cause := context.Cause(fctx); errors.Is(cause, fence.ErrPassed) {
			return nil, cause
		}
		return nil, responders.Retryable(c.transportError(ctx, actx, err), 0)
	}
	defer hresp.Body.Close()
	body, truncated, _ := readCapped(hresp.Body, c.policy.MaxResponseBytes)
	// Draining a little more lets the connection be reused; a huge body is
	// cut off instead.
	_, _ = io.Copy(io.Discard, io.LimitReader(hresp.Body, c.policy.MaxResponseBytes))
	resp := &Response{
		Status:    hresp.StatusCode,
		Header:    hresp.Header,
		Body:      red.bytes(body),
		Truncated: truncated,
		Received:  c.now(),
	}
	return resp, classify(resp)
}

// transportError describes a failed round trip without the request URL,
// which *url.Error quotes in full.
func (c *Client) transportError(budget, attempt context.Context, err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	switch {
	case budget.Err() != nil:
		return fmt.Errorf("no response before the end of the %s retry budget: %w", c.policy.MaxElapsed, budget.Err())
	case attempt.Err() != nil:
		return fmt.Errorf("no response within the %s request timeout: %w", c.policy.RequestTimeout, attempt.Err())
	}
	return fmt.Errorf("request failed: %w", err)
}

func readCapped(r io.Reader, limit int64) ([]byte, bool, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if int64(len(b)) > limit {
		return b[:limit], true, err
	}
	return b, false, err
}

// sendError carries a message already stripped of secrets while keeping the
// error chain for errors.Is and errors.As (the verdict lives there).
type sendError struct {
	msg string
	err error
}

func (e *sendError) Error() string { return e.msg }
func (e *sendError) Unwrap() error { return e.err }
