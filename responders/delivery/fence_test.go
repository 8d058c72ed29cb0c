package delivery

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/responders/fence"
)

// wire counts what reached a test server, byte by byte, and reports each
// connection's end: once the client has closed a connection, everything it
// sent on it has been counted.
type wire struct {
	net.Listener
	bytes, conns atomic.Int64
	ended        chan struct{}
}

func tap(l net.Listener) *wire { return &wire{Listener: l, ended: make(chan struct{}, 64)} }

func (w *wire) Accept() (net.Conn, error) {
	c, err := w.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w.conns.Add(1)
	return &tappedConn{Conn: c, w: w}, nil
}

type tappedConn struct {
	net.Conn
	w    *wire
	once sync.Once
}

func (c *tappedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.w.bytes.Add(int64(n))
	if err != nil {
		c.once.Do(func() { c.w.ended <- struct{}{} })
	}
	return n, err
}

// waitEnded waits until n more connections have ended.
func (w *wire) waitEnded(t *testing.T, n int) {
	t.Helper()
	giveUp := time.After(30 * time.Second)
	for range n {
		select {
		case <-w.ended:
		case <-giveUp:
			t.Fatal("the client never closed its connection")
		}
	}
}

// fenceServer serves 204s and counts the requests that reached the handler.
func fenceServer(t *testing.T, tls bool) (*httptest.Server, *wire, *atomic.Int64) {
	t.Helper()
	var handled atomic.Int64
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		handled.Add(1)
		w.Header().Set("X-Proto", r.Proto)
		w.WriteHeader(http.StatusNoContent)
	}))
	tw := tap(ts.Listener)
	ts.Listener = tw
	if tls {
		ts.EnableHTTP2 = true
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(ts.Close)
	return ts, tw, &handled
}

func newFencedClient(t *testing.T, ts *httptest.Server) *Client {
	t.Helper()
	c, err := New(Options{Limit: Unlimited})
	if err != nil {
		t.Fatal(err)
	}
	if ts.TLS != nil {
		c.http.Transport.(*http.Transport).TLSClientConfig = ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// passingAtConn returns ctx fenced an hour ahead until the transport hands
// the request a connection, and in the past from then on: the worker froze
// after every earlier check and woke past its fence just before writing.
func passingAtConn(ctx context.Context) context.Context {
	var passed atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { passed.Store(true) },
	})
	ahead := time.Now().Add(time.Hour)
	return fence.With(ctx, func() time.Time {
		if passed.Load() {
			return time.Now().Add(-time.Millisecond)
		}
		return ahead
	})
}

func protoOK(r *Response) error {
	if r.Status != http.StatusNoContent {
		return responders.Permanent(errors.New(r.Text()))
	}
	return nil
}

func wantFenced(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, fence.ErrPassed) {
		t.Fatalf("Send = %v, want an error wrapping fence.ErrPassed", err)
	}
	if v, _ := responders.Classify(err); v != responders.Retry {
		t.Errorf("a fenced request is %v, want retryable: nothing was sent", v)
	}
}

// A request whose fence passes after the last check before the transport
// took over leaves nothing on the wire: not its request line, not its
// headers, not its body; on a fresh connection or a reused one, with a body
// or without.
func TestFenceStopsEveryByte(t *testing.T) {
	for _, tc := range []struct {
		name   string
		method string
		body   []byte
		reuse  bool
	}{
		{"POST on a fresh connection", http.MethodPost, []byte(`{"text":"hello"}`), false},
		{"GET on a fresh connection", http.MethodGet, nil, false},
		{"POST on a reused connection", http.MethodPost, []byte(`{"text":"hello"}`), true},
		{"GET on a reused connection", http.MethodGet, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, tw, handled := fenceServer(t, false)
			c := newFencedClient(t, ts)
			req := Request{Method: tc.method, URL: ts.URL + "/hook", Body: tc.body}
			if tc.reuse {
				if err := c.Send(t.Context(), req, protoOK); err != nil {
					t.Fatalf("unfenced send: %v", err)
				}
			}
			before, handledBefore := tw.bytes.Load(), handled.Load()

			wantFenced(t, c.Send(passingAtConn(t.Context()), req, protoOK))
			tw.waitEnded(t, 1)
			if got := tw.bytes.Load() - before; got != 0 {
				t.Errorf("%d bytes reached the server after the fence passed, want none", got)
			}
			if handled.Load() != handledBefore {
				t.Error("the fenced request reached the handler")
			}
			if got := tw.conns.Load(); got != 1 {
				t.Errorf("%d connections, want 1: the fenced request must not be retried on another", got)
			}

			// Unfenced, the same request goes through on a new connection.
			if err := c.Send(t.Context(), req, protoOK); err != nil {
				t.Fatalf("unfenced send after the fenced one: %v", err)
			}
		})
	}
}

// Over TLS the check comes before encryption, and a server offering HTTP/2
// gets HTTP/1.1, whose connections carry one request at a time.
func TestFenceOverTLS(t *testing.T) {
	ts, tw, handled := fenceServer(t, true)
	c := newFencedClient(t, ts)
	var proto string
	req := Request{URL: ts.URL + "/hook", Body: []byte(`{}`)}
	err := c.Send(t.Context(), req, func(r *Response) error {
		proto = r.Header.Get("X-Proto")
		return protoOK(r)
	})
	if err != nil {
		t.Fatal(err)
	}
	if proto != "HTTP/1.1" {
		t.Errorf("request went as %s, want HTTP/1.1", proto)
	}
	wantFenced(t, c.Send(passingAtConn(t.Context()), req, protoOK))
	tw.waitEnded(t, 1)
	if handled.Load() != 1 {
		t.Errorf("%d requests handled, want only the unfenced one", handled.Load())
	}
}

// A fence already passed stops Send before it dials, and Send does not
// retry it: only the caller can move the fence.
func TestFencePassedBeforeSend(t *testing.T) {
	ts, tw, _ := fenceServer(t, false)
	c := newFencedClient(t, ts)
	var evaluated atomic.Int64
	ctx := fence.With(t.Context(), func() time.Time {
		evaluated.Add(1)
		return time.Now().Add(-time.Second)
	})
	wantFenced(t, c.Send(ctx, Request{URL: ts.URL}, protoOK))
	if n := tw.conns.Load(); n != 0 {
		t.Errorf("%d connections opened for a request past its fence", n)
	}
	if n := evaluated.Load(); n != 1 {
		t.Errorf("fence checked %d times, want once: Send must not retry a fenced request", n)
	}
}

// A caller's own transport gets the fence checked before each request.
func TestFenceWithCustomTransport(t *testing.T) {
	var calls atomic.Int64
	c, err := New(Options{Limit: Unlimited, Transport: roundTrip(func(*http.Request) (*http.Response, error) {
		calls.Add(1)
		return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody}, nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	ctx := fence.With(t.Context(), func() time.Time { return time.Now().Add(-time.Second) })
	wantFenced(t, c.Send(ctx, Request{URL: "http://vendor.test/"}, protoOK))
	if calls.Load() != 0 {
		t.Error("the custom transport was called past the fence")
	}
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
