package main

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sauna-io/sauna/bench/sink"
)

func TestParseBench(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/sauna-io/sauna/observer/kinesis
BenchmarkPipeline-8   	   90000	     13000 ns/op	       660.0 record-bytes	   12450 B/op	     184 allocs/op
BenchmarkPipeline-8   	   90000	     15000 ns/op	       660.0 record-bytes	   12460 B/op	     184 allocs/op
BenchmarkPipeline-8   	   90000	     14000 ns/op	       660.0 record-bytes	   12440 B/op	     184 allocs/op
BenchmarkPipelineOther-8	1	1 ns/op
PASS`
	res := parseBench(out, "BenchmarkPipeline")
	if len(res) != 3 {
		t.Fatalf("parsed %d lines, want 3", len(res))
	}
	if v, _ := median(res, "ns/op"); v != 14000 {
		t.Errorf("median ns/op = %v, want 14000", v)
	}
	if v, _ := median(res, "record-bytes"); v != 660 {
		t.Errorf("median record-bytes = %v, want 660", v)
	}
	if _, ok := median(res, "MB/s"); ok {
		t.Error("median of a missing unit reported ok")
	}
}

func TestShardOfAndKeysPerShard(t *testing.T) {
	// Two shards splitting the 128-bit hash space in half, as Kinesis does.
	s := &stream{name: "t"}
	half := "170141183460469231731687303715884105727"
	for _, r := range [][3]string{{"shardId-0", "0", half}, {"shardId-1", "170141183460469231731687303715884105728", "340282366920938463463374607431768211455"}} {
		lo, hi := mustBig(t, r[1]), mustBig(t, r[2])
		s.shards = append(s.shards, shardRange{id: r[0], lo: lo, hi: hi})
	}
	keys := s.keysPerShard("k", 3)
	for id, ks := range keys {
		if len(ks) != 3 {
			t.Fatalf("%s: %d keys", id, len(ks))
		}
		for _, k := range ks {
			if s.shardOf(k) != id {
				t.Errorf("key %s listed for %s hashes to %s", k, id, s.shardOf(k))
			}
		}
	}
	if len(keys) != 2 {
		t.Fatalf("keys for %d shards, want 2", len(keys))
	}
}

func TestPercentile(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for _, c := range []struct{ p, want float64 }{{50, 5}, {90, 9}, {99, 10}, {100, 10}} {
		if got := pct(v, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
}

func mustBig(t *testing.T, s string) *big.Int {
	t.Helper()
	v, ok := new(big.Int).SetString(s, 10)
	if !ok {
		t.Fatalf("bad number %s", s)
	}
	return v
}

func TestBaselineArgsPassTheKCLSettings(t *testing.T) {
	sp := spec{kind: kindKCL, id: "kcl-1", app: "app", streams: []string{"s"}}
	plain := strings.Join(baselineArgs(sp, "127.0.0.1:1"), " ")
	if strings.Contains(plain, "-steal") || strings.Contains(plain, "-shard-sync") {
		t.Errorf("default spec: %s; want neither -steal nor -shard-sync", plain)
	}
	sp.steal, sp.kclShardSync = true, scaleKCLShardSync
	args := baselineArgs(sp, "127.0.0.1:1")
	i := slices.Index(args, "-shard-sync")
	if !slices.Contains(args, "-steal") || i < 0 || i+1 >= len(args) {
		t.Fatalf("scale spec: %v; want -steal and -shard-sync D", args)
	}
	if d, err := time.ParseDuration(args[i+1]); err != nil || d != scaleKCLShardSync {
		t.Errorf("-shard-sync %q: parses to %v (%v), want %v", args[i+1], d, err, scaleKCLShardSync)
	}
}

func TestSteadyCounterCountsOncePerCommand(t *testing.T) {
	c := newSteadyCounter("ds", 3, 7) // commands 0..6: key ds(i%3), n i/3
	put := func(key string, n, done int64) { c.add(sink.Delivery{Key: key, N: n, DoneNanos: done}) }
	put("ds1", 0, 50)  // command 1
	put("ds0", 0, 20)  // command 0, earlier than the first report
	put("ds0", 2, 90)  // command 6
	put("ds1", 0, 95)  // command 1 again: a duplicate, and not the last delivery
	put("ds2", 2, 99)  // command 8 is past the backlog
	put("ds3", 0, 99)  // key outside the backlog
	put("x1", 0, 99)   // another prefix
	put("dsx", 0, 99)  // not a number
	put("ds2", -1, 99) // warm-up style n
	got := c.stats()
	want := steadyStats{arrived: 3, dups: 1, stray: 5, first: 20, last: 90}
	if got != want {
		t.Errorf("stats = %+v, want %+v", got, want)
	}
}

func TestTableDropsColumnsThatCanOnlyHoldDashes(t *testing.T) {
	render := func(tb *table) []string {
		var b strings.Builder
		tb.markdown(&b)
		return strings.Split(strings.TrimSpace(b.String()), "\n")
	}
	plain := &table{cols: []string{"1 worker", "3 workers"}}
	plain.add(&row{metric: "requests per command", cells: []cell{num(2, "%.0f"), num(3, "%.0f")}, noRatio: true})
	if got := render(plain)[0]; got != "| metric | 1 worker | 3 workers |" {
		t.Errorf("no targets, no ratios: header %q", got)
	}
	full := &table{cols: []string{kindSauna, kindRaw}}
	full.add(&row{metric: "rate", cells: []cell{num(8, "%.0f"), num(10, "%.0f")}, target: ">= 5", verdict: "met"})
	full.add(&row{metric: "dups", cells: []cell{num(0, "%.0f"), num(0, "%.0f")}, noRatio: true})
	lines := render(full)
	if lines[0] != "| metric | sauna | raw | target | sauna vs target | sauna vs baselines |" {
		t.Errorf("header %q", lines[0])
	}
	if lines[2] != "| rate | 8 | 10 | >= 5 | met | sauna is 0.80x raw |" || lines[3] != "| dups | 0 | 0 | - | - | - |" {
		t.Errorf("rows %q", lines[2:])
	}
}

func TestAtMostZero(t *testing.T) {
	if got := atMost(num(0, "%.0f"), 0, "duplicates"); got != "met" {
		t.Errorf("0 of at most 0: %q", got)
	}
	if got := atMost(num(3, "%.0f"), 0, "duplicates"); got != "missed: 3 duplicates" {
		t.Errorf("3 of at most 0: %q", got)
	}
}

func TestScaleColumnsNameTheKCLsSettings(t *testing.T) {
	cols := scaleCols([]string{kindSauna, kindKCL, kindRaw})
	if cols[1] == kindKCL || !strings.Contains(cols[1], "stealing") || !strings.Contains(cols[1], "2000 ms") {
		t.Errorf("KCL column %q; want its lease stealing and shard sync named", cols[1])
	}
	if cols[0] != kindSauna || cols[2] != kindRaw {
		t.Errorf("other columns renamed: %v", cols)
	}
}

func TestInChunksCoversEveryIndexOnceAndStopsOnError(t *testing.T) {
	var mu sync.Mutex
	seen := make([]int, 1003)
	err := inChunks(context.Background(), len(seen), 10, 4, func(_ context.Context, lo, hi int) error {
		if hi-lo > 10 || lo >= hi {
			return fmt.Errorf("chunk [%d, %d)", lo, hi)
		}
		mu.Lock()
		defer mu.Unlock()
		for i := lo; i < hi; i++ {
			seen[i]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range seen {
		if n != 1 {
			t.Fatalf("index %d seen %d times", i, n)
		}
	}
	boom := errors.New("boom")
	var calls atomic.Int64
	err = inChunks(context.Background(), 1000, 1, 2, func(context.Context, int, int) error {
		calls.Add(1)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want boom", err)
	}
	if c := calls.Load(); c > 2 {
		t.Errorf("%d calls after the first error; each worker should stop at its first", c)
	}
}

func TestCeilingRowsJudgeIdempotencyOnAndShowTheCeiling(t *testing.T) {
	rs := []runSpec{{label: "sauna (idempotency off)", kind: kindSauna}, {label: labelIdemOn, kind: kindSauna}, {label: kindRaw, kind: kindRaw}}
	tb := &table{cols: runLabels(rs)}
	rate := tb.add(&row{metric: "commands/s", cells: []cell{num(8000, "%.0f"), num(3000, "%.0f"), num(9000, "%.0f")}})
	rawShareVerdict(rate, rs)
	s := &section{}
	ceilingRows(tb, s, rate, &ddbCeiling{items: 40000, itemsPerS: 4000, peeks: 300, peekMs: 12.5}, "window")
	if !strings.Contains(rate.target, ">= 6410 (idempotency on)") || !strings.Contains(rate.verdict, "idempotency on: missed by 3410") ||
		!strings.HasPrefix(rate.verdict, "idempotency off: met") {
		t.Errorf("target %q, verdict %q", rate.target, rate.verdict)
	}
	got := map[string][]string{}
	for _, r := range tb.rows[1:] {
		for _, c := range r.cells {
			got[r.metric] = append(got[r.metric], c.text)
		}
	}
	want := map[string][]string{
		"dynalite ceiling: outcome items written per second (16 writers x 25, 40000 items)": {"-", "4000", "-"},
		"dynalite: ms per Peek of 100 ids (serial, 300 Peeks)":                              {"-", "12.5", "-"},
		"sauna (idempotency on) commands/s as % of that ceiling":                            {"-", "75%", "-"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	if len(s.notes) != 1 || !strings.Contains(s.notes[0], "dynalite writes at most 4000 outcome items/s") ||
		!strings.Contains(s.notes[0], "sauna reached 75% of it") || !strings.Contains(s.notes[0], "above that ceiling") {
		t.Errorf("notes %q", s.notes)
	}

	// Not measured: the verdict still stands, the row says why.
	tb = &table{cols: runLabels(rs)}
	rate = tb.add(&row{metric: "commands/s", cells: []cell{num(8000, "%.0f"), num(7000, "%.0f"), num(9000, "%.0f")}})
	ceilingRows(tb, &section{}, rate, nil, "window")
	if rate.verdict != "met" || len(tb.rows) != 2 || tb.rows[1].cells[1].text != "not measured (see notes)" {
		t.Errorf("verdict %q, rows %d", rate.verdict, len(tb.rows))
	}
}

func TestProcCPU(t *testing.T) {
	// A command name with spaces and parentheses; utime 250, stime 50 ticks.
	stat := "4242 (node (x) y) S 1 4242 4242 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 11 0 1000 2000 300"
	if got, ok := procCPU(stat); !ok || got != 3*time.Second {
		t.Errorf("procCPU = %v, %v; want 3s", got, ok)
	}
	if _, ok := procCPU("4242 (node) S 1"); ok {
		t.Errorf("procCPU of a short line is ok")
	}
	if got := (cpuMark{}).perUnit(10); got != 0 {
		t.Errorf("perUnit of an unread mark = %v, want 0", got)
	}
}

func TestCeilingRowsShowDynaliteCPU(t *testing.T) {
	rs := []runSpec{{label: labelIdemOn, kind: kindSauna}}
	tb := &table{cols: runLabels(rs)}
	rate := tb.add(&row{metric: "commands/s", cells: []cell{num(3000, "%.0f")}})
	ceilingRows(tb, &section{}, rate, &ddbCeiling{items: 40000, itemsPerS: 4000, cpuItemUs: 190, cpuPeekIDUs: 41, cpuCommandUs: 236}, "window")
	got := map[string]string{}
	for _, r := range tb.rows[1:] {
		got[r.metric] = r.cells[0].text
	}
	for metric, want := range map[string]string{
		"dynalite CPU per outcome item written (µs, ceiling)":  "190",
		"dynalite CPU per id peeked (µs, ceiling)":             "41",
		"dynalite CPU per command of this run (µs, whole run)": "236",
	} {
		if got[metric] != want {
			t.Errorf("%s = %q, want %q (rows %v)", metric, got[metric], want, got)
		}
	}
}

func TestParseEmulatorEnv(t *testing.T) {
	// What scripts/emulators/emulators.sh env prints with WITH_MOTO=0.
	out := `export AWS_ACCESS_KEY_ID=test
export AWS_REGION=us-east-1
export AWS_ENDPOINT_URL_KINESIS=http://127.0.0.1:38689
export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:33857
export SAUNA_TEST_KINESIS_ENDPOINT=http://127.0.0.1:38689
unset AWS_ENDPOINT_URL_CLOUDWATCH SAUNA_TEST_CLOUDWATCH_ENDPOINT
`
	kin, ddb, err := parseEmulatorEnv(out)
	if err != nil || kin != "http://127.0.0.1:38689" || ddb != "http://127.0.0.1:33857" {
		t.Fatalf("parseEmulatorEnv = %q, %q, %v", kin, ddb, err)
	}
	if _, _, err := parseEmulatorEnv("export AWS_ENDPOINT_URL_KINESIS=http://127.0.0.1:1\n"); err == nil ||
		!strings.Contains(err.Error(), "AWS_ENDPOINT_URL_DYNAMODB") {
		t.Errorf("no DynamoDB endpoint: err = %v", err)
	}
	if _, _, err := parseEmulatorEnv("export AWS_ENDPOINT_URL_KINESIS=https://kinesis.us-east-1.amazonaws.com\n" +
		"export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:2\n"); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("an AWS endpoint: err = %v", err)
	}
}

func TestOwnedName(t *testing.T) {
	for name, want := range map[string]bool{
		"bench-4242-7":            true,
		"app-4242-12-commands":    true, // sauna's outcome table
		"ceiling-4242-3-commands": true,
		"bench-42420-7":           false, // another harness run
		"bench-14242-7":           false,
		"orders":                  false,
	} {
		if got := ownedName(name, "4242"); got != want {
			t.Errorf("ownedName(%q) = %v, want %v", name, got, want)
		}
	}
}

// fakeEmulators writes a script that answers stop, start and env as
// scripts/emulators/emulators.sh does, each start on new ports, and logs
// every call to $EMULATORS_DIR/calls.
func fakeEmulators(t *testing.T) (script, calls string) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("EMULATORS_DIR", dir)
	script = filepath.Join(dir, "emulators.sh")
	body := `#!/bin/sh
echo "$1" >>"$EMULATORS_DIR/calls"
case $1 in
  start) echo $((100 + $(grep -c start "$EMULATORS_DIR/calls"))) >"$EMULATORS_DIR/dynamodb.pid" ;;
  env)
    n=$(grep -c start "$EMULATORS_DIR/calls")
    echo "export AWS_ENDPOINT_URL_KINESIS=http://127.0.0.1:1000$n"
    echo "export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:2000$n"
    ;;
