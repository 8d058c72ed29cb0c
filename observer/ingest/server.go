package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/sauna-io/sauna/observer/admin"
	"github.com/sauna-io/sauna/observer/backoff"
	"github.com/sauna-io/sauna/observer/kinesis"
)

// PartitionKeyHeader names the request header that sets the partition key
// of every record of the request; without it each record's key is its
// commandId.
const PartitionKeyHeader = "X-Sauna-Partition-Key"

// Options configure a Server.
type Options struct {
	Logger  *slog.Logger
	Metrics *Metrics
	// NewPutter builds the Kinesis client of a config (default: the AWS SDK
	// client, with the config's static keys or the default chain).
	NewPutter func(ctx context.Context, cfg Config) (Putter, error)
	// RestartBackoff is the shortest delay before a listener that failed to
	// start is tried again, and the bound of the first one; the bound
	// doubles up to a minute, and delays are jittered within it (default 1 s).
	RestartBackoff time.Duration
}

// Server is one ingest endpoint: a listener and the producer behind it.
// Update applies a changed config: tokens, limits and time to live take
// effect at the next request without dropping connections; a changed
// listen address, TLS file paths, stream, credentials or producer setting
// (linger, queue, concurrent puts) restarts the listener. The TLS files are
// read when the listener starts, not when their content changes.
type Server struct {
	opts    Options
	log     *slog.Logger
	cfg     atomic.Pointer[Config]
	changed chan struct{}

	limMu    sync.Mutex
	limiters map[string]*tokenLimiter

	stateMu  sync.Mutex
	addr     net.Addr
	stateErr error
}

type tokenLimiter struct {
	perSecond float64
	lim       *rate.Limiter
}

// New returns a server for cfg; Run starts it.
func New(cfg Config, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.NewPutter == nil {
		opts.NewPutter = newSDKPutter
	}
	if opts.RestartBackoff <= 0 {
		opts.RestartBackoff = time.Second
	}
	s := &Server{opts: opts, changed: make(chan struct{}, 1), limiters: map[string]*tokenLimiter{}}
	s.log = opts.Logger.With("ingest", cfg.ID)
	s.cfg.Store(&cfg)
	s.stateErr = errors.New("not started")
	return s
}

func newSDKPutter(ctx context.Context, cfg Config) (Putter, error) {
	awsCfg, err := kinesis.LoadAWS(ctx, cfg.Region, cfg.AccessKeyID, cfg.SecretAccessKey)
	if err != nil {
		return nil, fmt.Errorf("aws config: %w", err)
	}
	return kinesis.NewKinesisClient(awsCfg), nil
}

// Update replaces the config; see Server.
func (s *Server) Update(cfg Config) {
	s.cfg.Store(&cfg)
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// Addr is the bound address, nil while not listening.
func (s *Server) Addr() net.Addr {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	return s.addr
}

// NotReady says why the endpoint does not take requests; "" when it does.
func (s *Server) NotReady() string {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.addr != nil {
		return ""
	}
	return fmt.Sprintf("ingest %s: not listening on %s: %v", s.cfg.Load().ID, s.cfg.Load().Listen, s.stateErr)
}

func (s *Server) setState(addr net.Addr, err error) {
	s.stateMu.Lock()
	s.addr, s.stateErr = addr, err
	s.stateMu.Unlock()
}

// Run serves until ctx ends, restarting the listener when Update changes
// what it depends on or when it fails. At the end open requests are
// answered (each is bounded by its put timeout) before Run returns.
func (s *Server) Run(ctx context.Context) {
	pace := backoff.Policy{First: s.opts.RestartBackoff, Floor: s.opts.RestartBackoff, Max: time.Minute}
	for attempt := 1; ; {
		cfg := *s.cfg.Load()
		g, err := s.start(ctx, cfg)
		if err != nil {
			s.setState(nil, err)
			delay := pace.Delay(attempt)
			attempt++
			s.log.Error("ingest listener cannot start; retrying", "file", cfg.File, "listen", cfg.Listen, "retry_in", delay, "err", err)
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			case <-s.changed:
				t.Stop()
			}
			continue
		}
		attempt = 1
		s.setState(g.ln.Addr(), nil)
		s.log.Info("ingest listening", "addr", g.ln.Addr().String(), "stream", cfg.StreamName, "tls", cfg.TLSCert != "", "tokens", len(cfg.Tokens))
		if !cfg.Loopback() && cfg.TLSCert == "" {
			s.log.Warn("ingest listens beyond loopback without TLS: bearer tokens and commands cross the network in clear text; set parameters.tls", "file", cfg.File, "listen", cfg.Listen)
		}
		restart := false
		for !restart {
			select {
			case <-ctx.Done():
				s.setState(nil, errors.New("stopping"))
				g.stop()
				return
			case err := <-g.serveErr:
				s.log.Error("ingest listener failed; restarting", "file", cfg.File, "err", err)
				restart = true
			case <-s.changed:
				n := s.cfg.Load()
				if n.listenerKey() != cfg.listenerKey() || n.producerKey() != cfg.producerKey() {
					s.log.Info("ingest config changed; restarting the listener", "file", n.File, "listen", n.Listen, "stream", n.StreamName)
					restart = true
				} else {
					s.log.Info("ingest config changed; applied to the next requests", "file", n.File, "tokens", len(n.Tokens))
				}
			}
		}
		s.setState(nil, errors.New("restarting"))
		g.stop()
	}
}

