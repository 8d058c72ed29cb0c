package observer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

func observerConfig(id, stream string, maxRecords int) string {
	return fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.observers/AmazonKinesisConfig/avro/1-0-0",
 "data":{"enabled":true,"id":%q,"parameters":{
   "aws":{"accessKeyId":"AKIAEXAMPLE","secretAccessKey":"s3cr3t"},
   "kinesis":{"region":"us-east-1","streamName":%q,"maxRecords":%d,
              "initialPosition":"TRIM_HORIZON","initialPositionModifiers":null}}}}`, id, stream, maxRecords)
}

// A responder module of its own, on a config schema no built-in responder
// uses, so that these tests do not depend on which responders exist.
const reloadTestModule = "reloadtest"

var (
	registerOnce sync.Once
)

// App ids the test module refuses: with a ParamError, with a wrapped one, and
// with a plain error.
const (
	refuseParam        = "refuse-param"
	refuseWrappedParam = "refuse-wrapped-param"
	refuseConfig       = "refuse-config"
)

type fakeResponder struct {
	appID  string
	closed atomic.Bool
}

func (r *fakeResponder) Respond(context.Context, *responders.Command) error { return nil }
func (r *fakeResponder) Close() error {
	r.closed.Store(true)
	return nil
}

func responderConfig(t *testing.T, id, appID string) string {
	t.Helper()
	registerOnce.Do(func() {
		k, err := schemas.ParseKey("iglu:com.snowplowanalytics.sauna.responders/PusherConfig/avro/1-0-0")
		if err != nil {
			panic(err)
		}
		responders.Register(responders.Module{
			Name:          reloadTestModule,
			ConfigSchemas: []schemas.Key{k},
			New: func(cfg responders.Config) (responders.Responder, error) {
				var p struct {
					AppID string `json:"appId"`
				}
				if err := json.Unmarshal(cfg.Parameters, &p); err != nil {
					return nil, err
				}
				// Some app ids make New refuse the config, as a module may.
				switch p.AppID {
				case refuseParam:
					return nil, responders.ParamErrorf("appId", "is refused")
				case refuseWrappedParam:
					return nil, fmt.Errorf("building: %w", responders.ParamErrorf(`nested["k"]`, "is refused"))
				case refuseConfig:
					return nil, errors.New("the whole config is refused")
				}
				return &fakeResponder{appID: p.AppID}, nil
			},
		})
	})
	return fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.responders/PusherConfig/avro/1-0-0",
 "data":{"enabled":true,"id":%q,"parameters":{"triggerEventEnabled":true,"appId":%q,"key":"k","secret":"s","cluster":"eu"}}}`, id, appID)
}

// fakeSet stands in for the Supervisor: it records every apply.
type fakeSet struct {
	mu      sync.Mutex
	running map[string]*Entry
	applies [][]change
}

func (f *fakeSet) Running() map[string]*Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.running)
}

func (f *fakeSet) apply(_ context.Context, changes []change) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	next := map[string]*Entry{}
	n := 0
	for _, c := range changes {
		if f.running[c.File] != c.Old {
			panic(fmt.Sprintf("%s: the plan was made for %+v, %+v runs", c.File, c.Old, f.running[c.File]))
		}
		if c.New != nil {
			next[c.File] = c.New
		}
		if c.Action != keep {
			n++
		}
	}
	for file := range f.running {
		if !slices.ContainsFunc(changes, func(c change) bool { return c.File == file }) {
			panic(file + " runs but the plan says nothing of it")
		}
	}
	f.running = next
	f.applies = append(f.applies, slices.Clone(changes))
	return n
}

func (f *fakeSet) applyCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.applies)
}

// logRecorder keeps JSON log lines.
type logRecorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logRecorder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// lines returns the records whose msg starts with prefix.
func (l *logRecorder) lines(prefix string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(l.buf.Bytes(), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && strings.HasPrefix(fmt.Sprint(m["msg"]), prefix) {
			out = append(out, m)
		}
	}
	return out
}

type reloadFixture struct {
	t   *testing.T
	dir string
	set *fakeSet
	r   *reloader
	log *logRecorder
}

func newReloadFixture(t *testing.T) *reloadFixture {
	dir := t.TempDir()
	rec := &logRecorder{}
	log := slog.New(slog.NewJSONHandler(rec, &slog.HandlerOptions{Level: slog.LevelDebug}))
	set := &fakeSet{}
	r := &reloader{dir: dir, log: log, set: set, status: &reloadState{}}
	return &reloadFixture{t: t, dir: dir, set: set, r: r, log: rec}
}

