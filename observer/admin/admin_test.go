package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeStatus is a StatusSource whose state the test changes.
type fakeStatus struct {
	mu sync.Mutex
	st Status
}

func (f *fakeStatus) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeStatus) set(st Status) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func newTestHandler(src StatusSource, g Pauser, opts Options) http.Handler {
	opts.Status = src
	opts.Pauser = g
	if opts.Now == nil {
		opts.Now = func() time.Time { return t0 }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return NewHandler(opts)
}

func do(t *testing.T, h http.Handler, method, path string, hdr ...string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	req.Host = "127.0.0.1:9779" // httptest's example.com is not a name of the listener
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func running(id string, shards ...ShardStatus) ObserverStatus {
	return ObserverStatus{ID: id, Stream: id + "-stream", Running: true, StartedAt: t0.Add(-time.Minute), Shards: shards}
}

func polled(id string, ago time.Duration) ShardStatus {
	return ShardStatus{ID: id, LeaseGainedAt: t0.Add(-time.Hour), LastPollAt: t0.Add(-ago)}
}

func TestReadyz(t *testing.T) {
	src := &fakeStatus{}
	g := NewGate()
	h := newTestHandler(src, g, Options{PollStaleAfter: 30 * time.Second})

	steps := []struct {
		name      string
		st        Status
		pause     bool
		wantCode  int
		wantLines []string
	}{
		{name: "nothing configured", wantCode: 503, wantLines: []string{"no enabled observer or ingest endpoint"}},
		{name: "an ingest endpoint alone", st: Status{Ingest: []IngestStatus{{ID: "ingest", Listen: "127.0.0.1:8080", Stream: "s"}}},
			wantCode: 200},
		{name: "worker starting", st: Status{Observers: []ObserverStatus{{ID: "orders", Stream: "s"}}},
			wantCode: 503, wantLines: []string{"observer orders: worker not running"}},
		{name: "worker failed", st: Status{Observers: []ObserverStatus{{ID: "orders", Stream: "s", LastError: "lease table: ResourceNotFoundException"}}},
			wantCode: 503, wantLines: []string{"observer orders: worker not running; last error: lease table: ResourceNotFoundException"}},
		{name: "no lease yet", st: Status{Observers: []ObserverStatus{running("orders")}},
			wantCode: 503, wantLines: []string{"observer orders: holds no shard lease yet"}},
		{name: "leases held and polled", st: Status{Observers: []ObserverStatus{running("orders", polled("shardId-0", time.Second), polled("shardId-1", 29*time.Second))}},
			wantCode: 200},
		{name: "one observer of two not ready", st: Status{Observers: []ObserverStatus{
			running("orders", polled("shardId-0", time.Second)),
			running("billing"),
		}}, wantCode: 503, wantLines: []string{"observer billing: holds no shard lease yet"}},
		{name: "a shard went silent", st: Status{Observers: []ObserverStatus{running("orders", polled("shardId-0", time.Second), polled("shardId-1", 2*time.Minute))}},
			wantCode: 503, wantLines: []string{"observer orders: shard shardId-1 not polled for 2m0s (limit 30s)"}},
		{name: "a child shard waiting for its parent too long", st: Status{Observers: []ObserverStatus{running("orders", ShardStatus{ID: "shardId-9", LeaseGainedAt: t0.Add(-time.Minute)})}},
			wantCode: 503, wantLines: []string{"observer orders: shard shardId-9 not polled since its lease was gained for 1m0s (limit 30s)"}},
		{name: "a fresh child shard", st: Status{Observers: []ObserverStatus{running("orders", ShardStatus{ID: "shardId-9", LeaseGainedAt: t0.Add(-time.Second)})}},
			wantCode: 200},
		{name: "paused", st: Status{Observers: []ObserverStatus{running("orders", polled("shardId-0", time.Second))}}, pause: true,
			wantCode: 503, wantLines: []string{"intake is paused (POST /resume to resume)"}},
		{name: "resumed", st: Status{Observers: []ObserverStatus{running("orders", polled("shardId-0", time.Second))}},
			wantCode: 200},
	}
	for _, s := range steps {
		src.set(s.st)
		if s.pause {
			g.Pause()
		} else {
			g.Resume()
		}
		code, body := do(t, h, "GET", "/readyz")
		if code != s.wantCode {
			t.Errorf("%s: code %d, want %d; body:\n%s", s.name, code, s.wantCode, body)
		}
		if s.wantCode == 200 {
			if body != "ready\n" {
				t.Errorf("%s: body %q", s.name, body)
			}
			continue
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(body), "\n")[1:] {
			got = append(got, strings.TrimPrefix(l, "- "))
		}
		if diff := cmp.Diff(s.wantLines, got); diff != "" {
			t.Errorf("%s: reasons (-want +got):\n%s", s.name, diff)
		}
	}
}

func TestPauseAndResume(t *testing.T) {
	src := &fakeStatus{st: Status{Observers: []ObserverStatus{running("orders", polled("shardId-0", time.Second))}}}
	g := NewGate()
	h := newTestHandler(src, g, Options{})

	type pauseResp struct {
		Paused      bool      `json:"paused"`
		Changed     bool      `json:"changed"`
		PausedSince time.Time `json:"pausedSince"`
	}
	post := func(path string) pauseResp {
		t.Helper()
		code, body := do(t, h, "POST", path)
		if code != 200 {
			t.Fatalf("POST %s: %d %s", path, code, body)
		}
		var r pauseResp
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("POST %s: %v in %s", path, err, body)
		}
		return r
	}

	if r := post("/pause"); !r.Paused || !r.Changed || r.PausedSince.IsZero() {
		t.Errorf("first pause: %+v", r)
	}
	if !g.Paused() {
		t.Error("the gate is open after POST /pause")
	}
	if r := post("/pause"); !r.Paused || r.Changed {
		t.Errorf("second pause: %+v, want paused and unchanged", r)
	}
	if _, body := do(t, h, "GET", "/status"); !strings.Contains(body, `"paused": true`) || !strings.Contains(body, `"pausedSince"`) {
		t.Errorf("status while paused:\n%s", body)
	}
	if code, _ := do(t, h, "GET", "/readyz"); code != 503 {
		t.Errorf("readyz while paused: %d", code)
	}
	if r := post("/resume"); r.Paused || !r.Changed {
		t.Errorf("resume: %+v", r)
	}
	if g.Paused() {
		t.Error("the gate is closed after POST /resume")
	}
	if code, _ := do(t, h, "GET", "/readyz"); code != 200 {
		t.Errorf("readyz after resume: %d", code)
	}

	// Only POST changes state, and browsers from other origins are refused,
	// so a web page cannot pause the daemon.
	if code, _ := do(t, h, "GET", "/pause"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /pause: %d, want 405", code)
	}
	if code, _ := do(t, h, "POST", "/pause", "Sec-Fetch-Site", "cross-site"); code != http.StatusForbidden {
		t.Errorf("cross-site POST /pause: %d, want 403", code)
	}
	if code, _ := do(t, h, "POST", "/pause", "Origin", "https://evil.example"); code != http.StatusForbidden {
		t.Errorf("cross-origin POST /pause: %d, want 403", code)
	}
	if g.Paused() {
		t.Error("a refused request paused the gate")
	}

	noPause := newTestHandler(src, nil, Options{})
	if code, _ := do(t, noPause, "POST", "/pause"); code != http.StatusNotImplemented {
		t.Errorf("POST /pause without a pauser: %d, want 501", code)
	}
}

func TestStatusDocument(t *testing.T) {
	src := &fakeStatus{st: Status{
		Observers: []ObserverStatus{{
			ID: "orders", Stream: "orders-stream", Running: true, WorkerID: "host:abc", StartedAt: t0.Add(-time.Minute),
			Shards: []ShardStatus{
				{ID: "shardId-0", LeaseGainedAt: t0.Add(-time.Minute), LastPollAt: t0.Add(-time.Second), MillisBehindLatest: 1500},
				{ID: "shardId-1", LeaseGainedAt: t0.Add(-time.Minute), LastPollAt: t0.Add(-time.Second)},
			},
			MillisBehindLatest: 1500, InFlight: 3, LastError: "old trouble", LastErrorAt: t0.Add(-time.Hour),
			Workers: 2,
			Leases: []LeaseStatus{
				{Shard: "shardId-0", Owner: "host:abc", Checkpoint: "7", MillisBehindLatest: new(int64(1500))},
				{Shard: "shardId-2", Owner: "host:def", Checkpoint: "9", HandoffTo: "host:abc"},
			},
		}},
		Responders: []ResponderStatus{{ID: "slack-ops", Module: "slack", State: "enabled"}},
		Reload:     ReloadStatus{LastRescan: t0, LastSuccess: t0, Rescans: 4, Applied: 2},
	}}
	h := newTestHandler(src, NewGate(), Options{})
	code, body := do(t, h, "GET", "/status")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%v in %s", err, body)
	}
	want := map[string]any{
		"time":     "2026-11-22T10:00:00Z",
		"ready":    true,
		"notReady": []any{},
		"ingest":   []any{},
		"paused":   false,
		"observers": []any{map[string]any{
			"id": "orders", "stream": "orders-stream", "running": true, "workerId": "host:abc",
			"startedAt": "2026-11-22T09:59:00Z", "shardsHeld": float64(2),
			"shards": []any{
				map[string]any{"id": "shardId-0", "leaseGainedAt": "2026-11-22T09:59:00Z", "lastPollAt": "2026-11-22T09:59:59Z", "millisBehindLatest": float64(1500)},
				map[string]any{"id": "shardId-1", "leaseGainedAt": "2026-11-22T09:59:00Z", "lastPollAt": "2026-11-22T09:59:59Z", "millisBehindLatest": float64(0)},
			},
			"millisBehindLatest": float64(1500), "inFlight": float64(3),
			"lastError": "old trouble", "lastErrorAt": "2026-11-22T09:00:00Z",
			"workers": float64(2),
			"leases": []any{
				map[string]any{"shard": "shardId-0", "owner": "host:abc", "checkpoint": "7", "millisBehindLatest": float64(1500)},
				map[string]any{"shard": "shardId-2", "owner": "host:def", "checkpoint": "9", "handoffTo": "host:abc"},
			},
		}},
		"responders": []any{map[string]any{"id": "slack-ops", "module": "slack", "state": "enabled"}},
		"reload": map[string]any{
			"lastRescan": "2026-11-22T10:00:00Z", "lastSuccess": "2026-11-22T10:00:00Z",
			"rescans": float64(4), "applied": float64(2), "refused": float64(0), "refusing": []any{},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}

	// Empty lists are lists, not null, so clients need no special case.
	src.set(Status{Observers: []ObserverStatus{{ID: "x", Stream: "s"}}})
	_, body = do(t, h, "GET", "/status")
	for _, want := range []string{`"shards": []`, `"leases": []`, `"responders": []`, `"refusing": []`, `"ready": false`} {
		if !strings.Contains(body, want) {
			t.Errorf("status lacks %s:\n%s", want, body)
		}
	}
}

// TestNoSecretsLeave plants recognisable secrets wherever a source might let
// one slip (error texts, file names, ids) and checks that no response body
// carries them, as written or JSON-escaped.
func TestNoSecretsLeave(t *testing.T) {
	secrets := []string{
		"AKIAPLANTEDKEY0001",
		"planted/Secret+Access+Key/0001",
		"https://hooks.slack.com/services/T000/B000/PLANTEDWEBHOOK",
		"PLANTED-PD-ROUTING-KEY",
		`SG.planted"quote<and>&amp\backslash`,
	}
	src := &fakeStatus{st: Status{
		Observers: []ObserverStatus{{
			ID: "orders", Stream: "orders-stream",
			LastError: "operation error DynamoDB: DescribeTable, signing with AKIAPLANTEDKEY0001 and planted/Secret+Access+Key/0001 failed",
		}},
		Responders: []ResponderStatus{{ID: "slack", Module: "slack", State: "enabled"}},
		Reload: ReloadStatus{
			Refusing:  []string{"/etc/sauna/PLANTED-PD-ROUTING-KEY.json"},
			LastError: `post https://hooks.slack.com/services/T000/B000/PLANTEDWEBHOOK: 404; sendgrid key SG.planted"quote<and>&amp\backslash refused`,
		},
	}}
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "sauna_up 1\n") })
	h := newTestHandler(src, NewGate(), Options{Metrics: metrics, Secrets: func() []string { return secrets }})

	for _, path := range []string{"/status", "/readyz", "/healthz", "/", "/metrics"} {
		_, body := do(t, h, "GET", path)
		for _, s := range secrets {
			esc, _ := json.Marshal(s)
			for _, form := range []string{s, strings.Trim(string(esc), `"`), "PLANTED", "planted"} {
				if strings.Contains(body, form) {
					t.Errorf("%s leaks %q:\n%s", path, form, body)
				}
			}
		}
		if path == "/status" && !strings.Contains(body, Redacted) {
			t.Errorf("/status shows no redaction marker:\n%s", body)
		}
	}
	_, body := do(t, h, "GET", "/status")
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Errorf("redaction broke the JSON: %v\n%s", err, body)
	}
}

