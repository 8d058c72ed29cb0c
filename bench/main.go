// Command bench measures sauna end to end: the real binary reads commands
// from kinesalite (leases and outcomes in dynalite) and posts them to a local
// webhook receiver that takes a fixed time per request, and a markdown report
// gives commands per second per shard. See README.md.
//
// The numbers are bound by the emulators and the machine, not by Kinesis or
// DynamoDB: read them as a comparison between settings on one machine.
package main

import (
	"bufio"
	"context"
	"crypto/md5"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

type settings struct {
	shards      int
	commands    int
	keys        int
	delay       time.Duration
	maxInFlight int
	idempotency bool
}

type result struct {
	settings
	putRate      float64 // records per second put by the preload
	firstAfter   time.Duration
	window       time.Duration // first to last delivery
	received     int
	duplicates   int
	connections  int64
	perShard     []shardResult
	total        float64 // commands per second over the window
	exitErr      error
	stopDuration time.Duration
}

type shardResult struct {
	id       string
	commands int
	window   time.Duration
	rate     float64
}

func main() {
	var (
		shards      = flag.Int("shards", 4, "shards of the benchmark stream")
		commands    = flag.Int("commands", 20000, "commands preloaded on the stream per run")
		keys        = flag.Int("keys", 2000, "distinct partition keys")
		delay       = flag.Duration("delay", 100*time.Millisecond, "time the webhook receiver takes per request")
		maxInFlight = flag.Int("max-in-flight", 64, "delivery.maxInFlightPerShard")
		idem        = flag.String("idempotency", "both", "idempotency table: on, off or both (one run each)")
		out         = flag.String("out", "bench/REPORT.md", "markdown report to write")
		bin         = flag.String("sauna", "", "sauna binary (default: built from ./cmd/sauna)")
		timeout     = flag.Duration("timeout", 10*time.Minute, "limit per run")
	)
	flag.Parse()
	log.SetFlags(log.Ltime)

	kinesisURL := firstEnv("SAUNA_TEST_KINESIS_ENDPOINT", "AWS_ENDPOINT_URL_KINESIS")
	dynamoURL := firstEnv("SAUNA_TEST_DYNAMODB_ENDPOINT", "AWS_ENDPOINT_URL_DYNAMODB")
	for name, u := range map[string]string{"Kinesis": kinesisURL, "DynamoDB": dynamoURL} {
		if err := loopback(u); err != nil {
			log.Fatalf("%s endpoint: %v (start the emulators and eval \"$(scripts/emulators/emulators.sh env)\")", name, err)
		}
	}
	var runs []bool
	switch *idem {
	case "on":
		runs = []bool{true}
	case "off":
		runs = []bool{false}
	case "both":
		runs = []bool{false, true}
	default:
		log.Fatalf("-idempotency: want on, off or both, got %q", *idem)
	}

	if *bin == "" {
		dir, err := os.MkdirTemp("", "sauna-bench-")
		if err != nil {
			log.Fatal(err)
		}
		defer os.RemoveAll(dir)
		*bin = filepath.Join(dir, "sauna")
		log.Printf("building %s", *bin)
		if b, err := exec.Command("go", "build", "-o", *bin, "./cmd/sauna").CombinedOutput(); err != nil {
			log.Fatalf("go build: %v\n%s", err, b)
		}
	}

	kin := kinesis.NewFromConfig(aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}, func(o *kinesis.Options) { o.BaseEndpoint = aws.String(kinesisURL) })

	var results []result
	for i, on := range runs {
		s := settings{shards: *shards, commands: *commands, keys: *keys, delay: *delay, maxInFlight: *maxInFlight, idempotency: on}
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		r, err := run(ctx, kin, *bin, kinesisURL, dynamoURL, s, i)
		cancel()
		if err != nil {
			log.Fatalf("run with idempotency %v: %v", on, err)
		}
		results = append(results, r)
	}
	if err := os.WriteFile(*out, []byte(report(results)), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("report written to %s", *out)
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := strings.TrimSpace(os.Getenv(n)); v != "" {
			return v
		}
	}
	return ""
}

