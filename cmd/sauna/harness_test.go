package main

// End-to-end harness: the real sauna binary against the emulators on
// loopback, with local HTTP servers standing in for vendor APIs.
//
// Parallel tests: a test that spends most of its time waiting out leases,
// drain timeouts or black holes, or that is short and shares nothing, calls
// parallel (see TestMain), so that those waits overlap. Such a test shares
// nothing mutable: its streams and observer ids come from
// emulator.UniqueName (so its lease and outcome tables are its own), its
// receivers and proxies are its own (httptest servers, shieldproxy
// processes), and every sauna process takes a free admin port. Its
// assertions must hold on a machine made busier by its neighbours, so they
// name what the design guarantees (fences, claims, checkpoints), never how
// fast it happened.
//
// A test whose verdict needs every live worker to renew its 3 s leases in
// time stays sequential, and runs while no parallel test loads the machine:
// nothing may run twice without idempotency (TestScaleOut,
// TestReloadEndToEnd, the exact deliveries of TestEndToEnd and
// TestEndToEndSaunaTestCommands), a lapsed fence must not eat a 3 s retry
// budget (TestHostileInput), /status must count the shards held
// (TestOperationsEndToEnd). So does one that needs a tight gap between
// requests (TestDeliveryOutage: Retry-After), and one that frees a port for
// the process to take (TestIngestReadiness), which a neighbour asking for a
// free port could get first.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
)

// go test runs GOMAXPROCS parallel tests at a time unless told otherwise:
// two on a 2-core machine, and in no set order. These tests spend much of
// their time waiting on sauna processes and the emulators, and the longest
// (TestDeliveryCrash) bounds the whole parallel phase, so without an
// explicit -parallel TestMain lifts go test's limit and the tests take
// turns by their own rule: TestDeliveryCrash starts at once (t.Parallel),
// and so do the subtests of TestDeliveryShutdownBounded, which spend their
// time waiting out sauna's 10 s drain and 15 s shutdown timers and use
// little CPU; every other parallel test waits for one of parallelSlots
// (parallel). A parent whose body only starts parallel subtests calls
// t.Parallel: its subtests take the slots. With -parallel given, go test's
// limit alone applies.
func TestMain(m *testing.M) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if f := flag.Lookup("test.parallel"); f != nil && !given {
		if err := f.Value.Set("1000"); err != nil {
			fmt.Fprintln(os.Stderr, "setting -test.parallel:", err)
			os.Exit(2)
		}
		slots = make(chan struct{}, parallelSlots)
	}
	os.Exit(m.Run())
}

// parallelSlots is how many other parallel tests run beside those that
// start at once. One: with three, on a loaded 2-core machine, a worker of
// TestDeliveryZombie took seconds to record an outcome after its call, so
// that its claim and lease lapsed and the next owner ran the command again,
// as the design allows of an outcome not recorded in time; the tests' 3 s
// leases and claims hold only while the machine keeps up.
const parallelSlots = 1

// slots holds a token for each running parallel test (nil: -parallel was
// given, go test limits them).
var slots chan struct{}

// parallel is t.Parallel for a test that takes one of parallelSlots; it
// holds it until the test's last cleanup, after its processes stopped.
func parallel(t *testing.T) {
	t.Helper()
	t.Parallel()
	if slots == nil {
		return
	}
	start := time.Now()
	slots <- struct{}{}
	t.Cleanup(func() { <-slots })
	if waited := time.Since(start); waited >= 10*time.Millisecond {
		t.Logf("waited %s for a parallel slot", waited.Round(time.Millisecond))
	}
}

// builtBin is a binary of this module built once per test run.
type builtBin struct {
	once sync.Once
	bin  string
	err  error
}

// path builds pkg (relative to this directory) as name on first use.
func (b *builtBin) path(t testing.TB, name, pkg string) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", name+"-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.bin = filepath.Join(dir, name)
		out, err := exec.Command("go", "build", "-o", b.bin, pkg).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.bin
}

var saunaBin builtBin

// sauna returns the path of a freshly built binary, built once per test run.
func sauna(t testing.TB) string {
	t.Helper()
	return saunaBin.path(t, "sauna", ".")
}

// emulatorEnv is the environment a sauna process needs to reach the emulators
// and nothing else.
func emulatorEnv(env emulator.Env) []string {
	vars := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.TempDir(),
		"AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=test",
		"AWS_SECRET_ACCESS_KEY=test",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_ENDPOINT_URL_KINESIS=" + env.KinesisURL,
		"AWS_ENDPOINT_URL_DYNAMODB=" + env.DynamoDBURL,
	}
	if env.CloudWatchURL != "" {
		vars = append(vars, "AWS_ENDPOINT_URL_CLOUDWATCH="+env.CloudWatchURL)
	} else {
		// The CloudWatch sink is on by default; without moto it must still
		// stay on loopback (a closed port: its data is dropped and counted).
		vars = append(vars, "AWS_ENDPOINT_URL_CLOUDWATCH=http://127.0.0.1:1")
	}
	return vars
}

// process is a running `sauna run` whose log lines (JSON) are kept.
type process struct {
	t    testing.TB
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs []map[string]any
	raw  bytes.Buffer
	done chan struct{}
	err  error
}

