package emulator

import (
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
// never scans.
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
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("emulator: proxy target %q: %v", target, err)
	}
	c := &OpCounter{ops: make(map[string]int)}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := r.Header.Get("X-Amz-Target")
		if i := strings.LastIndexByte(op, '.'); i >= 0 {
			op = op[i+1:]
		}
		c.mu.Lock()
		c.ops[op]++
		c.mu.Unlock()
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

// Count is how many times operation op (e.g. "Scan") went through.
func (c *OpCounter) Count(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ops[op]
}

// Reset forgets the counts so far.
func (c *OpCounter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.ops)
}
