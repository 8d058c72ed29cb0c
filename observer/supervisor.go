package observer

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sauna-io/sauna/observer/backoff"
	"github.com/sauna-io/sauna/observer/ingest"
	"github.com/sauna-io/sauna/observer/kinesis"
	"github.com/sauna-io/sauna/responders"
)

// Options configure a Supervisor.
type Options struct {
	Logger *slog.Logger
	// Observer is passed to every Kinesis observer (its Logger is replaced).
	Observer kinesis.Options
	// RestartBackoff is the shortest delay before an observer whose worker
	// failed is started again, and the bound of the first one; the bound
	// doubles up to a minute, and delays are jittered within it.
	RestartBackoff time.Duration

	// RescanInterval is the period of the full rescan of the config
	// directory that catches what file events miss (network file systems,
	// lost events). Zero means 30 s; negative disables it.
	RescanInterval time.Duration
	// QuietPeriod is how long the directory must stay still before a
	// rescan reads it, so that files being written are not read half-way.
	// Zero means 500 ms; negative means none.
	QuietPeriod time.Duration
	// Reload triggers a rescan on every value received (SIGHUP).
	Reload <-chan os.Signal
	// Ingest is passed to every ingest endpoint (its Logger is replaced).
	Ingest ingest.Options
}

// Supervisor owns the running observers and the responder dispatcher built
// from a config directory. Each config file's entity is started, replaced
// and stopped on its own, so one failing observer never stops the others.
type Supervisor struct {
	opts     Options
	log      *slog.Logger
	dispatch *responders.Dispatcher

	// mu serialises changes to the running set; an observer stop can hold
	// it for the observer's whole shutdown timeout.
	mu        sync.Mutex
	running   map[string]*Entry           // every running entry, by config file
	observers map[string]*runningObserver // by config file
	ingests   map[string]*runningIngest   // by config file
	// ingestList is read by readiness probes without waiting for mu.
	ingestList atomic.Pointer[[]*ingest.Server]
	wg         sync.WaitGroup

	// reload has its own lock, so that status reads never wait for an
	// observer to stop.
	reload reloadState
}

type runningIngest struct {
	srv    *ingest.Server
	cancel context.CancelFunc
	done   chan struct{}
}

type runningObserver struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// NewSupervisor returns a supervisor with nothing running.
func NewSupervisor(opts Options) *Supervisor {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RestartBackoff <= 0 {
		opts.RestartBackoff = time.Second
	}
	if opts.RescanInterval == 0 {
		opts.RescanInterval = 30 * time.Second
	}
	if opts.QuietPeriod == 0 {
		opts.QuietPeriod = 500 * time.Millisecond
	}
	return &Supervisor{
		opts:      opts,
		log:       opts.Logger,
		dispatch:  responders.NewDispatcher(nil),
		running:   map[string]*Entry{},
		observers: map[string]*runningObserver{},
		ingests:   map[string]*runningIngest{},
	}
}

// Dispatcher returns the dispatcher the observers send commands to.
func (s *Supervisor) Dispatcher() *responders.Dispatcher { return s.dispatch }

// Running returns the running entries, by config file.
func (s *Supervisor) Running() map[string]*Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.running)
}

func (s *Supervisor) warnNoIntake() { s.log.Warn(noIntake) }

const noIntake = "no observer or ingest endpoint is configured; waiting for a KinesisObserverConfig or HttpIngestConfig file in the config directory"

// apply carries out a plan's changes and logs one line per file that was
// added, changed or removed; it returns how many there were. Responders are
// swapped first, so that commands of a new observer find them. Every
// observer that goes away or changes is stopped before any observer starts:
// a changed file, or an id moved from one file to another, means the same
// lease table, and two workers on one table would fight over its leases.
func (s *Supervisor) apply(ctx context.Context, changes []change) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[string]*Entry, len(changes))
	for _, c := range changes {
		if c.New != nil {
			next[c.File] = c.New
		}
	}
	s.swapResponders(next)
	var stopping []*runningObserver
	for _, c := range changes {
		if r := s.observers[c.File]; r != nil && c.Action != keep {
			r.cancel()
			stopping = append(stopping, r)
			delete(s.observers, c.File)
		}
	}
	for _, r := range stopping {
		<-r.done
	}
	for _, c := range changes {
		if (c.Action == start || c.Action == replace) && c.New.Kind == KindObserver {
			s.start(ctx, c.New)
		}
	}
	s.applyIngests(ctx, changes)
	n := s.logChanges(changes)
	s.forgetMetrics(next)
	s.running = next
	return n
}

// swapResponders installs the responders of next in the dispatcher.
func (s *Supervisor) swapResponders(next map[string]*Entry) {
	set := map[string]responders.Enabled{}
	for _, e := range next {
		if e.Kind == KindResponder && e.Responder != nil {
			set[e.Module] = responders.Enabled{ID: e.ID, File: e.File, Module: e.Module, Responder: e.Responder}
		}
	}
	for _, old := range s.dispatch.Replace(set) {
		if n, ok := set[old.Module]; !ok || n.Responder != old.Responder {
			// A command already running keeps the old instance; Close
			// only drops its idle connections.
			_ = responders.CloseResponder(old.Responder)
		}
	}
}