esac
`
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, filepath.Join(dir, "calls")
}

func readCalls(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(b)), ",")
}

func TestFreshRestartsTheEmulatorsOnceTouched(t *testing.T) {
	script, calls := fakeEmulators(t)
	e := &env{emulators: script}
	e.setEndpoints("http://127.0.0.1:1", "http://127.0.0.1:2")
	ctx := context.Background()

	// Untouched since they were started: nothing to do.
	if err := e.fresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readCalls(t, calls); got != "" || e.restarts != 0 {
		t.Fatalf("untouched emulators: calls %q, %d restarts", got, e.restarts)
	}

	e.touch()
	if err := e.fresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readCalls(t, calls); got != "stop,start,env" {
		t.Fatalf("calls %q, want stop,start,env", got)
	}
	if e.kinURL != "http://127.0.0.1:10001" || e.ddbURL != "http://127.0.0.1:20001" || e.restarts != 1 {
		t.Fatalf("after a restart: kinesis %s, dynamodb %s, %d restarts", e.kinURL, e.ddbURL, e.restarts)
	}
	// Consumers started from now on get the new endpoints.
	if env := strings.Join(e.childEnv(), " "); !strings.Contains(env, "AWS_ENDPOINT_URL_KINESIS=http://127.0.0.1:10001") ||
		!strings.Contains(env, "AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:20001") {
		t.Errorf("child env %s", env)
	}

	if err := e.fresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readCalls(t, calls); got != "stop,start,env" {
		t.Fatalf("a second fresh with nothing in between restarted again: calls %q", got)
	}

	// A DynamoDB client is a way in: the next fresh restarts again.
	_ = e.dynamo()
	if err := e.fresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got := readCalls(t, calls); got != "stop,start,env,stop,start,env" || e.ddbURL != "http://127.0.0.1:20002" {
		t.Fatalf("calls %q, dynamodb %s", got, e.ddbURL)
	}

	// A script that fails leaves the emulators marked as not fresh.
	e.emulators = filepath.Join(filepath.Dir(script), "missing.sh")
	e.touch()
	if err := e.fresh(ctx); err == nil || !strings.Contains(err.Error(), "restart the emulators") {
		t.Fatalf("missing script: err = %v", err)
	}
	if !e.dirty.Load() {
		t.Error("a failed restart marked the emulators fresh")
	}
}

func TestCPUMarkOfARestartedDynalite(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("EMULATORS_DIR", dir)
	pidFile := filepath.Join(dir, "dynamodb.pid")
	// The test process stands in for dynalite: its /proc stat is real.
	if err := os.WriteFile(pidFile, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	m := dynaliteCPU()
	if !m.ok {
		t.Skip("no /proc here")
	}
	for i := 0; i < 2_000_000; i++ { // some CPU time, so the difference is not 0 by chance
		_ = fmt.Sprint(i)
	}
	if got := m.perUnit(1); got <= 0 {
		t.Errorf("perUnit of the same process = %v, want > 0", got)
	}
	if err := os.WriteFile(pidFile, []byte(fmt.Sprintf("%d\n", os.Getppid())), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := m.perUnit(1); got != 0 {
		t.Errorf("perUnit across a restart (another pid) = %v, want 0", got)
	}
}

func TestFreshMethodSaysHowAndHowOften(t *testing.T) {
	r := freshMethod("restarted", 12, 4)
	for _, want := range []string{"empty emulators", "emulators.sh stop", "12 restarts in this run", "drain-steady", "(4 times in this run)"} {
		if !strings.Contains(r, want) {
			t.Errorf("restarted: %q lacks %q", r, want)
		}
	}
	if r := freshMethod("restarted", 3, 0); strings.Contains(r, "times in this run") {
		t.Errorf("restarted without drain-steady: %q counts its emptyings", r)
	}
	m := freshMethod("emptied", 0, 9)
	for _, want := range []string{"emptied emulators", "-emulators", "(9 times in this run)", "drain-steady"} {
		if !strings.Contains(m, want) {
			t.Errorf("emptied: %q lacks %q", m, want)
		}
	}
	if strings.Contains(m, "restarts in this run") {
		t.Errorf("emptied: %q speaks of restarts", m)
	}
}

// The read-limit note names the largest shard in bytes and the best rate a
// consumer within 2 MB/s per shard (beyond 10 MB and two batches) can reach
// on the backlog, against raw's.
func TestReadLimitNote(t *testing.T) {
	st := &stream{shards: []shardRange{{id: "s0"}, {id: "s1"}}}
	perShard := map[string]int{"s0": 50_000, "s1": 60_000}
	// s1: 60,000 commands of 500 bytes = 30 MB; a batch of 10,000 is 5 MB:
	// (30 - 10 - 2*5) MB at 2 MB/s = 5 s for 110,000 commands.
	perShardBytes := map[string]int{"s0": 25_000_000, "s1": 30_000_000}
	rs := []runSpec{{label: "sauna (idempotency off)", kind: kindSauna}, {label: kindRaw, kind: kindRaw}}
	rate := &row{cells: []cell{num(14000, "%.0f"), num(29333.3, "%.0f")}}
	got := readLimitNote(st, perShard, perShardBytes, 110_000, rate, rs)
	for _, want := range []string{"s1, holds 30.0 MB", "10000 records (5.0 MB each)", "5.0 s at 2 MB/s", "about 22000 commands/s at most", "75% of raw's rate"} {
		if !strings.Contains(got, want) {
			t.Errorf("note %q\nlacks %q", got, want)
		}
	}
	if got := readLimitNote(st, perShard, map[string]int{"s0": 1000, "s1": 2000}, 110_000, rate, rs); got != "" {
		t.Errorf("backlog within the burst: note %q, want none", got)
	}
}
