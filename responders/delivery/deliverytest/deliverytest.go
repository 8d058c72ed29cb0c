// Package deliverytest provides fake vendors for responder tests.
//
// NewServer serves a handler with net/http/httptest over an in-memory
// network instead of a loopback socket: inside a testing/synctest bubble a
// goroutine blocked on a real socket is not "durably blocked", so the fake
// clock would never advance past a request timeout or a rate limiter. The same
// server works outside a bubble, and its Transport reaches it whatever host
// a URL names, so a test cannot reach a real vendor by mistake.
//
// Vendor is a scripted handler that records every request it receives;
// Config, Record and Command build responder inputs the way the daemon does.
package deliverytest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

// Host is the host name in the URL of every Server. It does not resolve.
const Host = "vendor.test"

// Server is an httptest.Server on an in-memory listener.
type Server struct {
	*httptest.Server
	// Transport dials the server for any address.
	Transport *http.Transport
}

// NewServer starts h and stops it when the test ends. Call it inside the
// synctest bubble that uses it.
func NewServer(tb testing.TB, h http.Handler) *Server {
	tb.Helper()
	l := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
	ts := &httptest.Server{Listener: l, Config: &http.Server{Handler: h}}
	ts.Start()
	tr := &http.Transport{DialContext: l.dial}
	tb.Cleanup(func() {
		tr.CloseIdleConnections()
		ts.Close()
	})
	return &Server{Server: ts, Transport: tr}
}

type pipeListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr{} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	server, client := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return Host }

// Reply is one scripted answer.
type Reply struct {
	Status int
	Header map[string]string
	Body   string
	// Delay holds the answer back, as a slow vendor would; the handler stops
	// waiting when the client goes away.
	Delay time.Duration
}

// Request is what the vendor received.
type Request struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   []byte
	// At is the arrival time (the fake clock's, inside a bubble).
	At time.Time
}

// Vendor answers the i-th request with the i-th reply, repeating the last
// one when the script runs out.
type Vendor struct {
	mu      sync.Mutex
	replies []Reply
	got     []Request
}

// NewVendor returns a vendor that plays replies in order.
func NewVendor(replies ...Reply) *Vendor {
	if len(replies) == 0 {
		replies = []Reply{{Status: http.StatusOK}}
	}
	return &Vendor{replies: replies}
}

func (v *Vendor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	v.mu.Lock()
	n := len(v.got)
	v.got = append(v.got, Request{
		Method: r.Method,
		Path:   r.URL.Path,
		Query:  r.URL.RawQuery,
		Header: r.Header.Clone(),
		Body:   body,
		At:     time.Now(),
	})
	reply := v.replies[min(n, len(v.replies)-1)]
	v.mu.Unlock()
	if reply.Delay > 0 {
		t := time.NewTimer(reply.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
	for k, val := range reply.Header {
		w.Header().Set(k, val)
	}
	w.WriteHeader(reply.Status)
	_, _ = io.WriteString(w, reply.Body)
}

// Requests returns the requests received so far.
func (v *Vendor) Requests() []Request {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]Request(nil), v.got...)
}

// JSON decodes b for a comparison that ignores key order and spacing.
func JSON(tb testing.TB, b []byte) any {
	tb.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		tb.Fatalf("not JSON: %v\n%s", err, b)
	}
	return v
}

// Config turns a config file's text into the responders.Config that the
// daemon would hand to Module.New: its data is normalised as the daemon's
// loader does it, by the module's ConfigSchemas.Normalise (upgraded to the
// module's current config schema, every default filled in). logger may be
// nil.
func Config(tb testing.TB, file []byte, logger *slog.Logger) (responders.Config, error) {
	tb.Helper()
	var wrapper struct {
		Schema string          `json:"schema"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(file, &wrapper); err != nil {
		tb.Fatalf("config is not self-describing JSON: %v", err)
	}
	key, err := schemas.ParseKey(wrapper.Schema)
	if err != nil {
		tb.Fatal(err)
	}
	m, ok := responders.ForConfig(key)
	if !ok {
		tb.Fatalf("no registered responder accepts %s", key)
	}
	n, err := m.Configs().Normalise("test.json", key, wrapper.Data)
	if err != nil {
		return responders.Config{}, err
	}
	var params json.RawMessage
	id, err := n.Unmarshal(m.Configs(), &params)
	if err != nil {
		tb.Fatal(err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return responders.Config{ID: id, File: "test.json", Schema: key, Parameters: params, Logger: logger}, nil
}

// Record wraps command data in the command and envelope that arrive on a
// Kinesis stream.
func Record(schema, data string) []byte {
	return []byte(fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0",
 "data":{
  "envelope":{"schema":"iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0",
   "data":{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z",
           "execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}},
  "command":{"schema":%q,"data":%s}}}`, schema, data))
}

// Command decodes a record with responders.Decode, as the daemon does, so
// that the command carries its typed payload.
func Command(tb testing.TB, record []byte) *responders.Command {
	tb.Helper()
	cmd, err := responders.Decode(record)
	if err != nil {
		tb.Fatalf("responders.Decode: %v", err)
	}
	return cmd
}

// MissingFields lists the properties of the bundled JSON Schema key that
// fixture does not use, as paths such as "attachments[].author_icon". A
// fixture with none missing proves, when it survives a round trip, that no
// field of the schema is dropped.
func MissingFields(tb testing.TB, key schemas.Key, fixture []byte) []string {
	tb.Helper()
	raw, ok := schemas.Raw(key)
	if !ok {
		tb.Fatalf("%s is not bundled", key)
	}
	var schema, value any
	if err := json.Unmarshal(raw, &schema); err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(fixture, &value); err != nil {
		tb.Fatal(err)
	}
	want := map[string]bool{}
	schemaPaths(schema.(map[string]any), schema, "", want, 0)
	have := map[string]bool{}
	valuePaths(value, "", have)
	var missing []string
	for p := range want {
		if !have[p] {
			missing = append(missing, p)
		}
	}
	slices.Sort(missing)
	return missing
}

func schemaPaths(root map[string]any, node any, path string, out map[string]bool, depth int) {
	n, ok := node.(map[string]any)
	if !ok || depth > 32 {
		return
	}
	if ref, ok := n["$ref"].(string); ok {
		if name, ok := strings.CutPrefix(ref, "#/definitions/"); ok {
			defs, _ := root["definitions"].(map[string]any)
			schemaPaths(root, defs[name], path, out, depth+1)
		}
		return
	}
	if props, ok := n["properties"].(map[string]any); ok {
		for k, sub := range props {
			p := k
			if path != "" {
				p = path + "." + k
			}
			out[p] = true
			schemaPaths(root, sub, p, out, depth+1)
		}
	}
	switch items := n["items"].(type) {
	case map[string]any:
		schemaPaths(root, items, path+"[]", out, depth+1)
	case []any:
		for _, it := range items {
			schemaPaths(root, it, path+"[]", out, depth+1)
		}
	}
	for _, kw := range []string{"anyOf", "allOf", "oneOf"} {
		if branches, ok := n[kw].([]any); ok {
			for _, b := range branches {
				schemaPaths(root, b, path, out, depth+1)
			}
		}
	}
}

func valuePaths(v any, path string, out map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, sub := range v {
			p := k
			if path != "" {
				p = path + "." + k
			}
			out[p] = true
			valuePaths(sub, p, out)
		}
	case []any:
		for _, sub := range v {
			valuePaths(sub, path+"[]", out)
		}
	}
}
