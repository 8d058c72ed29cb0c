package delivery

import (
	"context"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"

	"github.com/sauna-io/sauna/responders/fence"
)

// The fence of a request (package fence) is checked on every write to its
// connection, the last moment before bytes leave: a worker frozen after an
// earlier check and woken past its fence sends nothing. Checking when the
// request body is first read would be too late: net/http flushes the
// request line and headers before reading any body but the standard
// library's in-memory ones, and a vendor may act on headers alone.
//
// What remains: the instant between the check and the write system call (a
// process frozen exactly there sends on waking), and the requests whose
// bytes left before the fence, which are let finish (cutting them short
// would not undo what the vendor does with them).

// fencedTransport is the default transport: http.DefaultTransport's
// settings, connections that check the fence, and HTTP/1.1 only, so that a
// connection carries one request at a time and the fence a write answers to
// is known (HTTP/2 interleaves the frames of many requests).
func fencedTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	// Up to maxInFlightPerShard commands per shard call one vendor host at
	// once; the default of 2 idle connections per host would make most of
	// them open a new connection (and TLS handshake).
	t.MaxIdleConnsPerHost = 128
	var p http.Protocols
	p.SetHTTP1(true)
	t.Protocols = &p
	dial := t.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &fencedConn{Conn: c}, nil
	}
	return t
}

// fencedConn refuses writes once the fence of the request it carries has
// passed. TLS runs over it, so the check comes before encryption.
type fencedConn struct {
	net.Conn
	// req is the request the connection carries, set when the transport
	// hands the connection to it and cleared after its response; writes
	// with none (a TLS handshake) are not fenced.
	req atomic.Pointer[fencedRequest]
}

type fencedRequest struct {
	ctx   context.Context
	abort context.CancelCauseFunc
}

func (c *fencedConn) Write(b []byte) (int, error) {
	if r := c.req.Load(); r != nil {
		if err := fence.Check(r.ctx); err != nil {
			// Cancelled with the fence as the cause, the request is not
			// retried on another connection and its error says why.
			r.abort(err)
			return 0, err
		}
	}
	return c.Conn.Write(b)
}

// watchFence binds a request made with the returned context to the
// connection it gets, when ctx carries a fence; abort cancels ctx. The
// binding lasts until done is called, after the response: the transport
// reports a request written once it is in the connection's buffer, before
// the bytes leave.
func watchFence(ctx context.Context, abort context.CancelCauseFunc) (_ context.Context, done func()) {
	if _, ok := fence.Until(ctx); !ok {
		return ctx, func() {}
	}
	r := &fencedRequest{ctx: ctx, abort: abort}
	var conn atomic.Pointer[fencedConn]
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			c := info.Conn
			if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
				c = tc.NetConn()
			}
			if fc, ok := c.(*fencedConn); ok {
				fc.req.Store(r)
				if old := conn.Swap(fc); old != nil {
					old.req.CompareAndSwap(r, nil)
				}
			}
		},
	})
	return ctx, func() {
		if fc := conn.Load(); fc != nil {
			fc.req.CompareAndSwap(r, nil)
		}
	}
}