// loopback refuses anything but an emulator on this machine: the harness
// creates streams and tables and must never reach real AWS.
func loopback(raw string) error {
	if raw == "" {
		return errors.New("not set")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	ip := net.ParseIP(u.Hostname())
	if u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s is not a loopback address", raw)
	}
	return nil
}

// receiver is the webhook endpoint: it holds each request for delay and
// records when each commandId first arrived.
type receiver struct {
	srv   *http.Server
	url   string
	delay time.Duration
	conns atomic.Int64

	mu    sync.Mutex
	first map[string]time.Time
	dups  int
}

func newReceiver(delay time.Duration) (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{delay: delay, first: map[string]time.Time{}, url: "http://" + ln.Addr().String() + "/hook"}
	r.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			_, _ = io.Copy(io.Discard, req.Body)
			id := req.Header.Get("X-Sauna-Command-Id")
			now := time.Now()
			r.mu.Lock()
			if _, ok := r.first[id]; ok {
				r.dups++
			} else {
				r.first[id] = now
			}
			r.mu.Unlock()
			time.Sleep(r.delay)
			w.WriteHeader(http.StatusNoContent)
		}),
		// Counting connections shows whether the responder reuses them.
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				r.conns.Add(1)
			}
		},
	}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

func (r *receiver) snapshot() (map[string]time.Time, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return cloneTimes(r.first), r.dups
}

func cloneTimes(m map[string]time.Time) map[string]time.Time {
	c := make(map[string]time.Time, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

type command struct {
	id, key string
}

func run(ctx context.Context, kin *kinesis.Client, bin, kinesisURL, dynamoURL string, s settings, n int) (result, error) {
	res := result{settings: s}
	tag := fmt.Sprintf("%d-%d", time.Now().UnixNano(), n)
	stream := "sauna-bench-" + tag
	observer := "sauna-bench-obs-" + tag
	log.Printf("run %d: %d shards, %d commands on %d keys, %s per request, maxInFlight %d, idempotency %v",
		n+1, s.shards, s.commands, s.keys, s.delay, s.maxInFlight, s.idempotency)

	if _, err := kin.CreateStream(ctx, &kinesis.CreateStreamInput{StreamName: aws.String(stream), ShardCount: aws.Int32(int32(s.shards))}); err != nil {
		return res, fmt.Errorf("create stream: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = kin.DeleteStream(dctx, &kinesis.DeleteStreamInput{StreamName: aws.String(stream)})
	}()
	w := kinesis.NewStreamExistsWaiter(kin, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay, o.MaxDelay = 50*time.Millisecond, time.Second })
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(stream)}, time.Minute); err != nil {
		return res, err
	}
	shards, err := kin.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		return res, err
	}

	cmds := make([]command, s.commands)
	for i := range cmds {
		cmds[i] = command{id: fmt.Sprintf("00000000-0000-4000-8000-%012d", n*100_000_000+i), key: fmt.Sprintf("key-%d", i%s.keys)}
	}
	putStart := time.Now()
	if err := preload(ctx, kin, stream, cmds); err != nil {
		return res, err
	}
	res.putRate = float64(len(cmds)) / time.Since(putStart).Seconds()

	rcv, err := newReceiver(s.delay)
	if err != nil {
		return res, err
	}
	defer rcv.srv.Close()
	dir, err := os.MkdirTemp("", "sauna-bench-config-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "observer.json"), []byte(observerConfig(observer, stream, s)), 0o600); err != nil {
		return res, err
	}
	if err := os.WriteFile(filepath.Join(dir, "webhook.json"), []byte(webhookConfig(rcv.url)), 0o600); err != nil {
		return res, err
	}

	logFile, err := os.CreateTemp("", "sauna-bench-*.log")
	if err != nil {
		return res, err
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "run", "--config-dir", dir, "--log-format", "json", "--log-level", "info", "--admin-addr", "")
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(),
		"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_ENDPOINT_URL_KINESIS=" + kinesisURL, "AWS_ENDPOINT_URL_DYNAMODB=" + dynamoURL,
		"AWS_ENDPOINT_URL_CLOUDWATCH=http://127.0.0.1:1",
	}
	cmd.Stderr = logFile
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return res, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		t0 := time.Now()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case res.exitErr = <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			res.exitErr = fmt.Errorf("no exit within 30s of SIGTERM: %v", <-exited)
		}
		res.stopDuration = time.Since(t0)
	}

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		got, _ := rcv.snapshot()
		if len(got) >= len(cmds) {
			break
		}
		select {
		case err := <-exited:
			return res, fmt.Errorf("sauna exited early (%v); log: %s", err, logFile.Name())
		case <-ctx.Done():
			stop()
			return res, fmt.Errorf("%d of %d commands arrived before the time limit; log: %s", len(got), len(cmds), logFile.Name())
		case <-tick.C:
		}
	}
	stop()
	logFile.Close()
	if res.exitErr != nil {
		log.Printf("sauna exited with %v; log: %s", res.exitErr, logFile.Name())
	} else {
		os.Remove(logFile.Name())
	}

	got, dups := rcv.snapshot()
	res.received, res.duplicates, res.connections = len(got), dups, rcv.conns.Load()
	var first, last time.Time
	byShard := map[string][]time.Time{}
	for _, c := range cmds {
		at := got[c.id]
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
		sh := shardOf(shards.Shards, c.key)
		byShard[sh] = append(byShard[sh], at)
	}
	res.firstAfter = first.Sub(started)
	res.window = last.Sub(first) + s.delay
	res.total = float64(len(cmds)) / res.window.Seconds()
	for _, sh := range shards.Shards {
		id := aws.ToString(sh.ShardId)
		ts := byShard[id]
		if len(ts) == 0 {
			continue
		}
		lo, hi := slices.MinFunc(ts, time.Time.Compare), slices.MaxFunc(ts, time.Time.Compare)
		win := hi.Sub(lo) + s.delay
		res.perShard = append(res.perShard, shardResult{id: id, commands: len(ts), window: win, rate: float64(len(ts)) / win.Seconds()})
	}
	log.Printf("run %d: %.0f commands/s over %s (%d duplicates)", n+1, res.total, res.window.Round(time.Millisecond), res.duplicates)
	return res, nil
}