// generation is one listener and the producer it feeds.
type generation struct {
	ln       net.Listener
	srv      *http.Server
	producer *Producer
	cancel   context.CancelFunc
	serveErr chan error
	drain    time.Duration
}

func (s *Server) start(ctx context.Context, cfg Config) (*generation, error) {
	putter, err := s.opts.NewPutter(ctx, cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, err
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("tls: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p := NewProducer(putter, cfg.StreamName, ProducerOptions{Linger: cfg.Linger, MaxQueued: cfg.MaxQueued, MaxConcurrent: cfg.MaxConcurrent})
	go p.Run(pctx)
	mux := http.NewServeMux()
	mux.Handle("POST /v1/commands", &handler{s: s, producer: p})
	g := &generation{
		ln:       ln,
		producer: p,
		cancel:   cancel,
		serveErr: make(chan error, 1),
		drain:    cfg.PutTimeout + 5*time.Second,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			// A request may wait for its whole put timeout.
			WriteTimeout:   cfg.PutTimeout + 30*time.Second,
			IdleTimeout:    2 * time.Minute,
			MaxHeaderBytes: 64 << 10,
			ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		},
	}
	go func() {
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.serveErr <- err
		}
	}()
	return g, nil
}

// stop closes the listener, lets open requests be answered, then stops the
// producer; every record queued by then has been settled.
func (g *generation) stop() {
	sctx, cancel := context.WithTimeout(context.Background(), g.drain)
	defer cancel()
	if err := g.srv.Shutdown(sctx); err != nil {
		_ = g.srv.Close()
	}
	g.cancel()
	<-g.producer.Done()
}

// limiter returns the token's rate limiter, nil when it has none. A
// limiter survives reloads that keep its rate.
func (s *Server) limiter(t *Token) *rate.Limiter {
	if t.RatePerSecond <= 0 {
		return nil
	}
	s.limMu.Lock()
	defer s.limMu.Unlock()
	l := s.limiters[t.Name]
	if l == nil || l.perSecond != t.RatePerSecond {
		burst := max(1, int(math.Ceil(t.RatePerSecond)))
		l = &tokenLimiter{perSecond: t.RatePerSecond, lim: rate.NewLimiter(rate.Limit(t.RatePerSecond), burst)}
		s.limiters[t.Name] = l
	}
	return l.lim
}

type handler struct {
	s        *Server
	producer *Producer
}

// reply is a finished answer: status, body, and what the log needs.
type reply struct {
	code       int
	body       any
	retryAfter int
	token      string
	commands   int
	accepted   int
	why        string
}

type errorBody struct {
	Error string `json:"error"`
}

type errorsBody struct {
	Errors []ItemError `json:"errors"`
}

// AcceptedRecord is one record on the stream.
type AcceptedRecord struct {
	Index          int    `json:"index"`
	CommandID      string `json:"commandId"`
	ShardID        string `json:"shardId"`
	SequenceNumber string `json:"sequenceNumber"`
}

// FailedRecord is one record that is not known to be on the stream.
type FailedRecord struct {
	Index     int    `json:"index"`
	CommandID string `json:"commandId"`
	// State is "throttled" or "not_put" (not on the stream), or "unknown"
	// (perhaps on the stream).
	State   string `json:"state"`
	Message string `json:"message"`
}

// Response is the body of 202 (Failed empty), and of 429 and 503 after a
// put that was tried: then Accepted lists what is on the stream anyway.
type Response struct {
	Accepted []AcceptedRecord `json:"accepted"`
	Failed   []FailedRecord   `json:"failed,omitempty"`
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rep := h.handle(r, start)
	took := time.Since(start)
	h.s.opts.Metrics.observe(rep.code, rep.accepted, took)
	attrs := []any{"code", rep.code, "token", rep.token, "commands", rep.commands, "accepted", rep.accepted, "took", took, "remote", r.RemoteAddr}
	switch {
	case rep.code == http.StatusUnauthorized:
		h.s.log.Warn("ingest request refused", append(attrs, "reason", rep.why)...)
	case rep.code >= 500 || rep.code == http.StatusTooManyRequests:
		h.s.log.Warn("ingest request not accepted", append(attrs, "reason", rep.why)...)
	case rep.code >= 400:
		h.s.log.Info("ingest request refused", append(attrs, "reason", rep.why)...)
	default:
		h.s.log.Debug("ingest request accepted", attrs...)
	}
	if rep.code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sauna"`)
	}
	if rep.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(rep.retryAfter))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(rep.body)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(rep.code)
	_, _ = w.Write(buf.Bytes())
}

