// Package delivery is the HTTP discipline shared by every responder that
// calls a vendor: one rate limiter per destination, waited on before every
// request for as long as the caller's context allows; the vendor's own
// Retry-After honoured, up to MaxVendorDelay, by pausing every command bound
// to the same destination; request timeouts; response bodies read with a
// size cap; errors and log lines that never carry a secret; and the caller's
// ownership fence (package fence) checked on every write to the connection,
// so that nothing is sent once it has passed.
//
// A responder builds one Client in its constructor and calls Send once per
// command with a Classifier that turns the vendor's reply into nil (done),
// responders.Permanent(err) or responders.Retryable(err, after). Send makes
// one request at most and returns that verdict: it does not retry. The
// caller above owns the retries (the observer, with its backoff and retry
// budget), and it logs the failures; Send logs none, so that one failure
// shows once. A retryable error carries the delay the vendor asked for,
// capped at MaxVendorDelay (zero when it named none). While a destination
// is paused by such a delay, Send returns at once with a retryable error
// carrying what is left of the pause, and sends nothing. A fence that
// passed also ends Send with a retryable error, wrapping fence.ErrPassed:
// nothing was sent.
package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/responders/fence"
)

// Policy bounds the work spent on one request. Zero fields take the
// defaults of DefaultPolicy.
type Policy struct {
	// RequestTimeout bounds the request, from dialling to the end of the body.
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
	// Logger receives a debug line per delivered request; nil discards
	// them. Failures are returned, not logged: the caller that owns the
	// retries logs them once.
	Logger *slog.Logger
	// UserAgent is sent unless the request sets its own; "" means "sauna".
	UserAgent string

	// Now defaults to the real clock. Tests usually keep it and run under
	// testing/synctest, whose fake clock also drives the rate limiters.
	Now func() time.Time
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

// Request is one call to a vendor.
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
	// Prepare, if set, runs on the request's headers just before it is
	// sent, so that a signature can cover the moment of sending, waits for
	// the rate limiter included.
	Prepare func(h http.Header, now time.Time)
}

// Send makes req once, after its turn at the destination's rate limiter,
// and returns the verdict on the reply. See the package doc.
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

	// A pause is the caller's to wait out, like any other retry delay: it
	// knows its budget and when it must stop. It is checked again after
	// the rate limiter, which may have kept this request while another one
	// to the destination was told to wait.
	if err := c.paused(dest, label); err != nil {
		return err
	}
	if err := dest.lim.Wait(ctx); err != nil {
		return responders.Retryable(&sendError{msg: label + ": local rate limit: " + err.Error(), err: err}, 0)
	}
	if err := c.paused(dest, label); err != nil {
		return err
	}
	start := c.now()
	resp, err := c.attempt(ctx, &req, classify, red)
	if errors.Is(err, fence.ErrPassed) {
		// Nothing was sent, and trying again cannot help until the caller
		// has renewed what the fence stands for.
		return responders.Retryable(&sendError{msg: label + ": " + err.Error(), err: err}, 0)
	}
	if err == nil {
		c.log.Debug("delivered", "destination", origin, "status", resp.Status, "elapsed", c.now().Sub(start))
		return nil
	}
	err = &sendError{msg: red.string(label + ": " + err.Error()), err: err}
	verdict, after := responders.Classify(err)
	if verdict == responders.Fail {
		return err
	}
	after = min(after, c.policy.MaxVendorDelay)
	if after > 0 {
		// A rate limit applies to the destination, not to this command:
		// hold every command bound there until the vendor's delay passes.
		dest.pauseUntil(c.now().Add(after))
	}
	var re *responders.RetryableError
	if errors.As(err, &re) && re.After == after {
		return err
	}
	return responders.Retryable(err, after)
}

// paused returns a retryable error carrying what is left of the pause a
// vendor asked of the destination, if any.
func (c *Client) paused(d *destination, label string) error {
	left := d.pausedUntil().Sub(c.now())
	if left <= 0 {
		return nil
	}
	return responders.Retryable(fmt.Errorf("%s: destination paused by the vendor for another %s; nothing sent",
		label, left.Round(time.Millisecond)), left)
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
func (c *Client) transportError(caller, attempt context.Context, err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	switch {
	case caller.Err() != nil:
		return fmt.Errorf("request abandoned by the caller: %w", caller.Err())
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