// preload puts the commands with PutRecords, 500 at a time.
func preload(ctx context.Context, kin *kinesis.Client, stream string, cmds []command) error {
	for start := 0; start < len(cmds); start += 500 {
		batch := cmds[start:min(start+500, len(cmds))]
		entries := make([]types.PutRecordsRequestEntry, len(batch))
		for i, c := range batch {
			entries[i] = types.PutRecordsRequestEntry{PartitionKey: aws.String(c.key), Data: []byte(record(c))}
		}
		out, err := kin.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
		if err != nil {
			return fmt.Errorf("preload: %w", err)
		}
		if n := aws.ToInt32(out.FailedRecordCount); n > 0 {
			return fmt.Errorf("preload: %d records failed", n)
		}
	}
	return nil
}

func record(c command) string {
	return fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0","data":{`+
		`"envelope":{"schema":"iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0","data":{`+
		`"commandId":%q,"whenCreated":%q,"execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}},`+
		`"command":{"schema":"iglu:io.sauna.commands/webhook/jsonschema/1-0-0","data":{"body":{"key":%q}}}}}`,
		c.id, time.Now().UTC().Format(time.RFC3339Nano), c.key)
}

// shardOf finds the shard a partition key hashes to (MD5 as a 128-bit
// big-endian number, as Kinesis does).
func shardOf(shards []types.Shard, key string) string {
	sum := md5.Sum([]byte(key))
	h := new(big.Int).SetBytes(sum[:])
	for _, s := range shards {
		lo, _ := new(big.Int).SetString(aws.ToString(s.HashKeyRange.StartingHashKey), 10)
		hi, _ := new(big.Int).SetString(aws.ToString(s.HashKeyRange.EndingHashKey), 10)
		if h.Cmp(lo) >= 0 && h.Cmp(hi) <= 0 {
			return aws.ToString(s.ShardId)
		}
	}
	return "?"
}

