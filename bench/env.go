package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sauna-io/sauna/bench/probe"
	"github.com/sauna-io/sauna/bench/sink"
)

// Consumer kinds, in report column order.
const (
	kindSauna  = "sauna"
	kindKCL    = "kcl-defaults"
	kindHarlow = "harlow-defaults"
	kindRaw    = "raw"
)

var kinds = []string{kindSauna, kindKCL, kindHarlow, kindRaw}

// env is what every scenario shares: the emulators, the built consumers,
// the sink and the child processes.
type env struct {
	kin            *kinesis.Client
	kinURL, ddbURL string
	quick          bool
	outcomes       int // -outcomes: items of the replay scenario's outcome table; 0 means the default
	kinds          []string
	saunaIdem      string // -sauna-idempotency: both, off or on
	cpuProfiles    string // -sauna-cpuprofile: directory for sauna's CPU profiles; empty: none
	tmp            string // logs, configs and binaries

	// emulators is scripts/emulators/emulators.sh when the harness may
	// restart the emulators it names by $EMULATORS_DIR; empty, it only
	// deletes what it created (fresh.go).
	emulators         string
	dirty             atomic.Bool // the emulators may hold state since they were last made fresh
	restarts, emptied int         // how often fresh restarted or emptied them

	bins     map[string]string // kind -> binary
	buildErr map[string]error  // kind -> why it cannot run

	sink *sink.Server
	col  *collector

	seq   atomic.Int64
	runID string

	mu    sync.Mutex
	procs map[*proc]struct{}
}

func newEnv(ctx context.Context, kinURL, ddbURL, emulators string, quick bool, kindsWanted []string) (*env, error) {
	tmp, err := os.MkdirTemp("", "sauna-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{
		emulators: emulators, quick: quick, kinds: kindsWanted, tmp: tmp,
		bins: map[string]string{}, buildErr: map[string]error{},
		col:   newCollector(),
		runID: strconv.FormatInt(time.Now().Unix()%1_000_000, 10),
		procs: map[*proc]struct{}{},
	}
	e.setEndpoints(kinURL, ddbURL)
	// Emulators handed over may hold anything; the first fresh sees to it.
	e.dirty.Store(true)
	e.sink, err = sink.Listen("127.0.0.1:0", e.col.add, func(err error) { log.Printf("sink: %v", err) })
	if err != nil {
		return nil, err
	}
	log.Printf("sink on %s; logs and configs under %s", e.sink.Addr(), tmp)
	e.build(ctx)
	return e, nil
}

// awsConfig is the SDK config of the harness's own clients: test
// credentials; each client sets its emulator's endpoint.
func awsConfig() aws.Config {
	return aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}
}

// dynamo is a client of the DynamoDB emulator.
func (e *env) dynamo() *dynamodb.Client {
	e.touch()
	return dynamodb.NewFromConfig(awsConfig(), func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(e.ddbURL) })
}

// build compiles the consumers. A failed build only takes its consumer out
// of the report, so the baselines still run while sauna's entry point is
// being worked on.
func (e *env) build(ctx context.Context) {
	type target struct{ name, pkg string }
	targets := map[string]target{
		kindSauna: {"sauna-bench", "./cmd/sauna-bench"},
		kindKCL:   {"baseline", "./cmd/baseline"},
	}
	targets[kindHarlow], targets[kindRaw] = targets[kindKCL], targets[kindKCL]
	built := map[string]error{}
	for _, k := range e.kinds {
		t := targets[k]
		bin := filepath.Join(e.tmp, t.name)
		err, done := built[t.name]
		if !done {
			log.Printf("building %s", t.pkg)
			out, berr := exec.CommandContext(ctx, "go", "build", "-o", bin, t.pkg).CombinedOutput()
			if berr != nil {
				err = fmt.Errorf("go build %s: %v: %s", t.pkg, berr, firstLines(string(out), 6))
				log.Print(err)
			}
			built[t.name] = err
		}
		if err != nil {
			e.buildErr[k] = err
			continue
		}
		e.bins[k] = bin
	}
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, " | ")
}

func (e *env) close() {
	e.mu.Lock()
	ps := make([]*proc, 0, len(e.procs))
	for p := range e.procs {
		ps = append(ps, p)
	}
	e.mu.Unlock()
	for _, p := range ps {
		p.kill()
	}
	e.sink.Close()
}

// name returns a fresh name for a stream, lease table or consumer id:
// nothing is reused even when the emulators are emptied rather than
// restarted, and the run id marks what this harness run created.
func (e *env) name(prefix string) string {
	return fmt.Sprintf("%s-%s-%d", prefix, e.runID, e.seq.Add(1))
}

// ---- streams ----

