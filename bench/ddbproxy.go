package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
)

// ddbProxy is a reverse proxy in front of the DynamoDB emulator that counts
// every request by table and operation (the X-Amz-Target suffix), and the
// items each Scan read. Consumers reach DynamoDB through it when a scenario
// wants to know what they cost.
type ddbProxy struct {
	srv *http.Server
	ln  net.Listener

	mu     sync.Mutex
	counts map[opKey]int64
}

// opKey is one counter: a table, an operation and, for the lease table, the
// kind of item (see itemKind).
type opKey struct {
	table, op, kind string
}

// Item kinds of a lease table request.
const (
	kindShard   = "shard"   // a shard's lease item
	kindOwn     = "own"     // sauna's own items: census, stream binding (ShardID contains '#')
	kindScanned = "scanned" // items a Scan read (op "Scan")
)

// tableCtxKey carries a request's table name to the response hook.
type tableCtxKey struct{}

func startDDBProxy(target string) (*ddbProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &ddbProxy{ln: ln, counts: map[opKey]int64{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = p.countScanned
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		op := r.Header.Get("X-Amz-Target")
		if i := strings.LastIndexByte(op, '.'); i >= 0 {
			op = op[i+1:]
		}
		keys := requestKeys(op, body)
		p.mu.Lock()
		for _, k := range keys {
			p.counts[k]++
		}
		p.mu.Unlock()
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tableCtxKey{}, keys[0].table)))
	})}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *ddbProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *ddbProxy) close() { _ = p.srv.Close() }

// snapshot returns a copy of the counters.
func (p *ddbProxy) snapshot() map[opKey]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[opKey]int64, len(p.counts))
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

// requestKeys names the counters one request adds to: one per table it
// touches (batch and transaction calls may touch several).
func requestKeys(op string, body []byte) []opKey {
	var req struct {
		TableName     string
		Key           map[string]map[string]any
		Item          map[string]map[string]any
		RequestItems  map[string]json.RawMessage
		TransactItems []map[string]struct{ TableName string }
	}
	_ = json.Unmarshal(body, &req) // an unreadable body is still counted, on table "?"
	tables := map[string]bool{}
	if req.TableName != "" {
		tables[req.TableName] = true
	}
	for t := range req.RequestItems {
		tables[t] = true
	}
	for _, ti := range req.TransactItems {
		for _, a := range ti {
			tables[a.TableName] = true
		}
	}
	if len(tables) == 0 {
		tables["?"] = true
	}
	kind := ""
	key := req.Key
	if key == nil {
		key = req.Item
	}
	if v, ok := key["ShardID"]["S"].(string); ok {
		kind = kindShard
		if strings.Contains(v, "#") {
			kind = kindOwn
		}
	}
	names := make([]string, 0, len(tables))
	for t := range tables {
		names = append(names, t)
	}
	sort.Strings(names)
	out := make([]opKey, len(names))
	for i, t := range names {
		out[i] = opKey{table: t, op: op, kind: kind}
	}
	return out
}

// countScanned adds a Scan's ScannedCount to the table's "scanned" counter:
// a Scan is one request but reads (and is billed for) every item.
func (p *ddbProxy) countScanned(res *http.Response) error {
	req := res.Request
	if req == nil || !strings.HasSuffix(req.Header.Get("X-Amz-Target"), ".Scan") || res.StatusCode != http.StatusOK {
		return nil
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return err
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	table, _ := req.Context().Value(tableCtxKey{}).(string)
	var out struct{ ScannedCount int64 }
	if json.Unmarshal(body, &out) == nil && table != "" {
		p.mu.Lock()
		p.counts[opKey{table: table, op: "Scan", kind: kindScanned}] += out.ScannedCount
		p.mu.Unlock()
	}
	return nil
}
