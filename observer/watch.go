package observer

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Run starts what dir configures, then keeps the running set in step with
// the directory until ctx ends, and stops everything. It fails only when dir
// cannot be read at startup.
//
// Every trigger — a file event in dir, an overflow of the event queue, a
// value on Options.Reload, the periodic rescan — leads to the same rescan
// once the directory has been quiet for Options.QuietPeriod. Only files whose
// bytes changed are parsed again; see plan for what a change does.
func (s *Supervisor) Run(ctx context.Context, dir string) error {
	if _, err := ListConfigFiles(dir); err != nil {
		return err
	}
	r := newReloader(s, dir)
	kicks := make(chan struct{}, 1)
	kick := func() {
		select {
		case kicks <- struct{}{}:
		default: // a rescan is already due
		}
	}
	// The watch is in place before the first scan, so nothing written
	// in between goes unnoticed.
	w := newDirWatch(dir, s.opts.RescanInterval, s.log, func(string) { kick() })
	var wg sync.WaitGroup
	wg.Go(func() { w.run(ctx) })

	r.rescan(ctx)
	if !hasIntake(s.Running()) {
		s.warnNoIntake()
	}
	l := &quietLoop{
		quiet:    s.opts.QuietPeriod,
		maxWait:  maxWait(s.opts.QuietPeriod),
		interval: s.opts.RescanInterval,
		kicks:    kicks,
		reload:   s.opts.Reload,
		log:      s.log,
		fire:     r.rescan,
	}
	l.run(ctx)
	wg.Wait()
	s.log.Info("stopping")
	s.Wait()
	return nil
}

// hasIntake tells whether es read or take commands at all: responders
// alone never receive any.
func hasIntake(es map[string]*Entry) bool {
	for _, e := range es {
		if e.Kind == KindObserver || e.Kind == KindIngest {
			return true
		}
	}
	return false
}

// maxWait bounds the quiet period's postponement: a file rewritten without
// pause (a log someone put in the directory) must not hold back every other
// change for ever.
func maxWait(quiet time.Duration) time.Duration {
	if quiet <= 0 {
		return 0
	}
	return 10 * quiet
}

// quietLoop turns triggers into rescans: each trigger (re)starts the quiet
// period, and the rescan runs when it ends, or maxWait after the first
// trigger at the latest. Rescans run on the loop's goroutine, so they never
// overlap; triggers that arrive during one start the next quiet period.
type quietLoop struct {
	quiet    time.Duration
	maxWait  time.Duration
	interval time.Duration // <= 0: no periodic rescan
	kicks    <-chan struct{}
	reload   <-chan os.Signal
	log      *slog.Logger
	fire     func(ctx context.Context)
}

func (l *quietLoop) run(ctx context.Context) {
	var tick <-chan time.Time
	if l.interval > 0 {
		t := time.NewTicker(l.interval)
		defer t.Stop()
		tick = t.C
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	pending := false
	var first time.Time
	arm := func() {
		now := time.Now()
		if !pending {
			pending, first = true, now
		}
		d := l.quiet
		if rest := first.Add(l.maxWait).Sub(now); rest < d {
			d = rest
		}
		timer.Reset(max(d, 0))
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kicks:
			arm()
		case sig := <-l.reload:
			l.log.Info("rescanning the config directory", "signal", sig.String())
			arm()
		case <-tick:
			arm()
		case <-timer.C:
			pending = false
			l.fire(ctx)
		}
	}
}

// dirWatch reports file events in one directory. It watches the directory,
// not the files: editors save by renaming a new file over the old one, and
// Kubernetes swaps a "..data" symlink without any event naming the files.
type dirWatch struct {
	dir   string
	every time.Duration
	log   *slog.Logger
	// kick is told about each event, with the name it concerns ("" when
	// unknown).
	kick func(name string)

	w       *fsnotify.Watcher
	ident   os.FileInfo // the directory the watch is on
	lastErr string      // last setup failure logged, so it is logged once
}

func newDirWatch(dir string, every time.Duration, log *slog.Logger, kick func(name string)) *dirWatch {
	if every <= 0 {
		every = 30 * time.Second
	}
	d := &dirWatch{dir: dir, every: every, log: log, kick: kick}
	d.ensure()
	return d
}

// ensure (re)creates the watch when there is none or when the directory was
// replaced (deleted and created again, or a symlinked directory swapped): a
// watch follows the inode, not the name.
func (d *dirWatch) ensure() {
	fi, err := os.Stat(d.dir)
	if err != nil {
		d.setupFailed(err)
		return
	}
	if d.w != nil && d.ident != nil && os.SameFile(d.ident, fi) && len(d.w.WatchList()) > 0 {
		return
	}
	if d.w == nil {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			d.setupFailed(err)
			return
		}
		d.w = w
	}
	replaced := d.ident != nil
	_ = d.w.Remove(d.dir)
	if err := d.w.Add(d.dir); err != nil {
		d.setupFailed(err)
		return
	}
	d.ident = fi
	if d.lastErr != "" || replaced {
		d.log.Info("watching the config directory again", "dir", d.dir)
		d.kick("")
	}
	d.lastErr = ""
}

// reset drops a watcher that closed under us; the next tick makes a new one.
func (d *dirWatch) reset() {
	_ = d.w.Close()
	d.w, d.ident = nil, nil
}

func (d *dirWatch) setupFailed(err error) {
	if msg := err.Error(); msg != d.lastErr {
		d.lastErr = msg
		// inotify limits surface as "no space left on device" or "too
		// many open files"; the periodic rescan still works without events.
		d.log.Error("cannot watch the config directory; relying on the periodic rescan", "dir", d.dir, "retry_in", d.every, "err", err)
	}
}

// run reads events and errors in one loop that ends only with ctx: an error
// from the watcher never stops it, it only triggers a full rescan.
func (d *dirWatch) run(ctx context.Context) {
	defer func() {
		if d.w != nil {
			_ = d.w.Close()
		}
	}()
	t := time.NewTicker(d.every)
	defer t.Stop()
	for {
		var events <-chan fsnotify.Event
		var errs <-chan error
		if d.w != nil {
			events, errs = d.w.Events, d.w.Errors
		}
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				d.reset()
				continue
			}
			// Permission changes alone say nothing about content.
			if ev.Op == fsnotify.Chmod {
				continue
			}
			d.log.Debug("config directory event", "event", ev.Op.String(), "name", ev.Name)
			d.kick(ev.Name)
			if ev.Name == d.dir && ev.Op.Has(fsnotify.Remove|fsnotify.Rename) {
				d.ensure()
			}
		case err, ok := <-errs:
			if !ok {
				d.reset()
				continue
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				d.log.Warn("config directory events were lost; rescanning it", "dir", d.dir)
			} else {
				d.log.Warn("config directory watch error; rescanning it", "dir", d.dir, "err", err)
			}
			d.kick("")
		case <-t.C:
			d.ensure()
		}
	}
}