func TestHealthzAndMetrics(t *testing.T) {
	var alive error
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "sauna_up 1\n") })
	h := newTestHandler(&fakeStatus{}, nil, Options{Metrics: metrics, Alive: func() error { return alive }})
	if code, body := do(t, h, "GET", "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", code, body)
	}
	alive = errors.New("config watch loop ended")
	if code, body := do(t, h, "GET", "/healthz"); code != 503 || !strings.Contains(body, "config watch loop ended") {
		t.Errorf("healthz when not alive: %d %q", code, body)
	}
	if code, body := do(t, h, "GET", "/metrics"); code != 200 || body != "sauna_up 1\n" {
		t.Errorf("metrics: %d %q", code, body)
	}
	if code, _ := do(t, h, "GET", "/nope"); code != 404 {
		t.Errorf("unknown path: %d", code)
	}
	if code, _ := do(t, newTestHandler(&fakeStatus{}, nil, Options{}), "GET", "/metrics"); code != 404 {
		t.Errorf("metrics without a handler: %d, want 404", code)
	}
}

func TestServerServesUntilStopped(t *testing.T) {
	srv, err := Listen("127.0.0.1:0", newTestHandler(&fakeStatus{}, NewGate(), Options{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(srv.Addr().String(), http.NotFoundHandler()); err == nil {
		t.Error("a second listener on a taken port started")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()

	resp, err := http.Get("http://" + srv.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("healthz over TCP: %d, Cache-Control %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := http.Get("http://" + srv.Addr().String() + "/healthz"); err == nil {
		t.Error("still serving after stop")
	}
}

// Each change of the pause switch is logged once, a pause as a warning (the
// daemon stops taking records), with the caller's address; a request that
// changes nothing logs nothing.
func TestPauseAndResumeLog(t *testing.T) {
	var logs bytes.Buffer
	h := newTestHandler(&fakeStatus{}, NewGate(), Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	for _, path := range []string{"/pause", "/pause", "/resume", "/resume"} {
		if code, body := do(t, h, "POST", path); code != http.StatusOK {
			t.Fatalf("POST %s: %d %s", path, code, body)
		}
	}
	type line struct {
		Level, Msg, Remote string
	}
	var got []line
	dec := json.NewDecoder(&logs)
	for dec.More() {
		var l line
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("log: %v", err)
		}
		got = append(got, l)
	}
	want := []line{
		{Level: "WARN", Msg: "intake paused from the admin API; in-flight commands finish, no new record is taken until POST /resume", Remote: "192.0.2.1:1234"},
		{Level: "INFO", Msg: "intake resumed from the admin API", Remote: "192.0.2.1:1234"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log lines (-want +got):\n%s", diff)
	}
}