type stream struct {
	name   string
	shards []shardRange
	cache  sync.Map // key -> shard id
}

type shardRange struct {
	id     string
	lo, hi *big.Int
}

func (e *env) createStream(ctx context.Context, shards int) (*stream, error) {
	e.touch()
	name := e.name("bench")
	if _, err := e.kin.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(name), ShardCount: aws.Int32(int32(shards))}); err != nil {
		return nil, fmt.Errorf("create stream %s: %w", name, err)
	}
	w := kinesis.NewStreamExistsWaiter(e.kin, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay, o.MaxDelay = 50*time.Millisecond, time.Second })
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(name)}, time.Minute); err != nil {
		return nil, err
	}
	out, err := e.kin.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(name)})
	if err != nil {
		return nil, err
	}
	s := &stream{name: name}
	for _, sh := range out.Shards {
		lo, _ := new(big.Int).SetString(aws.ToString(sh.HashKeyRange.StartingHashKey), 10)
		hi, _ := new(big.Int).SetString(aws.ToString(sh.HashKeyRange.EndingHashKey), 10)
		if lo == nil || hi == nil {
			return nil, fmt.Errorf("stream %s: shard %s has an unreadable hash key range", name, aws.ToString(sh.ShardId))
		}
		s.shards = append(s.shards, shardRange{id: aws.ToString(sh.ShardId), lo: lo, hi: hi})
	}
	if len(s.shards) != shards {
		return nil, fmt.Errorf("stream %s: %d shards, want %d", name, len(s.shards), shards)
	}
	return s, nil
}

// shardOf finds the shard a partition key goes to: MD5 of the key as a
// 128-bit big-endian number, inside the shard's hash-key range.
func (s *stream) shardOf(key string) string {
	if v, ok := s.cache.Load(key); ok {
		return v.(string)
	}
	sum := md5.Sum([]byte(key))
	h := new(big.Int).SetBytes(sum[:])
	id := "?"
	for _, r := range s.shards {
		if h.Cmp(r.lo) >= 0 && h.Cmp(r.hi) <= 0 {
			id = r.id
			break
		}
	}
	s.cache.Store(key, id)
	return id
}

func (s *stream) shardIDs() []string {
	ids := make([]string, len(s.shards))
	for i, r := range s.shards {
		ids[i] = r.id
	}
	return ids
}

// keysPerShard picks perShard partition keys that hash to each shard, so
// that every shard gets records however the hash falls.
func (s *stream) keysPerShard(prefix string, perShard int) map[string][]string {
	out := map[string][]string{}
	need := perShard * len(s.shards)
	for i := 0; need > 0; i++ {
		k := prefix + strconv.Itoa(i)
		sh := s.shardOf(k)
		if len(out[sh]) < perShard {
			out[sh] = append(out[sh], k)
			need--
		}
	}
	return out
}

// record is one probe command as sauna expects it.
func record(key string, n, putNanos int64) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0","data":{`+
		`"envelope":{"schema":"iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0","data":{`+
		`"commandId":%q,"whenCreated":%q,"execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}},`+
		`"command":{"schema":"iglu:io.sauna.bench.commands/probe/jsonschema/1-0-0","data":{"key":%q,"n":%d,"putNanos":%d}}}}`,
		uuidV4(), time.Now().UTC().Format(time.RFC3339), key, n, putNanos)
	return b.Bytes()
}

func uuidV4() string {
	var u [16]byte
	_, _ = rand.Read(u[:]) // never fails (crypto/rand)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:])
}

// putOne puts one command, stamping putNanos right before the call.
func (e *env) putOne(ctx context.Context, s *stream, key string, n int64) error {
	now := time.Now().UnixNano()
	_, err := e.kin.PutRecord(ctx, &kinesis.PutRecordInput{StreamName: aws.String(s.name), PartitionKey: aws.String(key), Data: record(key, n, now)})
	return err
}

type cmdRef struct {
	key string
	n   int64
}

// putBatch puts commands with PutRecords, 500 at a time, in order.
func (e *env) putBatch(ctx context.Context, s *stream, cmds []cmdRef) error {
	for start := 0; start < len(cmds); start += 500 {
		batch := cmds[start:min(start+500, len(cmds))]
		now := time.Now().UnixNano()
		entries := make([]types.PutRecordsRequestEntry, len(batch))
		for i, c := range batch {
			entries[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String(c.key), Data: record(c.key, c.n, now)}
		}
		out, err := e.kin.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(s.name), Records: entries})
		if err != nil {
			return fmt.Errorf("PutRecords: %w", err)
		}
		if f := aws.ToInt32(out.FailedRecordCount); f > 0 {
			return fmt.Errorf("PutRecords: %d of %d records failed", f, len(entries))
		}
	}
	return nil
}

