package delivery

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sauna-io/sauna/responders"
)

// Response is what a Classifier sees of one vendor reply.
type Response struct {
	Status int
	Header http.Header
	// Body holds at most Policy.MaxResponseBytes, with the request's secrets
	// already removed.
	Body      []byte
	Truncated bool
	// Received is when the reply arrived, for HTTP-date Retry-After values.
	Received time.Time
}

// Classifier turns one reply into the verdict of its attempt: nil when the
// command took effect, responders.Permanent(err) when it never will, or
// responders.Retryable(err, after) when a later attempt may succeed. An
// unmarked error counts as retryable.
type Classifier func(*Response) error

// StatusError is a reply that did not count as done. Detail is the vendor's
// own error text.
type StatusError struct {
	Status int
	Detail string
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("HTTP %d %s", e.Status, http.StatusText(e.Status))
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Standard classifies r by the rule the vendors share: done when done(status)
// holds; retryable on 408, 429 and 5xx, after the delay the vendor named
// (RetryAfter); permanent otherwise, redirects included. detail is the
// vendor's error text for the error message.
func Standard(r *Response, done func(status int) bool, detail string) error {
	if done(r.Status) {
		return nil
	}
	err := &StatusError{Status: r.Status, Detail: detail}
	if Transient(r.Status) {
		return responders.Retryable(err, r.RetryAfter())
	}
	return responders.Permanent(err)
}

// Transient reports whether a status means "try again later": 408 Request
// Timeout, 429 Too Many Requests and every 5xx. A 5xx that will never heal
// (501) costs a few bounded retries; losing a command to a proxy's passing
// 5xx would cost more.
func Transient(status int) bool {
	return status == http.StatusRequestTimeout || status == http.StatusTooManyRequests ||
		(status >= 500 && status <= 599)
}

// Is returns a done function for Standard that accepts exactly the given
// statuses.
func Is(statuses ...int) func(int) bool {
	return func(s int) bool {
		for _, ok := range statuses {
			if s == ok {
				return true
			}
		}
		return false
	}
}

// Is2xx is a done function for Standard that accepts any 2xx status.
func Is2xx(s int) bool { return s >= 200 && s <= 299 }

// RetryAfter is the delay the vendor asked for, or 0 when it named none.
// See ParseRetryAfter.
func (r *Response) RetryAfter() time.Duration {
	d, _ := ParseRetryAfter(r.Header, r.Received)
	return d
}

// ParseRetryAfter reads the delay a reply asks for: Retry-After in seconds
// or as an HTTP-date, else X-RateLimit-Reset in Unix epoch seconds (a value
// below 1e8, a date in 1973, is taken as seconds from now, as some services
// send). A moment already past gives 0 with ok true.
func ParseRetryAfter(h http.Header, now time.Time) (d time.Duration, ok bool) {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			return seconds(n), true
		}
		if t, err := http.ParseTime(v); err == nil {
			return max(t.Sub(now), 0), true
		}
	}
	if v := strings.TrimSpace(h.Get("X-RateLimit-Reset")); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f >= 0 && f < 1e15 {
			if f < 1e8 {
				return time.Duration(f * float64(time.Second)), true
			}
			reset := time.Unix(0, 0).Add(time.Duration(f * float64(time.Second)))
			return max(reset.Sub(now), 0), true
		}
	}
	return 0, false
}

// seconds converts without overflowing on absurd values.
func seconds(n int64) time.Duration {
	const maxSeconds = int64(1<<63-1) / int64(time.Second)
	if n > maxSeconds {
		n = maxSeconds
	}
	return time.Duration(n) * time.Second
}

// maxTextBytes bounds the vendor text quoted in an error: enough for any
// vendor's error code or message, too little to flood a log.
const maxTextBytes = 300

// Text is the body as one line of printable text, at most about 300 bytes:
// the vendor's error text, fit for an error message.
func (r *Response) Text() string { return OneLine(string(r.Body)) }

// OneLine collapses s to one line of printable text of at most about 300
// bytes, so that vendor text cannot forge log lines or flood them.
func OneLine(s string) string {
	var b strings.Builder
	space := false
	for _, c := range strings.ToValidUTF8(s, "\uFFFD") {
		if unicode.IsSpace(c) || !unicode.IsPrint(c) {
			space = b.Len() > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		if b.Len()+utf8.RuneLen(c) > maxTextBytes {
			b.WriteString("…")
			break
		}
		b.WriteRune(c)
	}
	return b.String()
}

// JSON encodes a request body. Unlike json.Marshal it keeps <, > and & as
// they are instead of \u003c escapes: the same JSON, but a body that still
// reads like the command it came from.
func JSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