// logChanges logs one line per change other than keep, and counts them.
func (s *Supervisor) logChanges(changes []change) int {
	n := 0
	for _, c := range changes {
		switch c.Action {
		case start:
			s.log.Info("config added", entryAttrs(c.New)...)
		case stop:
			s.log.Info("config removed", entryAttrs(c.Old)...)
		case replace:
			attrs := entryAttrs(c.New)
			if c.Old.ID != c.New.ID {
				attrs = append(attrs, "previous_id", c.Old.ID)
			}
			s.log.Info("config changed", attrs...)
		default:
			continue
		}
		n++
	}
	return n
}

// forgetMetrics drops the series of observers that no longer run under
// their id, so /metrics does not keep reporting them.
func (s *Supervisor) forgetMetrics(next map[string]*Entry) {
	m := s.opts.Observer.Metrics
	if m == nil {
		return
	}
	ids := map[string]bool{}
	for _, e := range next {
		if e.Kind == KindObserver {
			ids[e.ID] = true
		}
	}
	for _, old := range s.running {
		if old.Kind == KindObserver && !ids[old.ID] {
			m.Forget(old.ID)
		}
	}
}

func entryAttrs(e *Entry) []any {
	attrs := []any{"file", e.File, "id", e.ID, "kind", e.Kind.String()}
	switch e.Kind {
	case KindObserver:
		attrs = append(attrs, "stream", e.Observer.StreamName)
	case KindIngest:
		attrs = append(attrs, "listen", e.Ingest.Listen, "stream", e.Ingest.StreamName)
	case KindResponder:
		attrs = append(attrs, "module", e.Module)
		if e.Responder == nil {
			attrs = append(attrs, "note", "every action of this responder is disabled")
		}
	}
	return attrs
}

func (s *Supervisor) start(ctx context.Context, e *Entry) {
	octx, cancel := context.WithCancel(ctx)
	r := &runningObserver{cancel: cancel, done: make(chan struct{})}
	s.observers[e.File] = r
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(r.done)
		s.keepRunning(octx, e)
	}()
}

// keepRunning restarts an observer whose worker failed, with backoff, until
// ctx ends.
func (s *Supervisor) keepRunning(ctx context.Context, e *Entry) {
	pace := backoff.Policy{First: s.opts.RestartBackoff, Floor: s.opts.RestartBackoff, Max: time.Minute}
	for attempt := 1; ; attempt++ {
		opts := s.opts.Observer
		opts.Logger = s.log
		started := time.Now()
		err := kinesis.New(e.Observer, s.dispatch, opts).Run(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > 5*time.Minute {
			attempt = 1
		}
		delay := pace.Delay(attempt)
		level := slog.LevelError
		if errors.Is(err, kinesis.ErrStopped) {
			level = slog.LevelWarn
		}
		s.log.Log(ctx, level, "observer failed; restarting", "file", e.File, "id", e.ID, "retry_in", delay, "err", err)
		if !backoff.Sleep(ctx, delay) {
			return
		}
	}
}

// applyIngests starts, updates and stops the ingest endpoints as changes
// say, stopping before starting, so that an address moved from one file to
// another is free. An endpoint whose file changed is updated in place: it
// keeps its connections unless its listener must change.
func (s *Supervisor) applyIngests(ctx context.Context, changes []change) {
	for _, c := range changes {
		if r := s.ingests[c.File]; r != nil && c.Action != keep && (c.New == nil || c.New.Kind != KindIngest) {
			r.cancel()
			<-r.done
			delete(s.ingests, c.File)
		}
	}
	for _, c := range changes {
		if c.Action == keep || c.New == nil || c.New.Kind != KindIngest {
			continue
		}
		if r := s.ingests[c.File]; r != nil {
			r.srv.Update(c.New.Ingest)
		} else {
			s.startIngest(ctx, c.New)
		}
	}
	list := make([]*ingest.Server, 0, len(s.ingests))
	for _, f := range slices.Sorted(maps.Keys(s.ingests)) {
		list = append(list, s.ingests[f].srv)
	}
	s.ingestList.Store(&list)
}

func (s *Supervisor) startIngest(ctx context.Context, e *Entry) {
	opts := s.opts.Ingest
	opts.Logger = s.log
	ictx, cancel := context.WithCancel(ctx)
	r := &runningIngest{srv: ingest.New(e.Ingest, opts), cancel: cancel, done: make(chan struct{})}
	s.ingests[e.File] = r
	s.wg.Go(func() {
		defer close(r.done)
		r.srv.Run(ictx)
	})
}

// IngestNotReady lists why running ingest endpoints do not take requests.
func (s *Supervisor) IngestNotReady() []string {
	var out []string
	if list := s.ingestList.Load(); list != nil {
		for _, srv := range *list {
			if why := srv.NotReady(); why != "" {
				out = append(out, why)
			}
		}
	}
	return out
}

// Wait blocks until every observer has stopped (after the ctx given to Run
// ended), then closes the responders.
func (s *Supervisor) Wait() {
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.dispatch.Replace(nil) {
		_ = responders.CloseResponder(e.Responder)
	}
	s.running = map[string]*Entry{}
}