// ---- deliveries ----

type delivery struct {
	sink.Delivery
	shard string // resolved shard id
}

// listener takes the reports of one scenario run: a recorder keeps every
// delivery, a steadyCounter (drain-steady) only counts them.
type listener interface {
	add(sink.Delivery)
}

// collector routes each report to the listener of its consumer id; reports
// from consumers no scenario listens to any more are dropped.
type collector struct {
	mu   sync.Mutex
	recs map[string]listener
}

func newCollector() *collector { return &collector{recs: map[string]listener{}} }

func (c *collector) listen(consumer string, r listener) {
	c.mu.Lock()
	c.recs[consumer] = r
	c.mu.Unlock()
}

func (c *collector) add(d sink.Delivery) {
	c.mu.Lock()
	r := c.recs[d.Consumer]
	c.mu.Unlock()
	if r != nil {
		r.add(d)
	}
}

// recorder holds the deliveries of one scenario run.
type recorder struct {
	resolve func(sink.Delivery) string
	mu      sync.Mutex
	ds      []delivery
}

func newRecorder(s *stream) *recorder {
	return &recorder{resolve: func(d sink.Delivery) string {
		if strings.HasPrefix(d.Shard, "shardId-") {
			return d.Shard
		}
		return s.shardOf(d.Key) // sauna's probe reports the key
	}}
}

func (r *recorder) add(d sink.Delivery) {
	dd := delivery{Delivery: d, shard: r.resolve(d)}
	r.mu.Lock()
	r.ds = append(r.ds, dd)
	r.mu.Unlock()
}

// snapshot returns the deliveries so far, sorted by delivery time.
func (r *recorder) snapshot() []delivery {
	r.mu.Lock()
	out := append([]delivery(nil), r.ds...)
	r.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].DoneNanos < out[j].DoneNanos })
	return out
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ds)
}

// ---- processes ----

// spec says how to start one consumer process.
type spec struct {
	kind    string
	id      string   // consumer id in the sink reports
	app     string   // lease table / observer id; one per stream for sauna
	streams []string // sauna may watch several (one observer each)
	delay   time.Duration
	// idempotency sets sauna's delivery.idempotency.enabled; nil leaves the
	// schema default.
	idempotency *bool
	// steal turns on the KCL's lease stealing (kcl only).
	steal bool
	// kclShardSync, if not 0, sets the KCL's ShardSyncIntervalMillis (kcl
	// only); 0 keeps the library's 60 s.
	kclShardSync time.Duration
	// ddbURL, if set, is the DynamoDB endpoint instead of the emulator's
	// (a counting proxy in front of it).
	ddbURL string
}

type proc struct {
	kind, id string
	log      string
	cmd      *exec.Cmd
	start    time.Time
	exited   chan struct{}
	waitErr  error
	e        *env
}

// childEnv is the whole environment of a consumer: nothing from the
// harness's own environment leaks in except PATH, so no real credential or
// endpoint can.
func (e *env) childEnv(extra ...string) []string {
	return append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + e.tmp,
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_REGION=us-east-1",
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_ENDPOINT_URL_KINESIS=" + e.kinURL,
		"AWS_ENDPOINT_URL_DYNAMODB=" + e.ddbURL,
		// CloudWatch is off in every config; a stray call must not leave the machine.
		"AWS_ENDPOINT_URL_CLOUDWATCH=http://127.0.0.1:1",
	}, extra...)
}