func (f *reloadFixture) path(name string) string { return filepath.Join(f.dir, name) }

func (f *reloadFixture) write(name, content string) {
	f.t.Helper()
	if err := os.WriteFile(f.path(name), []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *reloadFixture) remove(name string) {
	f.t.Helper()
	if err := os.Remove(f.path(name)); err != nil {
		f.t.Fatal(err)
	}
}

// rescan runs one rescan and returns what was applied, or nil when nothing
// was.
func (f *reloadFixture) rescan() map[string]*Entry {
	f.t.Helper()
	before := f.set.applyCount()
	f.r.rescan(f.t.Context())
	switch f.set.applyCount() - before {
	case 0:
		return nil
	case 1:
		return f.set.Running()
	default:
		f.t.Fatal("more than one apply in one rescan")
		return nil
	}
}

// ids maps file base names to ids.
func ids(m map[string]*Entry) map[string]string {
	out := map[string]string{}
	for f, e := range m {
		out[filepath.Base(f)] = e.ID
	}
	return out
}

func TestRescanAddChangeRemove(t *testing.T) {
	f := newReloadFixture(t)
	if got := f.rescan(); got != nil {
		t.Fatalf("empty directory applied %v", ids(got))
	}
	f.write("a.json", observerConfig("obs.a", "stream-a", 100))
	f.write("notes.txt", "not a config")
	f.write(".a.json.swp", "editor junk")
	got := f.rescan()
	if !maps.Equal(ids(got), map[string]string{"a.json": "obs.a"}) {
		t.Fatalf("after add: %v", ids(got))
	}
	first := got[f.path("a.json")]

	// The same bytes written again: nothing to do.
	f.write("a.json", observerConfig("obs.a", "stream-a", 100))
	if got := f.rescan(); got != nil {
		t.Fatalf("unchanged bytes applied %v", ids(got))
	}

	f.write("a.json", observerConfig("obs.a", "stream-a", 200))
	got = f.rescan()
	e := got[f.path("a.json")]
	if e == nil || e == first || e.Observer.MaxRecords != 200 {
		t.Fatalf("after change: %+v", e)
	}

	f.remove("a.json")
	if got := f.rescan(); got == nil || len(got) != 0 {
		t.Fatalf("after remove: %v", got)
	}
	st := f.r.status.get()
	if st.Applied != 3 || st.Refused != 0 || st.Rescans != 5 || st.LastSuccess.IsZero() || st.LastSuccess != st.LastRescan {
		t.Errorf("status %+v", st)
	}
}

// The first scan of a directory: every usable file starts, every other
// one is reported, naming its file and field, and none keeps the others
// from starting.
func TestRescanStartsWhatADirectoryConfigures(t *testing.T) {
	f := newReloadFixture(t)
	f.write("a.json", kinesisV100)
	f.write("b.avro", withKinesis(`"acme-sauna-commands"`, `"other-stream"`))               // same id: refused
	f.write("c.json", withKinesis(`"com.acme.commands"`, `"com.acme.second"`))              // another observer
	f.write("d.json", withKinesis(`"maxRecords":100`, `"maxRecords":-1`))                   // invalid
	f.write("e.json", strings.Replace(kinesisV100, `"enabled":true`, `"enabled":false`, 1)) // disabled
	f.write(".a.json.swp", "garbage")
	f.write("README.md", "garbage")
	must(t, os.Symlink(f.path("c.json"), f.path("link.json")))
	if got := f.rescan(); !maps.Equal(ids(got), map[string]string{"a.json": "com.acme.commands", "c.json": "com.acme.second"}) {
		t.Fatalf("running %v", ids(got))
	}
	var refused []string
	for _, l := range f.log.lines("config refused") {
		refused = append(refused, filepath.Base(fmt.Sprint(l["file"]))+": "+fmt.Sprint(l["field"]))
		if l["file"] == f.path("b.avro") && !strings.Contains(fmt.Sprint(l["problem"]), f.path("a.json")) {
			t.Errorf("duplicate id problem does not name the other file: %v", l)
		}
	}
	want := []string{"b.avro: data.id", "d.json: data.parameters.kinesis.maxRecords", "link.json: data.id"}
	if !slices.Equal(want, refused) {
		t.Errorf("refused %q, want %q", refused, want)
	}
	if l := f.log.lines("config disabled"); len(l) != 1 || l[0]["file"] != f.path("e.json") {
		t.Errorf("disabled %v", l)
	}
}

// The directory is checked before anything starts: one that cannot be read
// is an error, not an empty set.
func TestSupervisorRunNeedsAReadableDirectory(t *testing.T) {
	s := NewSupervisor(Options{Logger: quiet})
	if err := s.Run(t.Context(), filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing directory is not an error")
	}
}

func TestRescanInvalidVersionKeepsLastGood(t *testing.T) {
	f := newReloadFixture(t)
	f.write("a.json", observerConfig("obs.a", "stream-a", 100))
	good := f.rescan()[f.path("a.json")]
	okAt := f.r.status.get().LastSuccess

	f.write("a.json", observerConfig("obs.a", "stream-a", -1))
	if got := f.rescan(); got != nil {
		t.Fatalf("invalid version applied %v", ids(got))
	}
	if f.set.Running()[f.path("a.json")] != good {
		t.Fatal("the last good version no longer runs")
	}
	refused := f.log.lines("config refused")
	if len(refused) != 1 {
		t.Fatalf("refusals logged: %v", refused)
	}
	r := refused[0]
	if r["msg"] != "config refused; the last good version keeps running" || r["file"] != f.path("a.json") ||
		r["field"] != "data.parameters.kinesis.maxRecords" || r["id"] != "obs.a" || r["running_id"] != "obs.a" {
		t.Errorf("refusal log line %v", r)
	}
	st := f.r.status.get()
	if st.Refused != 1 || !slices.Equal(st.Refusing, []string{f.path("a.json")}) || st.LastSuccess != okAt ||
		!strings.Contains(st.LastError, "maxRecords") {
		t.Errorf("status %+v", st)
	}

	// Seen again, alone or with another change: not reported again.
	f.rescan()
	f.write("b.json", observerConfig("obs.b", "stream-b", 100))
	if got := f.rescan(); !maps.Equal(ids(got), map[string]string{"a.json": "obs.a", "b.json": "obs.b"}) || got[f.path("a.json")] != good {
		t.Fatalf("adding b: %v", ids(got))
	}
	if n := len(f.log.lines("config refused")); n != 1 {
		t.Fatalf("the same bad bytes were reported %d times", n)
	}

	// Other bad bytes are news.
	f.write("a.json", `{"schema": "iglu:com.snowplowanalytics.sauna.observers/AmazonKinesisConfig/avro/1-0-0", "data": `)
	f.rescan()
	if n := len(f.log.lines("config refused")); n != 2 {
		t.Fatalf("new bad bytes reported %d times in all, want 2", n)
	}

	f.write("a.json", observerConfig("obs.a", "stream-a", 300))
	got := f.rescan()
	if e := got[f.path("a.json")]; e == nil || e.Observer.MaxRecords != 300 {
		t.Fatalf("fixed version not applied: %+v", e)
	}
	st = f.r.status.get()
	if st.Refused != 2 || len(st.Refusing) != 0 || st.LastSuccess != st.LastRescan {
		t.Errorf("status after the fix %+v", st)
	}

	// Broken again with the first bad bytes: reported again, since the
	// file was good in between.
	f.write("a.json", observerConfig("obs.a", "stream-a", -1))
	f.rescan()
	if n := len(f.log.lines("config refused")); n != 3 {
		t.Fatalf("refusals logged %d, want 3", n)
	}
}

func TestRescanSameIDNewFileIsRefusedNamingBoth(t *testing.T) {
	f := newReloadFixture(t)
	f.write("b.json", observerConfig("obs.x", "stream-b", 100))
	running := f.rescan()[f.path("b.json")]

	// a.json sorts first, but b.json runs: a.json is the later one.
	f.write("a.json", observerConfig("obs.x", "stream-a", 100))
	if got := f.rescan(); got != nil {
		t.Fatalf("applied %v", ids(got))
	}
	if f.set.Running()[f.path("b.json")] != running {
		t.Fatal("the running config was replaced")
	}
	refused := f.log.lines("config refused")
	if len(refused) != 1 {
		t.Fatalf("refusals: %v", refused)
	}
	msg := fmt.Sprint(refused[0]["problem"])
	if refused[0]["file"] != f.path("a.json") || !strings.Contains(msg, f.path("b.json")) || refused[0]["id"] != "obs.x" {
		t.Errorf("refusal %v", refused[0])
	}

	// Once the running one goes, the other one is no longer in conflict.
	f.remove("b.json")
	got := f.rescan()
	if !maps.Equal(ids(got), map[string]string{"a.json": "obs.x"}) {
		t.Fatalf("after removing b.json: %v", ids(got))
	}
}

func TestRescanSameIDInOneScanRefusesTheLaterFile(t *testing.T) {
	f := newReloadFixture(t)
	f.write("a.json", observerConfig("obs.x", "stream-a", 100))
	f.write("b.json", observerConfig("obs.x", "stream-b", 100))
	if got := f.rescan(); !maps.Equal(ids(got), map[string]string{"a.json": "obs.x"}) {
		t.Fatalf("applied %v", ids(got))
	}
	refused := f.log.lines("config refused")
	if len(refused) != 1 || refused[0]["file"] != f.path("b.json") || !strings.Contains(fmt.Sprint(refused[0]["problem"]), f.path("a.json")) {
		t.Fatalf("refusals: %v", refused)
	}
}

func TestRescanChangedIDTakenKeepsLastGood(t *testing.T) {
	f := newReloadFixture(t)
	f.write("a.json", observerConfig("obs.a", "stream-a", 100))
	f.write("b.json", observerConfig("obs.b", "stream-b", 100))
	before := f.rescan()
	f.write("a.json", observerConfig("obs.b", "stream-a", 100))
	if got := f.rescan(); got != nil {
		t.Fatalf("applied %v", ids(got))
	}
	if !maps.Equal(f.set.Running(), before) {
		t.Fatal("running set changed")
	}
	refused := f.log.lines("config refused")
	if len(refused) != 1 || refused[0]["running_id"] != "obs.a" || !strings.Contains(fmt.Sprint(refused[0]["problem"]), f.path("b.json")) {
		t.Fatalf("refusals: %v", refused)
	}
}

// An id handed down a chain of files in one rescan moves; a running config
// is never evicted by another file's new version.
func TestRescanIDMovesBetweenRunningFiles(t *testing.T) {
	f := newReloadFixture(t)
	f.write("a.json", observerConfig("obs.a", "stream-a", 100))
	f.write("b.json", observerConfig("obs.b", "stream-b", 100))
	f.write("c.json", observerConfig("obs.c", "stream-c", 100))
	f.rescan()

	// a.json takes b's id, which b.json gives up for a new one: both move,
	// whatever the order of their names.
	f.write("a.json", observerConfig("obs.b", "stream-b", 100))
	f.write("b.json", observerConfig("obs.d", "stream-d", 100))
	if got := f.rescan(); !maps.Equal(ids(got), map[string]string{"a.json": "obs.b", "b.json": "obs.d", "c.json": "obs.c"}) {
		t.Fatalf("applied %v", ids(got))
	}

	// c.json wants a's id while a.json's new version is refused: a.json
	// keeps its id, so c.json is refused too, and nothing changes.
	before := f.set.Running()
	f.write("a.json", observerConfig("obs.d", "stream-a", 100))
	f.write("c.json", observerConfig("obs.b", "stream-c", 100))
	if got := f.rescan(); got != nil {
		t.Fatalf("applied %v", ids(got))
	}
	if !maps.Equal(f.set.Running(), before) {
		t.Fatal("running set changed")
	}
	refused := map[string]string{}
	for _, l := range f.log.lines("config refused") {
		refused[filepath.Base(fmt.Sprint(l["file"]))] = fmt.Sprint(l["problem"])
	}
	if !strings.Contains(refused["a.json"], f.path("b.json")) || !strings.Contains(refused["c.json"], f.path("a.json")) || len(refused) != 2 {
		t.Errorf("refusals %v", refused)
	}
}

func TestRescanDisabledStops(t *testing.T) {
	f := newReloadFixture(t)
	f.write("a.json", observerConfig("obs.a", "stream-a", 100))
	f.rescan()
	f.write("a.json", strings.Replace(observerConfig("obs.a", "stream-a", 100), `"enabled":true`, `"enabled":false`, 1))
	if got := f.rescan(); got == nil || len(got) != 0 {
		t.Fatalf("after disabling: %v", got)
	}
	if st := f.r.status.get(); st.Refused != 0 || len(st.Refusing) != 0 {
		t.Errorf("disabling counted as a refusal: %+v", st)
	}
}

func TestRescanResponderModuleTaken(t *testing.T) {
	f := newReloadFixture(t)
	f.write("r1.json", responderConfig(t, "resp.one", "app-1"))
	running := f.rescan()[f.path("r1.json")]
	if running == nil || running.Kind != KindResponder || running.Responder.(*fakeResponder).appID != "app-1" {
		t.Fatalf("responder not started: %+v", running)
	}
	f.write("r0.json", responderConfig(t, "resp.zero", "app-0"))
	if got := f.rescan(); got != nil {
		t.Fatalf("applied %v", ids(got))
	}
	refused := f.log.lines("config refused")
	if len(refused) != 1 || refused[0]["file"] != f.path("r0.json") || refused[0]["field"] != "schema" ||
		!strings.Contains(fmt.Sprint(refused[0]["problem"]), f.path("r1.json")) {
		t.Fatalf("refusals: %v", refused)
	}
}

func TestRescanKeepsRunningWhenDirectoryUnreadable(t *testing.T) {
	f := newReloadFixture(t)
	f.write("a.json", observerConfig("obs.a", "stream-a", 100))
	f.rescan()
	gone := f.dir + ".moved"
	if err := os.Rename(f.dir, gone); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Rename(gone, f.dir) })
	if got := f.rescan(); got != nil {
		t.Fatalf("applied %v", ids(got))
	}
	f.rescan()
	if n := len(f.log.lines("cannot read the config directory")); n != 1 {
		t.Errorf("directory error logged %d times, want once", n)
	}
	if st := f.r.status.get(); st.LastError == "" || st.LastSuccess == st.LastRescan {
		t.Errorf("status %+v", st)
	}
	if len(f.set.Running()) != 1 {
		t.Error("the running set changed")
	}
}

