package emulator

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// OpCounter is an HTTP proxy in front of an emulator that counts the AWS
// JSON operations passing through it (by their X-Amz-Target header), so
// that a test can assert which calls a client made, e.g. that a search
// never scans. DynamoDB requests are also counted by the tables they name
// (CountOn).
type OpCounter struct {
	// URL is the proxy's endpoint, to use in place of the emulator's.
	URL string

	mu  sync.Mutex
	ops map[string]int
}

// NewOpCounter starts a counting proxy to target (an emulator endpoint),
// stopped when the test ends.
func NewOpCounter(t testing.TB, target string) *OpCounter {
	t.Helper()
	c := &OpCounter{ops: make(map[string]int)}
	c.URL = NewProxy(t, target, func(r *http.Request, body []byte) {
		c.count(r.Header.Get("X-Amz-Target"), body)
	})
	return c
}

// NewProxy starts an HTTP proxy to target (an emulator endpoint), stopped
// when the test ends, and returns its URL. before sees every request with
// its whole body before it is passed on, and may hold it there (e.g. until
// another request has arrived); the request's context ends when its client
// gives up.
func NewProxy(t testing.TB, target string, before func(r *http.Request, body []byte)) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("emulator: proxy target %q: %v", target, err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		before(r, body)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func (c *OpCounter) count(target string, body []byte) {
	op := target[strings.LastIndexByte(target, '.')+1:]
	var req struct {
		TableName    string
		RequestItems map[string]json.RawMessage
	}
	_ = json.Unmarshal(body, &req)
	var tables []string
	if req.TableName != "" {
		tables = append(tables, req.TableName)
	}
	for name := range req.RequestItems {
		tables = append(tables, name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ops[op]++
	for _, table := range tables {
		c.ops[op+" "+table]++
	}
}

// Count is how many times operation op (e.g. "Scan") went through.
func (c *OpCounter) Count(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops[op]
}

// CountOn is how many requests of operation op named table.
func (c *OpCounter) CountOn(op, table string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops[op+" "+table]
}

// Counts returns every count so far, keyed by operation, and by operation
// and table joined by a space.
func (c *OpCounter) Counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.ops)
}

// Reset forgets the counts so far.
func (c *OpCounter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.ops)
}
