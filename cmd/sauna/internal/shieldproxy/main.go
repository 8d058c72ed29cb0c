// Command shieldproxy stands between sauna processes and one emulator in
// cmd/sauna's end-to-end tests, so that a kill -9 never reaches the
// emulator (package shield says how).
//
// It is a program of its own rather than a server inside the test binary
// because the tests run with -race, which makes the test binary's HTTP work
// several times dearer: proxying every call of a test that runs tens of
// thousands of commands cost more CPU than the sauna processes under test.
//
// Usage: shieldproxy -target http://127.0.0.1:PORT. It prints its own URL
// on the first line of stdout and serves until stdin is closed (the test,
// or the test binary, ended). GET /shieldproxy/ops answers the number of
// requests seen so far by operation (the X-Amz-Target after its last dot),
// as a JSON object.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sauna-io/sauna/cmd/sauna/internal/shield"
)

func main() {
	target := flag.String("target", "", "the emulator's URL")
	flag.Parse()
	if *target == "" {
		fmt.Fprintln(os.Stderr, "shieldproxy: -target is required")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "shieldproxy:", err)
		os.Exit(1)
	}
	p := &proxy{ops: map[string]int{}, Forwarder: shield.Forwarder{Target: strings.TrimSuffix(*target, "/"),
		Client: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}}}}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second}
	fmt.Printf("http://%s\n", ln.Addr())
	go func() {
		// The test closes stdin when it is done with the proxy; so does
		// the kernel when the test binary dies.
		_, _ = io.Copy(io.Discard, os.Stdin)
		ctx, cancel := context.WithTimeout(context.Background(), 35*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "shieldproxy:", err)
		os.Exit(1)
	}
}

type proxy struct {
	shield.Forwarder
	mu  sync.Mutex
	ops map[string]int
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/shieldproxy/ops" {
		p.mu.Lock()
		ops := maps.Clone(p.ops)
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ops)
		return
	}
	p.mu.Lock()
	p.ops[shield.Op(r)]++
	p.mu.Unlock()
	p.Forwarder.ServeHTTP(w, r)
}