// start launches a consumer whose reports go to r.
func (e *env) start(ctx context.Context, sp spec, r listener) (*proc, error) {
	bin, ok := e.bins[sp.kind]
	if !ok {
		return nil, fmt.Errorf("%s is not built: %v", sp.kind, e.buildErr[sp.kind])
	}
	logf, err := os.Create(filepath.Join(e.tmp, sp.id+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	var args []string
	extra := []string{}
	switch sp.kind {
	case kindSauna:
		dir, err := e.saunaConfig(sp)
		if err != nil {
			return nil, err
		}
		args = []string{"run", "--config-dir", dir, "--log-format", "json", "--admin-addr", "127.0.0.1:0"}
		extra = append(extra, probe.ConsumerEnv+"="+sp.id)
		if e.cpuProfiles != "" {
			extra = append(extra, "SAUNA_BENCH_CPUPROFILE="+filepath.Join(e.cpuProfiles, sp.id+".pprof"))
			if secs := os.Getenv("SAUNA_BENCH_CPUPROFILE_SECONDS"); secs != "" {
				extra = append(extra, "SAUNA_BENCH_CPUPROFILE_SECONDS="+secs)
			}
		}
		if sp.ddbURL != "" {
			// Later entries win (os/exec keeps the last of duplicates).
			extra = append(extra, "AWS_ENDPOINT_URL_DYNAMODB="+sp.ddbURL)
		}
	default:
		args = baselineArgs(sp, e.sink.Addr())
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = e.childEnv(extra...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Pdeathsig: if the harness dies without cleaning up, so do the
	// consumers. Setpgid keeps a terminal's ctrl-C from reaching them
	// before the harness has stopped them itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	p := &proc{kind: sp.kind, id: sp.id, log: logf.Name(), cmd: cmd, exited: make(chan struct{}), e: e}
	e.touch()
	e.col.listen(sp.id, r)
	p.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.procs[p] = struct{}{}
	e.mu.Unlock()
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
		e.mu.Lock()
		delete(e.procs, p)
		e.mu.Unlock()
	}()
	return p, nil
}

// baselineArgs is cmd/baseline's command line for sp.
func baselineArgs(sp spec, sinkAddr string) []string {
	k := map[string]string{kindKCL: "kcl", kindHarlow: "harlow", kindRaw: "raw"}[sp.kind]
	args := []string{"-kind", k, "-stream", sp.streams[0], "-app", sp.app, "-id", sp.id, "-sink", sinkAddr, "-delay", sp.delay.String()}
	if sp.steal {
		args = append(args, "-steal")
	}
	if sp.kclShardSync > 0 {
		args = append(args, "-shard-sync", sp.kclShardSync.String())
	}
	return args
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop asks the consumer to shut down and kills it if it takes too long.
func (p *proc) stop() {
	if !p.alive() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(25 * time.Second):
		log.Printf("%s did not exit within 25 s of SIGTERM; killing it (log: %s)", p.id, p.log)
		p.kill()
	}
}

// kill is kill -9.
func (p *proc) kill() {
	if !p.alive() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// exitErr describes an unexpected exit, with the log to read.
func (p *proc) exitErr() error {
	return fmt.Errorf("%s exited early (%v); log: %s", p.id, p.waitErr, p.log)
}

func (e *env) saunaConfig(sp spec) (string, error) {
	dir, err := os.MkdirTemp(e.tmp, sp.id+"-config-")
	if err != nil {
		return "", err
	}
	for i, st := range sp.streams {
		id := sp.app
		if len(sp.streams) > 1 {
			id = fmt.Sprintf("%s-%d", sp.app, i)
		}
		delivery := map[string]any{}
		if sp.idempotency != nil {
			delivery["idempotency"] = map[string]any{"enabled": *sp.idempotency}
		}
		// Only what the scenario decides is set; every other setting (shard
		// sync, idle time, lease timings, in-flight limit) is the schema
		// default, which is what users get.
		cfg := map[string]any{
			"schema": "iglu:io.sauna.observers/KinesisObserverConfig/avro/1-0-0",
			"data": map[string]any{
				"enabled": true, "id": id,
				"parameters": map[string]any{
					"aws": map[string]any{"accessKeyId": "", "secretAccessKey": ""},
					"kinesis": map[string]any{
						"region": "us-east-1", "streamName": st, "maxRecords": 10000,
						"initialPosition": "TRIM_HORIZON", "initialPositionModifiers": nil,
					},
					"delivery":   delivery,
					"cloudwatch": map[string]any{"enabled": false},
				},
			},
		}
		if err := writeJSON(filepath.Join(dir, fmt.Sprintf("observer-%d.json", i)), cfg); err != nil {
			return "", err
		}
	}
	probeCfg := map[string]any{
		"schema": "iglu:io.sauna.bench.responders/ProbeConfig/avro/1-0-0",
		"data": map[string]any{
			"enabled": true, "id": "bench.probe",
			"parameters": map[string]any{"sink": e.sink.Addr(), "delayMillis": sp.delay.Milliseconds()},
		},
	}
	return dir, writeJSON(filepath.Join(dir, "probe.json"), probeCfg)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}

// inChunks calls fn for the chunks [lo, hi) of [0, n), at most chunk long,
// from workers goroutines at once, and returns when all are done; the
// first error stops the others and is returned.
func inChunks(ctx context.Context, n, chunk, workers int, fn func(ctx context.Context, lo, hi int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo := int(next.Add(int64(chunk))) - chunk
				if lo >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, lo, min(lo+chunk, n)); err != nil {
					cancel(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return context.Cause(ctx)
}

// waitFor polls cond every 25 ms until it holds, the deadline passes (false,
// nil), a process exits (error) or ctx ends.
func waitFor(ctx context.Context, deadline time.Time, cond func() bool, procs ...*proc) (bool, error) {
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	for {
		if cond() {
			return true, nil
		}
		for _, p := range procs {
			if !p.alive() {
				return false, p.exitErr()
			}
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
		}
	}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