func fail(code int, why string) reply {
	return reply{code: code, body: errorBody{Error: why}, why: why}
}

func (h *handler) handle(r *http.Request, start time.Time) reply {
	cfg := h.s.cfg.Load()
	tok := authenticate(cfg.Tokens, r.Header.Get("Authorization"))
	if tok == nil {
		return fail(http.StatusUnauthorized, "missing or unknown bearer token")
	}
	withToken := func(rep reply) reply { rep.token = tok.Name; return rep }
	if lim := h.s.limiter(tok); lim != nil {
		if res := lim.ReserveN(start, 1); !res.OK() || res.DelayFrom(start) > 0 {
			wait := res.DelayFrom(start)
			res.CancelAt(start)
			rep := fail(http.StatusTooManyRequests, fmt.Sprintf("rate limit of token %q exceeded (%g requests/s)", tok.Name, tok.RatePerSecond))
			rep.retryAfter = max(1, int(math.Ceil(wait.Seconds())))
			return withToken(rep)
		}
	}
	ndjson := false
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case err == nil && mt == "application/json":
	case err == nil && mt == "application/x-ndjson":
		ndjson = true
	default:
		return withToken(fail(http.StatusUnsupportedMediaType, "Content-Type must be application/json (one command) or application/x-ndjson (one command per line)"))
	}
	key := r.Header.Get(PartitionKeyHeader)
	if _, set := r.Header[http.CanonicalHeaderKey(PartitionKeyHeader)]; set {
		if n := utf8.RuneCountInString(key); n < 1 || n > maxPartitionKey || !utf8.ValidString(key) {
			return withToken(reply{code: http.StatusBadRequest, why: "bad partition key", body: errorsBody{Errors: []ItemError{{
				Index: -1, Field: PartitionKeyHeader, Message: fmt.Sprintf("must be 1 to %d Unicode characters", maxPartitionKey)}}}})
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return withToken(fail(http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", cfg.MaxBodyBytes)))
		}
		return withToken(fail(http.StatusBadRequest, "reading the body: "+err.Error()))
	}
	dec := Decoder{MaxCommands: cfg.MaxCommands, DefaultTTL: cfg.DefaultTTL, PartitionKey: key}
	items, errs := dec.Decode(body, ndjson)
	if len(errs) > 0 {
		return withToken(reply{code: http.StatusBadRequest, body: errorsBody{Errors: errs}, why: fmt.Sprintf("%d invalid", len(errs))})
	}
	data, keys := make([][]byte, len(items)), make([]string, len(items))
	for i, it := range items {
		data[i], keys[i] = it.Data, key
		if key == "" {
			keys[i] = it.Cmd.ID
		}
	}
	batch, err := h.producer.Submit(data, keys, start.Add(cfg.PutTimeout))
	if err != nil {
		rep := fail(http.StatusServiceUnavailable, err.Error()+"; nothing was put, send it again later")
		rep.retryAfter = 1
		rep.commands = len(items)
		return withToken(rep)
	}
	// Not the request's context: a client that goes away must not cut a
	// put short, and the answer waits for every record's final state.
	<-batch.Done()
	var resp Response
	resp.Accepted = []AcceptedRecord{}
	throttledOnly := true
	for i, res := range batch.Results() {
		id := items[i].Cmd.ID
		if res.State == StateAccepted {
			resp.Accepted = append(resp.Accepted, AcceptedRecord{Index: i, CommandID: id, ShardID: res.ShardID, SequenceNumber: res.SequenceNumber})
			continue
		}
		if res.State != StateThrottled {
			throttledOnly = false
		}
		resp.Failed = append(resp.Failed, FailedRecord{Index: i, CommandID: id, State: res.State.String(), Message: res.Message})
	}
	rep := reply{code: http.StatusAccepted, body: resp, commands: len(items), accepted: len(resp.Accepted)}
	if len(resp.Failed) > 0 {
		rep.code, rep.retryAfter = http.StatusServiceUnavailable, 1
		if throttledOnly {
			rep.code = http.StatusTooManyRequests
		}
		rep.why = fmt.Sprintf("%d of %d records not acknowledged: %s", len(resp.Failed), len(items), resp.Failed[0].Message)
		// The records on the stream stay there: the client learns which, and
		// a resubmission with the same commandIds is deduplicated.
		rep.accepted = 0
	}
	return withToken(rep)
}

// authenticate returns the token whose hash matches the bearer token in
// header, comparing with every token in constant time.
func authenticate(tokens []Token, header string) *Token {
	token, ok := admin.BearerToken(header)
	if !ok {
		return nil
	}
	sum := sha256.Sum256([]byte(token))
	var found *Token
	for i := range tokens {
		if subtle.ConstantTimeCompare(sum[:], tokens[i].SHA256[:]) == 1 {
			found = &tokens[i]
		}
	}
	return found
}
