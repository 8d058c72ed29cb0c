package observer

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// watchPipeline is Run's machinery (directory watch, quiet loop, rescan) on
// a real directory, with a fake running set, and with what a test needs to
// know when the watcher has caught up.
type watchPipeline struct {
	*reloadFixture

	mu       sync.Mutex
	kicks    int            // events reported by the watcher
	barriers map[string]int // barrier file -> kicks when its event came
	fired    []int          // per finished rescan: kicks when it started
	started  int            // rescans started
	changed  chan struct{}  // pinged on every kick and every finished rescan
}

const testQuiet = 300 * time.Millisecond

func startPipeline(t *testing.T, f *reloadFixture) *watchPipeline {
	p := &watchPipeline{reloadFixture: f, barriers: map[string]int{}, changed: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(t.Context())
	kicks := make(chan struct{}, 1)
	kick := func(name string) {
		p.mu.Lock()
		p.kicks++
		if strings.HasPrefix(filepath.Base(name), ".barrier-") {
			p.barriers[filepath.Base(name)] = p.kicks
		}
		p.mu.Unlock()
		p.ping()
		select {
		case kicks <- struct{}{}:
		default:
		}
	}
	w := newDirWatch(f.dir, time.Hour, f.r.log, kick)
	if w.w == nil {
		t.Fatal("no watch on the directory")
	}
	f.r.rescan(ctx)
	l := &quietLoop{
		quiet:    testQuiet,
		maxWait:  maxWait(testQuiet),
		interval: -1,
		kicks:    kicks,
		log:      f.r.log,
		fire: func(ctx context.Context) {
			p.mu.Lock()
			start := p.kicks
			p.started++
			p.mu.Unlock()
			f.r.rescan(ctx)
			p.mu.Lock()
			p.fired = append(p.fired, start)
			p.mu.Unlock()
			p.ping()
		},
	}
	var wg sync.WaitGroup
	wg.Go(func() { w.run(ctx) })
	wg.Go(func() { l.run(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return p
}

func (p *watchPipeline) ping() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until cond holds, checking whenever the pipeline moves.
func (p *watchPipeline) waitFor(what string, cond func() bool) {
	p.t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		ok := cond()
		p.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-p.changed:
		case <-deadline.C:
			p.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// settle returns once a rescan has run that started after every file
// operation made so far had been reported: events arrive in order, so a
// barrier file's event comes after all of theirs.
func (p *watchPipeline) settle() {
	p.t.Helper()
	p.mu.Lock()
	name := fmt.Sprintf(".barrier-%d", len(p.barriers))
	p.mu.Unlock()
	p.write(name, "")
	p.waitFor("the watcher to report "+name, func() bool { return p.barriers[name] > 0 })
	p.waitFor("a rescan after "+name, func() bool {
		for _, start := range p.fired {
			if start >= p.barriers[name] {
				return true
			}
		}
		return false
	})
}

// kickedSince waits until more than n events have been reported.
func (p *watchPipeline) kickedSince(n int) {
	p.t.Helper()
	p.waitFor("an event", func() bool { return p.kicks > n })
}

func (p *watchPipeline) kickCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kicks
}

// wantOneApply checks that exactly one apply happened since before and
// that file runs with content.
func (p *watchPipeline) wantOneApply(before int, file, content string) {
	p.t.Helper()
	if n := p.set.applyCount() - before; n != 1 {
		p.t.Errorf("%d applies, want exactly 1", n)
	}
	e := p.set.Running()[p.path(file)]
	if e == nil || e.Hash != sha256.Sum256([]byte(content)) {
		p.t.Errorf("%s runs %+v, not the final content", file, e)
	}
	if refused := p.log.lines("config refused"); len(refused) != 0 {
		p.t.Errorf("a partial file was read: %v", refused)
	}
}

func TestWatchEditorSaves(t *testing.T) {
	v1 := observerConfig("obs.a", "stream-a", 100)
	v2 := observerConfig("obs.a", "stream-a", 250)
	tests := []struct {
		name string
		save func(p *watchPipeline)
	}{
		{"rename a temp file over it", func(p *watchPipeline) {
			p.write(".a.json.tmp", v2[:40])
			appendFile(t, p.path(".a.json.tmp"), v2[40:])
			if err := os.Rename(p.path(".a.json.tmp"), p.path("a.json")); err != nil {
				t.Fatal(err)
			}
		}},
		{"move the old one to a backup, write, delete the backup", func(p *watchPipeline) {
			p.write(".a.json.swp", "swap")
			if err := os.Rename(p.path("a.json"), p.path("a.json~")); err != nil {
				t.Fatal(err)
			}
			p.write("a.json", v2)
			p.remove("a.json~")
			p.remove(".a.json.swp")
		}},
		{"truncate and write in two steps", func(p *watchPipeline) {
			fh, err := os.OpenFile(p.path("a.json"), os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			n := p.kickCount()
			if _, err := fh.WriteString(v2[:len(v2)/2]); err != nil {
				t.Fatal(err)
			}
			// The half-written file has been seen before it is completed.
			p.kickedSince(n)
			if _, err := fh.WriteString(v2[len(v2)/2:]); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The quiet period holds the rescan back while a save's steps
			// follow each other more closely than it lasts (the loop's own
			// tests check that exactly, on synctest's clock). Here the
			// steps are the test's own, and a test process stalled between
			// two of them (GC, a busy machine) lets a rescan read the save
			// half done: that save shows nothing and is made again. A loop
			// that does not wait for quiet rescans in the middle of every
			// save and fails.
			const tries = 5
			for try := 1; ; try++ {
				f := newReloadFixture(t)
				f.write("a.json", v1)
				p := startPipeline(t, f)
				before := f.set.applyCount()
				if before != 1 {
					t.Fatalf("initial scan: %d applies", before)
				}
				started := p.startedCount()
				tc.save(p)
				if p.startedCount() != started {
					if try == tries {
						t.Fatalf("a rescan started in the middle of each of %d saves", tries)
					}
					t.Logf("a rescan started in the middle of save %d; saving again", try)
					continue
				}
				p.settle()
				p.wantOneApply(before, "a.json", v2)
				return
			}
		})
	}
}

func (p *watchPipeline) startedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := fh.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// The layout of a Kubernetes ConfigMap volume: the files are links through
// "..data", itself a link to a timestamped directory; an update makes a new
// directory and swaps "..data", so no event names a.json.
func TestWatchConfigMapSwap(t *testing.T) {
	v1 := observerConfig("obs.a", "stream-a", 100)
	v2 := observerConfig("obs.a", "stream-a", 250)
	f := newReloadFixture(t)
	writeVersion := func(name, content string) {
		if err := os.Mkdir(f.path(name), 0o755); err != nil {
			t.Fatal(err)
		}
		f.write(filepath.Join(name, "a.json"), content)
	}
	writeVersion("..2026_01_01_00_00_00.1", v1)
	must(t, os.Symlink("..2026_01_01_00_00_00.1", f.path("..data")))
	must(t, os.Symlink("..data/a.json", f.path("a.json")))
	p := startPipeline(t, f)
	before := f.set.applyCount()
	if e := f.set.Running()[f.path("a.json")]; before != 1 || e == nil || e.Observer.MaxRecords != 100 {
		t.Fatalf("initial scan: %d applies, a.json %+v", before, e)
	}

	writeVersion("..2026_01_01_00_01_00.2", v2)
	must(t, os.Symlink("..2026_01_01_00_01_00.2", f.path("..data_tmp")))
	must(t, os.Rename(f.path("..data_tmp"), f.path("..data")))
	must(t, os.RemoveAll(f.path("..2026_01_01_00_00_00.1")))
	p.settle()
	p.wantOneApply(before, "a.json", v2)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestWatchUnrelatedFilesApplyNothing(t *testing.T) {
	f := newReloadFixture(t)
	f.write("a.json", observerConfig("obs.a", "stream-a", 100))
	p := startPipeline(t, f)
	before := f.set.applyCount()
	f.write("README.md", "notes")
	f.write(".a.json.swp", "swap")
	must(t, os.Chmod(f.path("a.json"), 0o600))
	f.write("a.json", observerConfig("obs.a", "stream-a", 100)) // same bytes
	p.settle()
	if n := f.set.applyCount() - before; n != 0 {
		t.Errorf("%d applies, want none", n)
	}
}

// Run end to end, with responders only so that nothing needs AWS: a change
// in the directory reaches the dispatcher without a restart, SIGHUP
// rescans, and the watcher stops with ctx.
func TestSupervisorRunFollowsDirectory(t *testing.T) {
	f := newReloadFixture(t)
	f.write("r.json", responderConfig(t, "resp.one", "app-1"))
	hup := make(chan os.Signal, 1)
	s := NewSupervisor(Options{
		Logger:         slog.New(slog.NewJSONHandler(f.log, nil)),
		QuietPeriod:    50 * time.Millisecond,
		RescanInterval: -1,
		Reload:         hup,
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, f.dir) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after ctx ended")
		}
	}()

	appID := func() string {
		e, ok := s.Dispatcher().Current()[reloadTestModule]
		if !ok {
			return ""
		}
		return e.Responder.(*fakeResponder).appID
	}
	waitUntil(t, "the first responder", func() bool { return appID() == "app-1" })
	// Replaced whole (a write in place shows the file empty for a moment,
	// which a stall past the 50 ms quiet period would have refused): this
	// test follows changes, TestWatchEditorSaves the ways editors write.
	f.write(".r.json.new", responderConfig(t, "resp.one", "app-2"))
	must(t, os.Rename(f.path(".r.json.new"), f.path("r.json")))
	waitUntil(t, "the changed responder", func() bool { return appID() == "app-2" })

	n := s.ReloadStatus().Rescans
	hup <- syscall.SIGHUP
	waitUntil(t, "a rescan after SIGHUP", func() bool { return s.ReloadStatus().Rescans > n })
	if st := s.ReloadStatus(); st.Applied != 2 || st.Refused != 0 || st.LastSuccess.IsZero() {
		t.Errorf("status %+v", st)
	}
	if len(f.log.lines("no observer or ingest endpoint is configured")) != 1 {
		t.Error("no warning about the missing observer")
	}
}

// waitUntil polls cond, for state that only a method exposes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