func startSauna(t testing.TB, env emulator.Env, configDir string, extraArgs ...string) *process {
	t.Helper()
	// A free port for the admin endpoints: other sauna processes on this
	// machine may hold the default one. adminURL finds it in the log.
	args := append([]string{"run", "--config-dir", configDir, "--log-format", "json", "--log-level", "debug", "--admin-addr", "127.0.0.1:0"}, extraArgs...)
	cmd := exec.Command(sauna(t), args...)
	cmd.Env = emulatorEnv(env)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{t: t, cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			var m map[string]any
			p.mu.Lock()
			p.raw.Write(line)
			p.raw.WriteByte('\n')
			if json.Unmarshal(line, &m) == nil {
				p.logs = append(p.logs, m)
			}
			p.mu.Unlock()
		}
		p.err = cmd.Wait()
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("sauna log:\n%s", p.output())
		}
	})
	return p
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// stop sends SIGTERM and returns how long the process took to exit.
func (p *process) stop(t testing.TB) (time.Duration, error) {
	select {
	case <-p.done:
		return 0, p.err
	default:
	}
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return time.Since(start), p.err
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("sauna did not exit within 30s of SIGTERM")
		return time.Since(start), p.err
	}
}

// logsMatching returns the log records for which match is true.
func (p *process) logsMatching(match func(map[string]any) bool) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, m := range p.logs {
		if match(m) {
			out = append(out, m)
		}
	}
	return out
}

func msgIs(msg string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["msg"] == msg }
}

// waitLogs waits until at least n log records match.
func (p *process) waitLogs(t testing.TB, n int, timeout time.Duration, match func(map[string]any) bool) []map[string]any {
	t.Helper()
	var got []map[string]any
	waitFor(t, timeout, func() bool {
		got = p.logsMatching(match)
		return len(got) >= n
	}, func() string { return fmt.Sprintf("%d of %d expected log records", len(got), n) })
	return got
}

// giveUp bounds the waits of these tests for what must eventually happen.
// It only ends a broken run: on a loaded machine (CI shares its cores)
// progress can be many times slower than on a quiet one, and a passing run
// never waits for it, so it is no measure of anything.
const giveUp = 3 * time.Minute

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitProgress is waitFor for a wait whose length is the machine's speed,
// such as thousands of commands to run: it gives up only when progress()
// has not changed for timeout.
func waitProgress(t testing.TB, timeout time.Duration, progress func() int, cond func() bool, what func() string) {
	t.Helper()
	last := progress()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if p := progress(); p != last {
			last, deadline = p, time.Now().Add(timeout)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress for %s waiting for %s", timeout, what())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// webhookSink plays a vendor endpoint and records every request body.
type webhookSink struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	paths  []string
	// status decides the response to each request (default 200 "ok").
	status func(body []byte) (int, string)
}

func newWebhookSink(t testing.TB) *webhookSink {
	s := &webhookSink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		status := s.status
		s.bodies = append(s.bodies, b)
		s.paths = append(s.paths, r.URL.Path)
		s.mu.Unlock()
		code, text := 200, "ok"
		if status != nil {
			code, text = status(b)
		}
		w.WriteHeader(code)
		io.WriteString(w, text)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *webhookSink) received() [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.bodies...)
}

// texts returns the "text" field of every JSON body received.
func (s *webhookSink) texts() []string {
	var out []string
	for _, b := range s.received() {
		var m struct {
			Text string `json:"text"`
		}
		_ = json.Unmarshal(b, &m)
		out = append(out, m.Text)
	}
	return out
}

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// observerConfig is a Sauna 1-0-0 AmazonKinesisConfig, as Sauna users have
// them, tuned only by what the 1-0-1 fields allow when fast is set.
func observerConfig(id, stream string, fast bool) string {
	if !fast {
		return fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.observers/AmazonKinesisConfig/avro/1-0-0",
 "data":{"enabled":true,"id":%q,"parameters":{
   "aws":{"accessKeyId":"test","secretAccessKey":"test"},
   "kinesis":{"region":"us-east-1","streamName":%q,"maxRecords":100,
              "initialPosition":"TRIM_HORIZON","initialPositionModifiers":null}}}}`, id, stream)
	}
	return fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.observers/AmazonKinesisConfig/avro/1-0-1",
 "data":{"enabled":true,"id":%q,"parameters":{
   "aws":{"accessKeyId":"","secretAccessKey":""},
   "kinesis":{"region":"us-east-1","streamName":%q,"maxRecords":100,
              "initialPosition":"TRIM_HORIZON","initialPositionModifiers":null,
              "shardSyncIntervalMillis":300,"idleTimeBetweenReadsMillis":250,
              "failoverTimeMillis":3000,"leaseRefreshMillis":1000,"parentShardPollMillis":500}}}}`, id, stream)
}

func slackConfig(id, webhookURL string) string {
	return fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-0",
 "data":{"enabled":true,"id":%q,"parameters":{"sendMessageEnabled":true,"webhookUrl":%q}}}`, id, webhookURL)
}

// commandRecord is one Sauna command as a Kinesis record.
func commandRecord(commandID string, created time.Time, ttl string, inner string) string {
	return fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0","data":{`+
		`"envelope":{"schema":"iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0","data":{`+
		`"commandId":%q,"whenCreated":%q,"execution":{"semantics":"AT_LEAST_ONCE","timeToLive":%s},"tags":{}}},`+
		`"command":%s}}`, commandID, created.UTC().Format(time.RFC3339Nano), ttl, inner)
}

func slackInner(text string) string {
	return fmt.Sprintf(`{"schema":"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0","data":{"text":%q,"channel":"#ops"}}`, text)
}

// uuidFor makes a stable, valid UUID from a small number.
func uuidFor(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

// runCLI runs the binary once (not `run`) and returns its exit code and output.
func runCLI(t testing.TB, env emulator.Env, stdin string, args ...string) (int, string, string) {
	t.Helper()
	// The binary is built (once) before the clock starts: building on a
	// busy machine is not what the minute bounds.
	bin := sauna(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = emulatorEnv(env)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}
