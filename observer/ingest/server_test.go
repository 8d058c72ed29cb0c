package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type testServer struct {
	srv  *Server
	url  string
	logs *logBuffer
	met  *Metrics
	fake *fakeKinesis
}

func startServer(t *testing.T, cfg Config, f *fakeKinesis) *testServer {
	t.Helper()
	logs := &logBuffer{}
	met := NewMetrics(prometheus.NewRegistry())
	s := New(cfg, Options{
		Logger:    slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics:   met,
		NewPutter: func(context.Context, Config) (Putter, error) { return f, nil },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	deadline := time.Now().Add(10 * time.Second)
	for s.Addr() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("not listening: %s", s.NotReady())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return &testServer{srv: s, url: "http://" + s.Addr().String() + "/v1/commands", logs: logs, met: met, fake: f}
}

func testConfig(t *testing.T) Config {
	t.Helper()
	c, err := parseData(strings.Replace(configData(""), "127.0.0.1:8080", "127.0.0.1:0", 1))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func post(t *testing.T, url, token, ctype, body string, hdr ...string) (int, http.Header, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", ctype)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body %q: %v", b, err)
	}
	return resp.StatusCode, resp.Header, m
}

func TestServerAnswers(t *testing.T) {
	ts := startServer(t, testConfig(t), &fakeKinesis{})
	const tok = "s3cret-token"
	if code, h, _ := post(t, ts.url, "", "application/json", slackInner("x")); code != 401 || h.Get("WWW-Authenticate") == "" {
		t.Errorf("no token: %d", code)
	}
	if code, _, _ := post(t, ts.url, "wrong", "application/json", slackInner("x")); code != 401 {
		t.Errorf("wrong token: %d", code)
	}
	if code, _, _ := post(t, ts.url, tok, "text/plain", slackInner("x")); code != 415 {
		t.Errorf("text/plain: %d", code)
	}
	if code, _, _ := post(t, ts.url, tok, "application/json", `{"text":"`+strings.Repeat("x", 1<<20)+`"}`); code != 413 {
		t.Errorf("over the body limit: %d", code)
	}
	code, _, body := post(t, ts.url, tok, "application/x-ndjson", slackInner("ok")+"\n"+`{"schema":"iglu:com.acme/x/jsonschema/1-0-0","data":{}}`)
	errs, _ := body["errors"].([]any)
	if code != 400 || len(errs) != 1 || errs[0].(map[string]any)["index"] != 1.0 {
		t.Errorf("invalid second command: %d %v", code, body)
	}
	if n := len(ts.fake.callKeys()); n != 0 {
		t.Errorf("%d PutRecords calls after refused requests", n)
	}
	code, _, body = post(t, ts.url, tok, "application/x-ndjson", slackInner("a")+"\n"+slackInner("b")+"\n", PartitionKeyHeader, "pk-1")
	acc, _ := body["accepted"].([]any)
	if code != 202 || len(acc) != 2 {
		t.Fatalf("valid batch: %d %v", code, body)
	}
	for i, a := range acc {
		m := a.(map[string]any)
		if m["index"] != float64(i) || m["commandId"] == "" || m["sequenceNumber"] == "" || m["shardId"] == "" {
			t.Errorf("accepted %d: %v", i, m)
		}
	}
	for _, c := range ts.fake.callKeys() {
		for _, k := range c {
			if k != "pk-1" {
				t.Errorf("partition key %q, want the header's", k)
			}
		}
	}
	if got := counterValue(t, ts.met.commands); got != 2 {
		t.Errorf("sauna_ingest_commands_total %v", got)
	}
	if got := counterValue(t, ts.met.requests.WithLabelValues("401")); got != 2 {
		t.Errorf("401 count %v", got)
	}
	logs := ts.logs.String()
	if strings.Contains(logs, tok) {
		t.Error("the token is in the log")
	}
	if !strings.Contains(logs, `"token":"ci"`) {
		t.Errorf("the token name is not logged:\n%s", logs)
	}
}

// A changed token list applies to the next request, on the same listener.
func TestServerTokenReload(t *testing.T) {
	cfg := testConfig(t)
	ts := startServer(t, cfg, &fakeKinesis{})
	addr := ts.srv.Addr().String()
	next := cfg
	next.Tokens = []Token{{Name: "deploy", SHA256: sha256Of("new-token")}}
	ts.srv.Update(next)
	waitUntil(t, func() bool {
		code, _, _ := post(t, ts.url, "new-token", "application/json", slackInner("x"))
		return code == 202
	})
	if code, _, _ := post(t, ts.url, "s3cret-token", "application/json", slackInner("x")); code != 401 {
		t.Errorf("removed token: %d", code)
	}
	if ts.srv.Addr().String() != addr {
		t.Errorf("listener moved from %s to %s", addr, ts.srv.Addr())
	}
}

// Records throttled until the put deadline are answered 429, and so is a
// request over its token's rate.
func TestServerRateLimitAndThrottling(t *testing.T) {
	cfg := testConfig(t)
	cfg.Tokens = append(cfg.Tokens, Token{Name: "slow", SHA256: sha256Of("slow-token"), RatePerSecond: 0.001})
	cfg.PutTimeout = 200 * time.Millisecond
	f := &fakeKinesis{answer: func(int, string) string { return "ProvisionedThroughputExceededException" }}
	ts := startServer(t, cfg, f)
	code, h, body := postUntilSent(t, ts, "s3cret-token")
	if code != 429 || h.Get("Retry-After") == "" {
		t.Fatalf("throttled put: %d %v", code, body)
	}
	failed, _ := body["failed"].([]any)
	if len(failed) != 1 || failed[0].(map[string]any)["state"] != "throttled" {
		t.Errorf("failed records %v", body)
	}
	// The first request of the rate-limited token takes its burst, whatever
	// became of its put; the second is refused before any put.
	post(t, ts.url, "slow-token", "application/json", slackInner("x"))
	calls := len(f.callKeys())
	code, h, body = post(t, ts.url, "slow-token", "application/json", slackInner("x"))
	if msg, _ := body["error"].(string); code != 429 || h.Get("Retry-After") == "" || !strings.Contains(msg, "rate limit") {
		t.Errorf("over the token's rate: %d %v", code, body)
	}
	if n := len(f.callKeys()); n != calls {
		t.Errorf("%d PutRecords calls for a request over its token's rate", n-calls)
	}
}

// postUntilSent posts one command until a PutRecords call carried it and
// returns that answer. Under load the put deadline can pass before the
// producer first sends a record, which is then answered "not put" and says
// nothing about how an answered call is read.
func postUntilSent(t *testing.T, ts *testServer, token string) (int, http.Header, map[string]any) {
	t.Helper()
	for range 50 {
		calls := len(ts.fake.callKeys())
		code, h, body := post(t, ts.url, token, "application/json", slackInner("x"))
		if len(ts.fake.callKeys()) > calls {
			return code, h, body
		}
	}
	t.Fatal("no request was sent to Kinesis before its put deadline in 50 tries")
	return 0, nil, nil
}

func sha256Of(s string) [32]byte { return sha256.Sum256([]byte(s)) }

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A call that gets no answer: 503, and the client is told the record may
// be on the stream.
func TestServerUnknownOutcome(t *testing.T) {
	cfg := testConfig(t)
	cfg.PutTimeout = 200 * time.Millisecond
	ts := startServer(t, cfg, &fakeKinesis{callErr: func(int) error { return io.ErrUnexpectedEOF }})
	code, h, body := postUntilSent(t, ts, "s3cret-token")
	failed, _ := body["failed"].([]any)
	if code != 503 || h.Get("Retry-After") == "" || len(failed) != 1 || failed[0].(map[string]any)["state"] != "unknown" {
		t.Errorf("unanswered put: %d %v", code, body)
	}
	if acc, _ := body["accepted"].([]any); len(acc) != 0 {
		t.Errorf("accepted %v", acc)
	}
}

// Readiness follows the listener: a taken port is reported, and the
// endpoint becomes ready once it can listen.
func TestServerNotReadyWhileNotListening(t *testing.T) {
	ts := startServer(t, testConfig(t), &fakeKinesis{})
	if why := ts.srv.NotReady(); why != "" {
		t.Fatalf("listening server not ready: %s", why)
	}
	cfg := testConfig(t)
	cfg.Listen = ts.srv.Addr().String() // taken by the first server
	s := New(cfg, Options{
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		NewPutter:      func(context.Context, Config) (Putter, error) { return &fakeKinesis{}, nil },
		RestartBackoff: 10 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitUntil(t, func() bool { return strings.Contains(s.NotReady(), "address already in use") })
	free := cfg
	free.Listen = "127.0.0.1:0"
	s.Update(free)
	waitUntil(t, func() bool { return s.NotReady() == "" })
}