func observerConfig(id, stream string, s settings) string {
	return fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.observers/AmazonKinesisConfig/avro/1-0-2",
 "data":{"enabled":true,"id":%q,"parameters":{
   "aws":{"accessKeyId":"","secretAccessKey":""},
   "kinesis":{"region":"us-east-1","streamName":%q,"maxRecords":1000,
              "initialPosition":"TRIM_HORIZON","initialPositionModifiers":null,
              "shardSyncIntervalMillis":300,"idleTimeBetweenReadsMillis":250,
              "failoverTimeMillis":10000,"leaseRefreshMillis":2500,"parentShardPollMillis":500},
   "delivery":{"maxInFlightPerShard":%d,"retryBudgetMillis":300000,"deadLetterStream":null,
               "idempotency":{"enabled":%v,"tableName":null,"retentionDays":1,"claimTimeoutMillis":120000}},
   "cloudwatch":{"enabled":false,"namespace":null,"flushIntervalMillis":10000}}}}`, id, stream, s.maxInFlight, s.idempotency)
}

func webhookConfig(url string) string {
	return fmt.Sprintf(`{"schema":"iglu:io.sauna.responders/WebhookConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"bench.webhook","parameters":{"url":%q,"headers":{},"signingSecret":null,
   "timeoutMillis":10000,"rateLimitPerSecond":null,"rateLimitBurst":5}}}`, url)
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func report(results []result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# sauna end-to-end benchmark\n\n")
	fmt.Fprintf(&b, "Generated %s by `go run ./bench` on %s/%s, %d CPUs (%s), %s.\n\n",
		time.Now().UTC().Format(time.RFC3339), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel(), runtime.Version())
	fmt.Fprintf(&b, "**Emulator-bound.** The binary reads from kinesalite and keeps leases, checkpoints and (when on) "+
		"idempotency claims in dynalite, all on this machine and sharing its CPUs with the receiver and the daemon. "+
		"Real Kinesis and DynamoDB have other limits (5 GetRecords calls and 2 MB/s per shard; DynamoDB latency of "+
		"a few ms per claim). Compare settings with each other on one machine; do not read these as production figures.\n\n")
	fmt.Fprintf(&b, "Each run preloads the commands with PutRecords, then starts `sauna run` and measures from the first "+
		"delivery to the last (plus one receiver delay). The receiver holds every request for the stated delay. "+
		"The ceiling per shard is maxInFlightPerShard / delay.\n\n")
	fmt.Fprintf(&b, "| idempotency | shards | commands | keys | delay | maxInFlight | ceiling/shard | cmds/s total | cmds/s per shard (min / mean / max) | first delivery after start | duplicates | receiver connections | preload put rate |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		var lo, hi, sum float64
		for i, s := range r.perShard {
			if i == 0 || s.rate < lo {
				lo = s.rate
			}
			hi = max(hi, s.rate)
			sum += s.rate
		}
		mean := 0.0
		if len(r.perShard) > 0 {
			mean = sum / float64(len(r.perShard))
		}
		onOff := "off"
		if r.idempotency {
			onOff = "on"
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %d | %.0f | %.0f | %.0f / %.0f / %.0f | %s | %d | %d | %.0f rec/s |\n",
			onOff, r.shards, r.commands, r.keys, r.delay, r.maxInFlight, float64(r.maxInFlight)/r.delay.Seconds(),
			r.total, lo, mean, hi, r.firstAfter.Round(10*time.Millisecond), r.duplicates, r.connections, r.putRate)
	}
	for _, r := range results {
		fmt.Fprintf(&b, "\nPer shard, idempotency %v:\n\n| shard | commands | window | cmds/s |\n|---|---|---|---|\n", r.idempotency)
		for _, s := range r.perShard {
			fmt.Fprintf(&b, "| %s | %d | %s | %.0f |\n", s.id, s.commands, s.window.Round(time.Millisecond), s.rate)
		}
		if r.exitErr != nil {
			fmt.Fprintf(&b, "\nsauna exited with %v after SIGTERM.\n", r.exitErr)
		}
	}
	return b.String()
}
