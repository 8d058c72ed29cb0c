// Package admin serves sauna's operations endpoints on one HTTP listener:
//
//	GET  /metrics  Prometheus exposition of the private registry
//	GET  /healthz  200 while the process runs its loops
//	GET  /readyz   200 when every enabled observer reads its shards, else 503 and why
//	GET  /status   JSON: observers, responders, config reloads, pause state
//	POST /pause    stop taking new records (in-flight ones finish and are checkpointed)
//	POST /resume   take records again
//
// The data comes through small interfaces (StatusSource, Pauser), so the
// package knows nothing about the KCL or the config directory. Responses
// never carry secrets: sources report ids, names and states only, and every
// string that Options.Secrets lists is redacted from the bodies as a last
// line of defence (error texts are the risky part).
//
// The GET endpoints are unauthenticated: keep the listener on loopback (the
// default) or on a private network. POST /pause and /resume take a bearer
// token when Options.Token is set, which a non-loopback address requires
// (CheckListen). Web pages are kept out twice: cross-origin protection
// refuses their POSTs, and a Host check (421) refuses a page that rebinds its
// own DNS name to this listener.
package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Status is what a StatusSource reports. It must hold no secret.
type Status struct {
	Observers  []ObserverStatus
	Responders []ResponderStatus
	// Ingest are the enabled HTTP ingest endpoints: a daemon that only
	// puts commands on a stream is ready without an observer.
	Ingest []IngestStatus
	Reload ReloadStatus
}

// IngestStatus is one enabled HTTP ingest endpoint.
type IngestStatus struct {
	ID     string `json:"id"`
	Listen string `json:"listen"`
	Stream string `json:"stream"`
}

// ObserverStatus is one enabled observer.
type ObserverStatus struct {
	ID     string `json:"id"`
	Stream string `json:"stream"`
	// Running is true while the observer's KCL worker is started.
	Running   bool      `json:"running"`
	WorkerID  string    `json:"workerId,omitempty"`
	StartedAt time.Time `json:"startedAt,omitzero"`
	// Shards are the leases this process holds.
	Shards             []ShardStatus `json:"shards"`
	MillisBehindLatest int64         `json:"millisBehindLatest"`
	InFlight           int64         `json:"inFlight"`
	LastError          string        `json:"lastError,omitempty"`
	LastErrorAt        time.Time     `json:"lastErrorAt,omitzero"`
	// Workers counts the live processes sharing the stream under this
	// observer id, and Leases is every shard's lease, as this process's
	// last lease table scan saw them.
	Workers int           `json:"workers"`
	Leases  []LeaseStatus `json:"leases"`
}

// LeaseStatus is one shard's lease in the lease table, whoever holds it.
type LeaseStatus struct {
	Shard      string `json:"shard"`
	Owner      string `json:"owner,omitempty"`
	Checkpoint string `json:"checkpoint,omitempty"`
	// HandoffTo is a pending handoff: the worker that asked for the lease,
	// or that it is reserved for.
	HandoffTo string `json:"handoffTo,omitempty"`
	// MillisBehindLatest is known for the shards this process holds.
	MillisBehindLatest *int64 `json:"millisBehindLatest,omitempty"`
}

// ShardStatus is one held shard lease.
type ShardStatus struct {
	ID            string    `json:"id"`
	LeaseGainedAt time.Time `json:"leaseGainedAt,omitzero"`
	// LastPollAt is zero until the first GetRecords returned.
	LastPollAt         time.Time `json:"lastPollAt,omitzero"`
	MillisBehindLatest int64     `json:"millisBehindLatest"`
}

// ResponderStatus is one responder config.
type ResponderStatus struct {
	ID     string `json:"id"`
	Module string `json:"module"`
	// State is e.g. "enabled", or "disabled" when the config enables none of
	// the module's actions.
	State string `json:"state"`
}

// ReloadStatus describes how the daemon follows its config directory.
type ReloadStatus struct {
	LastRescan  time.Time `json:"lastRescan,omitzero"`
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	Rescans     uint64    `json:"rescans"`
	Applied     uint64    `json:"applied"`
	Refused     uint64    `json:"refused"`
	// Refusing lists the files whose current content is refused; their last
	// good version, if any, keeps running.
	Refusing  []string `json:"refusing"`
	LastError string   `json:"lastError,omitempty"`
}

// StatusSource reports the daemon's state. Status is called once per request
// to /status or /readyz and must not block on I/O.
type StatusSource interface {
	Status() Status
}

// StatusFunc adapts a function to StatusSource.
type StatusFunc func() Status

// Status calls f.
func (f StatusFunc) Status() Status { return f() }

// Pauser is the pause switch; *Gate is one.
type Pauser interface {
	// Pause stops intake and reports whether it was running.
	Pause() bool
	// Resume restarts intake and reports whether it was paused.
	Resume() bool
	Paused() bool
}

// DefaultPollStaleAfter is how long a held shard may go without a
// successful GetRecords before /readyz fails. An idle shard is polled every
// idleTimeBetweenReadsMillis; a busy one as soon as its batch is done, so the
// margin covers a slow batch, not a stuck one.
const DefaultPollStaleAfter = time.Minute