func TestRescanFollowsSymlinks(t *testing.T) {
	f := newReloadFixture(t)
	target := filepath.Join(t.TempDir(), "real.json")
	if err := os.WriteFile(target, []byte(observerConfig("obs.a", "stream-a", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, f.path("a.json")); err != nil {
		t.Fatal(err)
	}
	if got := f.rescan(); !maps.Equal(ids(got), map[string]string{"a.json": "obs.a"}) {
		t.Fatalf("applied %v", ids(got))
	}
	// The link's target changes; no event would name a.json.
	if err := os.WriteFile(target, []byte(observerConfig("obs.a", "stream-a", 7)), 0o644); err != nil {
		t.Fatal(err)
	}
	if e := f.rescan()[f.path("a.json")]; e == nil || e.Observer.MaxRecords != 7 {
		t.Fatalf("change behind the link not applied: %+v", e)
	}
}

// Rescans on the real Supervisor, with responders only: a responder change
// is a swap in the dispatcher, effective for the next command; an unchanged
// file keeps its instance.
func TestSupervisorApplySwapsResponders(t *testing.T) {
	f := newReloadFixture(t)
	s := NewSupervisor(Options{Logger: slog.New(slog.NewJSONHandler(f.log, nil))})
	f.r.set = s
	f.write("r.json", responderConfig(t, "resp.one", "app-1"))
	f.rescan()
	cur := s.Dispatcher().Current()[reloadTestModule]
	first := cur.Responder.(*fakeResponder)
	if first.appID != "app-1" || cur.ID != "resp.one" {
		t.Fatalf("dispatcher has %+v", cur)
	}

	// A reloader that has seen nothing yet (as after a restart of the
	// watch) finds the same bytes running: it keeps the instance.
	newReloader(s, f.dir).rescan(t.Context())
	if s.Dispatcher().Current()[reloadTestModule].Responder != first || first.closed.Load() {
		t.Fatal("an unchanged responder was replaced")
	}

	f.write("r.json", responderConfig(t, "resp.one", "app-2"))
	f.rescan()
	second := s.Dispatcher().Current()[reloadTestModule].Responder.(*fakeResponder)
	if second.appID != "app-2" || !first.closed.Load() || second.closed.Load() {
		t.Fatalf("after the change: new %+v, old closed %v", second, first.closed.Load())
	}

	f.remove("r.json")
	f.rescan()
	if len(s.Dispatcher().Current()) != 0 || !second.closed.Load() {
		t.Fatal("removed responder still installed or not closed")
	}
	var lines []string
	for _, l := range f.log.lines("config ") {
		lines = append(lines, fmt.Sprint(l["msg"], " ", filepath.Base(fmt.Sprint(l["file"])), " ", l["id"]))
	}
	want := []string{"config added r.json resp.one", "config changed r.json resp.one", "config removed r.json resp.one"}
	if !slices.Equal(lines, want) {
		t.Errorf("log lines %q, want %q", lines, want)
	}
	s.Wait()
}
