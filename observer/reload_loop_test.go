package observer

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// loopHarness runs a quietLoop in a synctest bubble and records when (in
// bubble time, since its start) each rescan fired.
type loopHarness struct {
	t      *testing.T
	start  time.Time
	kicks  chan struct{}
	reload chan os.Signal
	mu     sync.Mutex
	fired  []time.Duration
	// busy, if set, is how long each rescan takes.
	busy time.Duration
}

func runLoop(t *testing.T, quiet, interval time.Duration, h *loopHarness) (stop func()) {
	h.t = t
	h.start = time.Now()
	h.kicks = make(chan struct{}, 1)
	h.reload = make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(t.Context())
	l := &quietLoop{
		quiet:    quiet,
		maxWait:  maxWait(quiet),
		interval: interval,
		kicks:    h.kicks,
		reload:   h.reload,
		log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		fire: func(ctx context.Context) {
			h.mu.Lock()
			h.fired = append(h.fired, time.Since(h.start))
			h.mu.Unlock()
			if h.busy > 0 {
				time.Sleep(h.busy)
			}
		},
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}

// kick sends a trigger the way the watcher does: never blocking.
func (h *loopHarness) kick() {
	select {
	case h.kicks <- struct{}{}:
	default:
	}
}

func (h *loopHarness) at(d time.Duration) {
	time.Sleep(d - time.Since(h.start))
	synctest.Wait()
}

func (h *loopHarness) want(fired ...time.Duration) {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if !slices.Equal(h.fired, fired) {
		h.t.Errorf("rescans at %v, want %v", h.fired, fired)
	}
}

func TestQuietLoopBurstGivesOneRescan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &loopHarness{}
		stop := runLoop(t, 500*time.Millisecond, time.Hour, h)
		defer stop()
		// A truncate and two writes, 100 ms apart.
		for _, at := range []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond} {
			h.at(at)
			h.kick()
		}
		h.at(699 * time.Millisecond)
		h.want()
		h.at(700 * time.Millisecond)
		h.want(700 * time.Millisecond)
		h.at(10 * time.Second)
		h.want(700 * time.Millisecond)
	})
}

func TestQuietLoopEndlessWritesStillRescan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &loopHarness{}
		stop := runLoop(t, 500*time.Millisecond, time.Hour, h)
		defer stop()
		// A writer that never pauses for the quiet period.
		for at := time.Duration(0); at < 12*time.Second; at += 300 * time.Millisecond {
			h.at(at)
			h.kick()
		}
		h.at(13 * time.Second)
		// 5 s (10 quiet periods) after the first trigger, again 5 s after
		// the first trigger that followed, then once the writes stop.
		h.want(5*time.Second, 10100*time.Millisecond, 12200*time.Millisecond)
	})
}

func TestQuietLoopPeriodicRescan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &loopHarness{}
		stop := runLoop(t, 500*time.Millisecond, 30*time.Second, h)
		defer stop()
		h.at(95 * time.Second)
		h.want(30500*time.Millisecond, 60500*time.Millisecond, 90500*time.Millisecond)
	})
}

func TestQuietLoopReloadSignal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &loopHarness{}
		stop := runLoop(t, 500*time.Millisecond, -1, h)
		defer stop()
		h.at(2 * time.Second)
		h.reload <- syscall.SIGHUP
		h.at(10 * time.Second)
		h.want(2500 * time.Millisecond)
	})
}

func TestQuietLoopTriggerDuringRescanRescansAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &loopHarness{busy: 3 * time.Second}
		stop := runLoop(t, 500*time.Millisecond, -1, h)
		defer stop()
		h.kick()
		h.at(time.Second) // the rescan runs from 0.5 s to 3.5 s
		h.kick()
		h.at(2 * time.Second)
		h.kick() // coalesced with the previous one
		h.at(10 * time.Second)
		h.want(500*time.Millisecond, 4*time.Second)
	})
}

func TestQuietLoopWithoutQuietPeriod(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &loopHarness{}
		stop := runLoop(t, 0, -1, h)
		defer stop()
		h.at(time.Second)
		h.kick()
		h.at(2 * time.Second)
		h.want(time.Second)
	})
}

func TestQuietLoopStopsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := &loopHarness{}
		stop := runLoop(t, 500*time.Millisecond, 30*time.Second, h)
		h.kick()
		stop() // returns only once the loop has ended
		h.at(time.Minute)
		h.want()
	})
}