// Options configure the handler.
type Options struct {
	// Status is required.
	Status StatusSource
	// Pauser, if nil, makes /pause and /resume answer 501.
	Pauser Pauser
	// Metrics serves /metrics; nil answers 404.
	Metrics http.Handler
	// Alive, if set, is asked by /healthz; a non-nil error makes it 503.
	Alive func() error
	// NotReady, if set, adds reasons /readyz fails for (e.g. an ingest
	// listener that is not listening).
	NotReady func() []string
	// PollStaleAfter is the readiness limit on the age of a held shard's
	// last poll (default DefaultPollStaleAfter).
	PollStaleAfter time.Duration
	// Secrets, if set, lists strings that must never leave the process
	// (credentials, tokens, webhook URLs); they are redacted from bodies.
	Secrets func() []string
	Logger  *slog.Logger
	// Now is the readiness clock (default time.Now).
	Now func() time.Time
	// Addr is the configured listen address; its host is accepted in the
	// Host header besides localhost and IP literals.
	Addr string
	// Token, if set, is the bearer token POST /pause and /resume require.
	// It is redacted from bodies like Secrets.
	Token string
}

// NewHandler returns the admin endpoints.
func NewHandler(opts Options) http.Handler {
	if opts.Status == nil {
		opts.Status = StatusFunc(func() Status { return Status{} })
	}
	if opts.PollStaleAfter <= 0 {
		opts.PollStaleAfter = DefaultPollStaleAfter
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &handler{opts: opts}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.index)
	mux.HandleFunc("GET /healthz", h.healthz)
	mux.HandleFunc("GET /readyz", h.readyz)
	mux.HandleFunc("GET /status", h.status)
	pause, resume := h.pause, h.resume
	if opts.Token != "" {
		pause, resume = requireToken(opts.Token, pause), requireToken(opts.Token, resume)
	}
	mux.HandleFunc("POST /pause", pause)
	mux.HandleFunc("POST /resume", resume)
	if opts.Metrics != nil {
		mux.Handle("GET /metrics", opts.Metrics)
	}
	return hostGuard(opts.Addr, http.NewCrossOriginProtection().Handler(noStore(mux)))
}

func noStore(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

type handler struct{ opts Options }

func (h *handler) index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprint(w, "sauna admin\n\n"+
		"GET  /metrics  Prometheus metrics\n"+
		"GET  /healthz  liveness\n"+
		"GET  /readyz   readiness, with the reasons when not ready\n"+
		"GET  /status   observers, responders, config reloads and pause state (JSON)\n"+
		"POST /pause    stop taking new records; in-flight ones finish and are checkpointed\n"+
		"POST /resume   take records again\n")
}

func (h *handler) healthz(w http.ResponseWriter, _ *http.Request) {
	if h.opts.Alive != nil {
		if err := h.opts.Alive(); err != nil {
			h.text(w, http.StatusServiceUnavailable, "not alive: "+err.Error()+"\n")
			return
		}
	}
	h.text(w, http.StatusOK, "ok\n")
}

func (h *handler) readyz(w http.ResponseWriter, _ *http.Request) {
	reasons := h.notReady(h.opts.Status.Status(), h.paused())
	if len(reasons) == 0 {
		h.text(w, http.StatusOK, "ready\n")
		return
	}
	h.text(w, http.StatusServiceUnavailable, "not ready:\n- "+strings.Join(reasons, "\n- ")+"\n")
}

// statusBody is the /status document.
type statusBody struct {
	Time        time.Time         `json:"time"`
	Ready       bool              `json:"ready"`
	NotReady    []string          `json:"notReady"`
	Paused      bool              `json:"paused"`
	PausedSince time.Time         `json:"pausedSince,omitzero"`
	Observers   []observerBody    `json:"observers"`
	Responders  []ResponderStatus `json:"responders"`
	Ingest      []IngestStatus    `json:"ingest"`
	Reload      ReloadStatus      `json:"reload"`
}

type observerBody struct {
	ObserverStatus
	ShardsHeld int `json:"shardsHeld"`
}

func (h *handler) status(w http.ResponseWriter, _ *http.Request) {
	st := h.opts.Status.Status()
	paused := h.paused()
	body := statusBody{
		Time:       h.opts.Now().UTC(),
		NotReady:   h.notReady(st, paused),
		Paused:     paused,
		Observers:  make([]observerBody, 0, len(st.Observers)),
		Responders: st.Responders,
		Ingest:     st.Ingest,
		Reload:     st.Reload,
	}
	body.Ready = len(body.NotReady) == 0
	if paused {
		body.PausedSince = h.pausedSince()
	}
	for _, o := range st.Observers {
		if o.Shards == nil {
			o.Shards = []ShardStatus{}
		}
		if o.Leases == nil {
			o.Leases = []LeaseStatus{}
		}
		body.Observers = append(body.Observers, observerBody{ObserverStatus: o, ShardsHeld: len(o.Shards)})
	}
	if body.Responders == nil {
		body.Responders = []ResponderStatus{}
	}
	if body.Ingest == nil {
		body.Ingest = []IngestStatus{}
	}
	if body.Reload.Refusing == nil {
		body.Reload.Refusing = []string{}
	}
	h.json(w, http.StatusOK, body)
}

type pauseBody struct {
	Paused      bool      `json:"paused"`
	Changed     bool      `json:"changed"`
	PausedSince time.Time `json:"pausedSince,omitzero"`
}

func (h *handler) pause(w http.ResponseWriter, r *http.Request) {
	h.switchIntake(w, r, Pauser.Pause, slog.LevelWarn,
		"intake paused from the admin API; in-flight commands finish, no new record is taken until POST /resume")
}

func (h *handler) resume(w http.ResponseWriter, r *http.Request) {
	h.switchIntake(w, r, Pauser.Resume, slog.LevelInfo, "intake resumed from the admin API")
}

// switchIntake flips the pause switch with flip (Pauser.Pause or
// Pauser.Resume), logs msg only when the state changed, and answers with the
// state after the call.
func (h *handler) switchIntake(w http.ResponseWriter, r *http.Request, flip func(Pauser) bool, level slog.Level, msg string) {
	if h.opts.Pauser == nil {
		h.text(w, http.StatusNotImplemented, "pausing is not available\n")
		return
	}
	changed := flip(h.opts.Pauser)
	if changed {
		h.opts.Logger.Log(r.Context(), level, msg, "remote", r.RemoteAddr)
	}
	h.json(w, http.StatusOK, pauseBody{Paused: h.paused(), Changed: changed, PausedSince: h.pausedSince()})
}

func (h *handler) paused() bool { return h.opts.Pauser != nil && h.opts.Pauser.Paused() }

func (h *handler) pausedSince() time.Time {
	if s, ok := h.opts.Pauser.(interface{ PausedSince() time.Time }); ok {
		return s.PausedSince().UTC()
	}
	return time.Time{}
}

// notReady lists why the daemon is not ready; empty means ready. A daemon
// is ready when intake is not paused, at least one observer or ingest
// endpoint is enabled, every enabled observer's worker runs, holds a lease,
// and has polled each held shard within PollStaleAfter, and NotReady finds
// nothing.
func (h *handler) notReady(st Status, paused bool) []string {
	reasons := []string{}
	if paused {
		reasons = append(reasons, "intake is paused (POST /resume to resume)")
	}
	if len(st.Observers) == 0 && len(st.Ingest) == 0 {
		reasons = append(reasons, "no enabled observer or ingest endpoint")
	}
	if h.opts.NotReady != nil {
		reasons = append(reasons, h.opts.NotReady()...)
	}
	now := h.opts.Now()
	for _, o := range st.Observers {
		switch {
		case !o.Running:
			msg := fmt.Sprintf("observer %s: worker not running", o.ID)
			if o.LastError != "" {
				msg += "; last error: " + o.LastError
			}
			reasons = append(reasons, msg)
			continue
		case len(o.Shards) == 0:
			reasons = append(reasons, fmt.Sprintf("observer %s: holds no shard lease yet", o.ID))
			continue
		}
		for _, s := range o.Shards {
			// A shard not polled yet counts from its lease: a child shard
			// waits for its parent first, and a stuck wait is not ready either.
			ref, what := s.LastPollAt, "polled"
			if ref.IsZero() {
				ref, what = s.LeaseGainedAt, "polled since its lease was gained"
			}
			if age := now.Sub(ref); !ref.IsZero() && age > h.opts.PollStaleAfter {
				reasons = append(reasons, fmt.Sprintf("observer %s: shard %s not %s for %s (limit %s)",
					o.ID, s.ID, what, age.Round(time.Second), h.opts.PollStaleAfter))
			}
		}
	}
	return reasons
}

func (h *handler) text(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(h.redact([]byte(body)))
}

func (h *handler) json(w http.ResponseWriter, code int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		h.text(w, http.StatusInternalServerError, "encoding the response failed\n")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(h.redact(buf.Bytes()))
}

// Redacted replaces a secret in a response body.
const Redacted = "[REDACTED]"

// minSecret is the shortest secret redacted: replacing every "a" would make
// bodies unreadable without hiding any real credential.
const minSecret = 4

// redact replaces every listed secret, as written and as JSON-escaped, so it
// works on text and on JSON bodies alike.
func (h *handler) redact(body []byte) []byte {
	var secrets []string
	if h.opts.Secrets != nil {
		secrets = slices.Clone(h.opts.Secrets())
	}
	if h.opts.Token != "" {
		secrets = append(secrets, h.opts.Token)
	}
	// Longest first: a secret that contains a shorter one must go whole.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, s := range secrets {
		if len(s) < minSecret {
			continue
		}
		body = bytes.ReplaceAll(body, []byte(s), []byte(Redacted))
		if esc := jsonEscape(s); esc != s {
			body = bytes.ReplaceAll(body, []byte(esc), []byte(Redacted))
		}
	}
	return body
}

// jsonEscape writes s as the body encoder does, without the quotes.
func jsonEscape(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return s
	}
	q := bytes.TrimSpace(buf.Bytes())
	return string(q[1 : len(q)-1])
}
