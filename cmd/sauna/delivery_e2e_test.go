package main

// Process-level delivery guarantees: real `sauna run` processes killed,
// frozen and stopped while webhook commands flow, judged by what a local
// receiver saw, by the lease table and by the command outcome table.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kintypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sauna-io/sauna/cmd/sauna/internal/shield"
	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/kinesis/leases"
)

// dgTuning is what these tests vary in a 1-0-2 observer config; zero
// fields take the values noted.
type dgTuning struct {
	maxInFlight  int           // delivery.maxInFlightPerShard (64, the default)
	claimTimeout time.Duration // idempotency.claimTimeoutMillis (5 s: a killed worker's claims must lapse within the test)
	shardSync    time.Duration // kinesis.shardSyncIntervalMillis (300 ms)
	maxRecords   int           // kinesis.maxRecords (100)
	lease        time.Duration // kinesis.failoverTimeMillis (3 s: a killed worker's leases must lapse within the test)
}

// dgObserverConfig is a 1-0-2 AmazonKinesisConfig with fast KCL timings
// (lease 3 s renewed every second, idle polls every 250 ms) and no
// CloudWatch sink: nothing may leave loopback.
func dgObserverConfig(id, stream string, tu dgTuning) string {
	if tu.maxInFlight == 0 {
		tu.maxInFlight = 64
	}
	if tu.claimTimeout == 0 {
		tu.claimTimeout = 5 * time.Second
	}
	if tu.shardSync == 0 {
		tu.shardSync = 300 * time.Millisecond
	}
	if tu.maxRecords == 0 {
		tu.maxRecords = 100
	}
	if tu.lease == 0 {
		tu.lease = 3 * time.Second
	}
	return fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.observers/AmazonKinesisConfig/avro/1-0-2",
 "data":{"enabled":true,"id":%q,"parameters":{
   "aws":{"accessKeyId":"","secretAccessKey":""},
   "kinesis":{"region":"us-east-1","streamName":%q,"maxRecords":%d,
              "initialPosition":"TRIM_HORIZON","initialPositionModifiers":null,
              "shardSyncIntervalMillis":%d,"idleTimeBetweenReadsMillis":250,
              "failoverTimeMillis":%d,"leaseRefreshMillis":1000,"parentShardPollMillis":500},
   "delivery":{"maxInFlightPerShard":%d,"retryBudgetMillis":300000,"deadLetterStream":null,
               "idempotency":{"enabled":true,"tableName":null,"retentionDays":1,"claimTimeoutMillis":%d}},
   "cloudwatch":{"enabled":false,"namespace":null,"flushIntervalMillis":10000}}}}`,
		id, stream, tu.maxRecords, tu.shardSync.Milliseconds(), tu.lease.Milliseconds(), tu.maxInFlight, tu.claimTimeout.Milliseconds())
}

// dgWebhookConfig points the generic webhook responder at url. The
// attempt timeout is long so that a receiver that hangs stays hung for the
// whole shutdown instead of turning into a retry.
func dgWebhookConfig(url string, timeout time.Duration) string {
	return fmt.Sprintf(`{"schema":"iglu:io.sauna.responders/WebhookConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"com.acme.webhook","parameters":{"url":%q,"headers":{},"signingSecret":null,
   "timeoutMillis":%d,"rateLimitPerSecond":null,"rateLimitBurst":5}}}`, url, timeout.Milliseconds())
}

// dgCommand is one webhook command as a Kinesis record, without a TTL so
// that a slow run never expires its own commands.
func dgCommand(commandID string, n int) []byte {
	return []byte(commandRecord(commandID, time.Now(), "null",
		fmt.Sprintf(`{"schema":"iglu:io.sauna.commands/webhook/jsonschema/1-0-0","data":{"body":{"n":%d}}}`, n)))
}

// dgIDs returns n command ids (UUIDs) unique to this run.
func dgIDs(n int) []string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	run := hex.EncodeToString(b[:])
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-0000-4000-8000-%012d", run, i)
	}
	return ids
}

// dgHit is one request at the command sink.
type dgHit struct {
	at   time.Time
	path string // names the sauna process that sent it (one webhook path each)
}

// dgSink is the local receiver of webhook commands: it records every
// request by X-Sauna-Command-Id and can hang chosen commands.
type dgSink struct {
	*httptest.Server
	mu      sync.Mutex
	hits    map[string][]dgHit
	hang    func(id string) bool
	release chan struct{}
}

func newDGSink(t testing.TB) *dgSink {
	s := &dgSink{hits: map[string][]dgHit{}, release: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Arrival is when the headers are in: a sender frozen half way
		// through its body has still sent the command.
		at := time.Now()
		_, _ = io.Copy(io.Discard, r.Body)
		id := r.Header.Get("X-Sauna-Command-Id")
		s.mu.Lock()
		s.hits[id] = append(s.hits[id], dgHit{at: at, path: r.URL.Path})
		hang := s.hang != nil && s.hang(id)
		s.mu.Unlock()
		if hang {
			// Until the caller gives up (a cancelled request, a killed
			// process) or the test ends: Close waits for every handler.
			select {
			case <-r.Context().Done():
				return
			case <-s.release:
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(func() {
		close(s.release)
		s.Close()
	})
	return s
}

func (s *dgSink) setHang(f func(id string) bool) {
	s.mu.Lock()
	s.hang = f
	s.mu.Unlock()
}

// distinct is how many different commands arrived.
func (s *dgSink) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.hits)
}

func (s *dgSink) count(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.hits[id])
}

func (s *dgSink) snapshot() map[string][]dgHit {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][]dgHit, len(s.hits))
	for id, h := range s.hits {
		out[id] = slices.Clone(h)
	}
	return out
}

// waitAll waits until every id has arrived at least once. timeout bounds a
// stall, not the whole wait: it ends the wait only when no new command has
// arrived for that long.
func (s *dgSink) waitAll(t testing.TB, ids []string, timeout time.Duration) {
	t.Helper()
	missing := 0
	waitProgress(t, timeout, s.distinct, func() bool {
		missing = 0
		s.mu.Lock()
		for _, id := range ids {
			if len(s.hits[id]) == 0 {
				missing++
			}
		}
		s.mu.Unlock()
		return missing == 0
	}, func() string {
		return fmt.Sprintf("%d of %d commands still missing at the receiver", missing, len(ids))
	})
}

// dgProxy stands between sauna processes and an emulator, a
// shield.Forwarder inside the test binary (shieldproxy is one outside it).
// It can also hold back the answer to every command claim and
// check (a PutItem or a BatchGetItem on an outcome table) after it was
// served, and hold the answer to one check until the test lets it go
// (holdNextCheck).
type dgProxy struct {
	*httptest.Server
	mu sync.Mutex
	// held, when set, takes the body of the next command check, whose
	// answer then waits for release to be closed.
	held    chan []byte
	release chan struct{}
}

// holdNextCheck holds the answer to the next command check (a BatchGetItem
// on an outcome table): its body arrives on the channel returned once the
// check was served, and its answer goes out once release is called.
func (p *dgProxy) holdNextCheck() (<-chan []byte, func()) {
	held, release := make(chan []byte, 1), make(chan struct{})
	p.mu.Lock()
	p.held, p.release = held, release
	p.mu.Unlock()
	var once sync.Once
	return held, func() { once.Do(func() { close(release) }) }
}

func newDGProxy(t testing.TB, target string, claimDelay time.Duration) *dgProxy {
	t.Helper()
	p := &dgProxy{}
	f := &shield.Forwarder{Target: target, Client: &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}}}
	f.Answered = func(op string, body []byte) {
		if claimDelay > 0 && (op == "PutItem" || op == "BatchGetItem") && bytes.Contains(body, []byte(`-commands"`)) {
			time.Sleep(claimDelay)
		}
		if op == "BatchGetItem" && bytes.Contains(body, []byte(`-commands"`)) {
			p.mu.Lock()
			held, release := p.held, p.release
			p.held = nil
			p.mu.Unlock()
			if held != nil {
				held <- body
				<-release
			}
		}
	}
	p.Server = httptest.NewServer(f)
	t.Cleanup(p.Close)
	return p
}

// dgShielded routes a sauna process's Kinesis and DynamoDB calls through
// a shieldproxy process each (see cmd/sauna/internal/shieldproxy: what
// dgProxy does, outside the test binary), and returns the DynamoDB one.
func dgShielded(t testing.TB, env emulator.Env) (emulator.Env, *dgShield) {
	t.Helper()
	ddb := startShield(t, env.DynamoDBURL)
	env.KinesisURL = startShield(t, env.KinesisURL).URL
	env.DynamoDBURL = ddb.URL
	return env, ddb
}

// dgShield is a running shieldproxy.
type dgShield struct {
	URL string
}

var shieldBin builtBin

func startShield(t testing.TB, target string) *dgShield {
	t.Helper()
	cmd := exec.Command(shieldBin.path(t, "shieldproxy", "./internal/shieldproxy"), "-target", target)
	cmd.Env = []string{}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// It serves until its stdin closes: at the end of the test, or when
	// the test binary dies.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	// Registered before the processes that use it start, so it runs after
	// they stopped: every exchange they began is finished.
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-done:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("shieldproxy for %s did not exit within a minute of its stdin closing", target)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
	}()
	if err != nil {
		t.Fatalf("shieldproxy for %s: %v: %s", target, err, stderr.String())
	}
	return &dgShield{URL: strings.TrimSpace(line)}
}

// snapshot is the number of requests the proxy has seen, by operation.
func (s *dgShield) snapshot(t testing.TB) map[string]int {
	t.Helper()
	code, body := httpDo(t, "GET", s.URL+"/shieldproxy/ops")
	var ops map[string]int
	if err := json.Unmarshal([]byte(body), &ops); code != http.StatusOK || err != nil {
		t.Fatalf("shieldproxy ops: %d %v %s", code, err, body)
	}
	return ops
}

// dgLanding is where PutRecords placed a record.
type dgLanding struct {
	shard, seq string
}

// dgPut writes the records with PutRecords, 500 per call, and returns
// where each landed. It returns errors rather than failing the test, so
// that a producer goroutine can use it.
func dgPut(ctx context.Context, kin *kinesis.Client, stream string, keys []string, data [][]byte) ([]dgLanding, error) {
	out := make([]dgLanding, 0, len(data))
	for start := 0; start < len(data); start += 500 {
		end := min(start+500, len(data))
		entries := make([]kintypes.PutRecordsRequestEntry, 0, end-start)
		for i := start; i < end; i++ {
			entries = append(entries, kintypes.PutRecordsRequestEntry{PartitionKey: aws.String(keys[i]), Data: data[i]})
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := kin.PutRecords(cctx, &kinesis.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
		cancel()
		if err != nil {
			return out, fmt.Errorf("put records %d-%d: %w", start, end-1, err)
		}
		if n := aws.ToInt32(res.FailedRecordCount); n > 0 || len(res.Records) != len(entries) {
			return out, fmt.Errorf("put records %d-%d: %d failed, %d results", start, end-1, n, len(res.Records))
		}
		for _, r := range res.Records {
			out = append(out, dgLanding{shard: aws.ToString(r.ShardId), seq: aws.ToString(r.SequenceNumber)})
		}
	}
	return out, nil
}

var dgClients sync.Map // DynamoDB endpoint -> *dynamodb.Client

// dgDB returns one DynamoDB client per endpoint, so that tight polling
// reuses its connections.
func dgDB(t testing.TB, env emulator.Env) *dynamodb.Client {
	t.Helper()
	if c, ok := dgClients.Load(env.DynamoDBURL); ok {
		return c.(*dynamodb.Client)
	}
	c, _ := dgClients.LoadOrStore(env.DynamoDBURL, env.DynamoDB(t))
	return c.(*dynamodb.Client)
}

// dgLease is a shard's lease as stored.
type dgLease struct {
	owner, checkpoint string
}

func dgLeases(ctx context.Context, db *dynamodb.Client, table string) (map[string]dgLease, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := db.Scan(cctx, &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, err
	}
	rows := map[string]dgLease{}
	for _, item := range out.Items {
		shard := dgString(item, "ShardID")
		if !leases.IsLeaseKey(shard) {
			continue
		}
		rows[shard] = dgLease{owner: dgString(item, "AssignedTo"), checkpoint: dgString(item, "Checkpoint")}
	}
	return rows, nil
}

func dgMustLeases(t testing.TB, env emulator.Env, table string) map[string]dgLease {
	t.Helper()
	rows, err := dgLeases(context.Background(), dgDB(t, env), table)
	if err != nil {
		var nf *ddbtypes.ResourceNotFoundException
		if errors.As(err, &nf) {
			return map[string]dgLease{}
		}
		t.Fatalf("lease table %s: %v", table, err)
	}
	return rows
}

func dgString(item map[string]ddbtypes.AttributeValue, name string) string {
	if v, ok := item[name].(*ddbtypes.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

// dgHeldByAny lists the shards whose lease names one of workers.
func dgHeldByAny(rows map[string]dgLease, workers map[string]bool) []string {
	var out []string
	for shard, r := range rows {
		if workers[r.owner] {
			out = append(out, shard)
		}
	}
	sort.Strings(out)
	return out
}

// dgHeldBy lists the shards whose lease names worker.
func dgHeldBy(rows map[string]dgLease, worker string) []string {
	return dgHeldByAny(rows, map[string]bool{worker: true})
}

// dgOutcome is a command's item in the outcome table.
type dgOutcome struct {
	status, verdict, owner string
	attempts               int
	read                   time.Time // when the page holding the item was in
}

// dgOutcomes reads the whole outcome table (consistent, every page).
func dgOutcomes(t testing.TB, env emulator.Env, table string) map[string]dgOutcome {
	t.Helper()
	db := dgDB(t, env)
	rows := map[string]dgOutcome{}
	var start map[string]ddbtypes.AttributeValue
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		out, err := db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true), ExclusiveStartKey: start})
		cancel()
		if err != nil {
			t.Fatalf("outcome table %s: %v", table, err)
		}
		read := time.Now()
		for _, item := range out.Items {
			rows[dgString(item, "commandId")] = dgParseOutcome(item, read)
		}
		if len(out.LastEvaluatedKey) == 0 {
			return rows
		}
		start = out.LastEvaluatedKey
	}
}

func dgParseOutcome(item map[string]ddbtypes.AttributeValue, read time.Time) dgOutcome {
	r := dgOutcome{status: dgString(item, "status"), verdict: dgString(item, "verdict"), owner: dgString(item, "owner"), read: read}
	if v, ok := item["attempts"].(*ddbtypes.AttributeValueMemberN); ok {
		r.attempts, _ = strconv.Atoi(v.Value)
	}
	return r
}

// dgWaitOutcomesDone waits until every id has a done item, and returns the
// table.
func dgWaitOutcomesDone(t testing.TB, env emulator.Env, table string, ids []string, timeout time.Duration) map[string]dgOutcome {
	t.Helper()
	var rows map[string]dgOutcome
	var notDone []string
	waitFor(t, timeout, func() bool {
		rows = dgOutcomes(t, env, table)
		notDone = notDone[:0]
		for _, id := range ids {
			if rows[id].status != "done" {
				notDone = append(notDone, id)
			}
		}
		return len(notDone) == 0
	}, func() string {
		ex := notDone[:min(len(notDone), 5)]
		var desc []string
		for _, id := range ex {
			desc = append(desc, fmt.Sprintf("%s=%+v", id, rows[id]))
		}
		return fmt.Sprintf("%d commands without a done outcome, e.g. %s", len(notDone), strings.Join(desc, ", "))
	})
	return rows
}

// dgSeqLess compares Kinesis sequence numbers, decimal strings of any length.
func dgSeqLess(a, b string) bool {
	x, okA := new(big.Int).SetString(a, 10)
	y, okB := new(big.Int).SetString(b, 10)
	if !okA || !okB {
		return a < b
	}
	return x.Cmp(y) < 0
}

// dgLastSeqs is the highest sequence number put to each shard.
func dgLastSeqs(l []dgLanding) map[string]string {
	last := map[string]string{}
	for _, r := range l {
		if cur, ok := last[r.shard]; !ok || dgSeqLess(cur, r.seq) {
			last[r.shard] = r.seq
		}
	}
	return last
}

// dgWaitCheckpoints waits until every shard's checkpoint is want's.
func dgWaitCheckpoints(t testing.TB, env emulator.Env, table string, want map[string]string, timeout time.Duration) {
	t.Helper()
	var rows map[string]dgLease
	waitFor(t, timeout, func() bool {
		rows = dgMustLeases(t, env, table)
		for shard, seq := range want {
			if rows[shard].checkpoint != seq {
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprintf("checkpoints %v, want %v", rows, want) })
}

// dgWorkerID is the KCL worker id a process logged when its observer started.
func dgWorkerID(t testing.TB, p *process) string {
	t.Helper()
	rec := p.waitLogs(t, 1, giveUp, msgIs("observer started"))
	return fmt.Sprint(rec[0]["worker"])
}

// dgKill9 ends p with SIGKILL and waits until it is reaped.
func dgKill9(t testing.TB, p *process) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill -9: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("a killed sauna process was not reaped within 10s")
	}
}

// dgFreeze stops p with SIGSTOP and returns once the kernel reports it
// stopped: from then on it sends nothing, and nothing it does is later than
// the returned time.
func dgFreeze(t testing.TB, p *process) time.Time {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stat := fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid)
	waitFor(t, giveUp, func() bool {
		b, err := os.ReadFile(stat)
		// The state follows the command name, which is in parentheses.
		i := bytes.LastIndexByte(b, ')')
		return err == nil && i >= 0 && i+2 < len(b) && b[i+2] == 'T'
	}, func() string { return "the kernel to report the process stopped" })
	return time.Now()
}

// dgWorkerIDs lists every KCL worker id a process has logged: an observer
// restarted in-process gets a new one.
func dgWorkerIDs(p *process) map[string]bool {
	ids := map[string]bool{}
	for _, m := range p.logsMatching(msgIs("observer started")) {
		ids[fmt.Sprint(m["worker"])] = true
	}
	return ids
}

// dgWorker is one `sauna run` process with its own config directory, whose
// webhook URL path names it at the receiver.
type dgWorker struct {
	label string
	p     *process
	id    string // KCL worker id
}

// dgStartProcess starts `sauna run` on a fresh config directory whose
// webhook URL path is label, and keeps its whole log as label.log in the
// test's artifact directory (go test -artifacts keeps it).
func dgStartProcess(t testing.TB, env emulator.Env, sinkURL, label, observerJSON string, extraArgs ...string) *process {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "observer.json", observerJSON)
	writeFile(t, dir, "webhook.json", dgWebhookConfig(sinkURL+"/"+label, 60*time.Second))
	var p *process
	// Registered before startSauna's own cleanup, so it runs after the
	// process has stopped and the log is complete.
	t.Cleanup(func() {
		if p != nil {
			_ = os.WriteFile(filepath.Join(t.ArtifactDir(), label+".log"), []byte(p.output()), 0o644)
		}
	})
	p = startSauna(t, env, dir, extraArgs...)
	return p
}

func dgStartWorker(t testing.TB, env emulator.Env, sinkURL, label, observerJSON string, extraArgs ...string) *dgWorker {
	t.Helper()
	w := &dgWorker{label: label, p: dgStartProcess(t, env, sinkURL, label, observerJSON, extraArgs...)}
	w.id = dgWorkerID(t, w.p)
	return w
}

// dgCheckKeyOrder asserts that, per partition key, the commands first
// reached the receiver in sequence-number order: a command of a key starts
// only after the previous one finished, whichever worker ran it.
func dgCheckKeyOrder(t *testing.T, ids, keys []string, land []dgLanding, hits map[string][]dgHit) {
	t.Helper()
	type item struct {
		id, seq string
		first   time.Time
	}
	byKey := map[string][]item{}
	for i, id := range ids {
		if len(hits[id]) == 0 {
			continue
		}
		byKey[keys[i]] = append(byKey[keys[i]], item{id: id, seq: land[i].seq, first: hits[id][0].at})
	}
	bad := 0
	for key, items := range byKey {
		sort.Slice(items, func(a, b int) bool { return dgSeqLess(items[a].seq, items[b].seq) })
		for i := 1; i < len(items); i++ {
			if items[i].first.Before(items[i-1].first) {
				bad++
				if bad <= 5 {
					t.Errorf("key %s: command %s (seq %s) first arrived at %s, before %s (seq %s) at %s",
						key, items[i].id, items[i].seq, items[i].first.Format(time.StampMicro),
						items[i-1].id, items[i-1].seq, items[i-1].first.Format(time.StampMicro))
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d per-key order inversions", bad)
	}
}

// dgCheckExplained asserts that no command reached the receiver more often
// than the outcome table counted attempts (claims and takeovers), plus one
// for each request a worker sent before it was killed or frozen: such a
// command was in flight when its worker stopped, and one run without a
// claim leaves no trace until its outcome is recorded, so the next owner of
// its shard runs it again. Whoever recorded the outcome last counts only
// its own attempts: a frozen worker that wakes writes the outcome of what
// it sent before the freeze over the next owner's. ended holds those workers by
// label, with the time before which the requests that arrived from them
// were sent before they stopped: for a killed worker any time (it sends
// nothing after), for a frozen one when it resumed (a loaded receiver may
// take in a request well after it was sent). A duplicate neither explains
// is an unfenced execution. It returns the number of duplicates
// (deliveries beyond the first).
func dgCheckExplained(t *testing.T, ids []string, hits map[string][]dgHit, outcomes map[string]dgOutcome,
	ended map[string]time.Time) (dups int, dupIDs []string) {
	t.Helper()
	bad := 0
	for _, id := range ids {
		n := len(hits[id])
		if n > 1 {
			dups += n - 1
			dupIDs = append(dupIDs, id)
		}
		o := outcomes[id]
		cut := 0
		for _, h := range hits[id] {
			label := strings.TrimPrefix(h.path, "/")
			if end, ok := ended[label]; ok && h.at.Before(end) {
				cut++
			}
		}
		if n > o.attempts+cut {
			bad++
			if bad <= 5 {
				var from []string
				for _, h := range hits[id] {
					from = append(from, h.path+"@"+h.at.Format(time.StampMicro))
				}
				t.Errorf("command %s reached the receiver %d times (%s) but the outcome table counts %d attempts (%+v), and %d were cut short by a kill or freeze",
					id, n, strings.Join(from, ", "), o.attempts, o, cut)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d commands executed more often than their claims and the kills allow", bad)
	}
	return dups, dupIDs
}

// dgDescribeDups lists, for up to max duplicated commands, who delivered
// them and when, relative to t0.
func dgDescribeDups(dupIDs []string, hits map[string][]dgHit, t0 time.Time, max int) string {
	var b strings.Builder
	for _, id := range dupIDs[:min(len(dupIDs), max)] {
		fmt.Fprintf(&b, "\n  %s:", id)
		for _, h := range hits[id] {
			fmt.Fprintf(&b, " %s@%.3fs", strings.TrimPrefix(h.path, "/"), h.at.Sub(t0).Seconds())
		}
	}
	return b.String()
}

var dgOutcomeDone = regexp.MustCompile(`(?m)^\s*status:\s+done$`)

// dgCheckOutcomeCLI runs `sauna outcome` for ids and asserts each is done.
func dgCheckOutcomeCLI(t *testing.T, env emulator.Env, table string, ids ...string) {
	t.Helper()
	for _, id := range ids {
		code, stdout, stderr := runCLI(t, env, "", "outcome", "--table", table, id)
		if code != 0 || !strings.Contains(stdout, id) || !dgOutcomeDone.MatchString(stdout) {
			t.Errorf("sauna outcome %s: exit %d\nstdout %s\nstderr %s", id, code, stdout, stderr)
		}
	}
}

// TestDeliveryCrash: two workers share a 4-shard stream while 20,000
// webhook commands are put; a worker holding leases is killed with SIGKILL
// three times at random moments and restarted. Every command reaches the
// receiver, each ends done in the outcome table, per-key order holds, the
// only duplicates are commands in flight at a kill, and none of the last
// commands a victim sent and recorded done reaches the receiver again.
func TestDeliveryCrash(t *testing.T) {
	// The longest test starts with the parallel phase, without a slot
	// (see TestMain).
	t.Parallel()
	env := emulator.Require(t)
	started := time.Now()
	n, kills := 20000, 3
	if os.Getenv("SAUNA_SOAK") == "1" {
		n, kills = 100000, 10
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SAUNA_DELIVERY_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("SAUNA_DELIVERY_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (set SAUNA_DELIVERY_SEED=%d to repeat the kill moments)", seed, seed)
	rng := mrand.New(mrand.NewPCG(seed, 0))

	// 16 in flight per shard rather than the default 64: with 64, the two
	// workers keep about 500 claims queued at dynalite (single-threaded),
	// whose answers then take seconds, long enough to cost live workers their
	// 3 s leases.
	const shards, maxInFlight = 4, 16
	stream := emulator.UniqueName(t, "crash")
	id := "com.acme." + emulator.UniqueName(t, "obs")
	table := id + "-commands"
	env.CreateStream(t, stream, shards)
	sink := newDGSink(t)
	obs := dgObserverConfig(id, stream, dgTuning{maxInFlight: maxInFlight})
	rec := dgRecordLeases(t, env, id)
	shielded, _ := dgShielded(t, env)
	// Info level: 20,000 debug lines per worker would only slow the pipe.
	start := func(label string) *dgWorker {
		return dgStartWorker(t, shielded, sink.URL, label, obs, "--log-level", "info")
	}

	ids := dgIDs(n)
	keys := make([]string, n)
	data := make([][]byte, n)
	for i := range ids {
		keys[i] = fmt.Sprintf("key-%d", i%1000)
		data[i] = dgCommand(ids[i], i)
	}

	live := []*dgWorker{start("a1"), start("b1")}
	all := slices.Clone(live)
	kin := env.Kinesis(t)
	land := make([]dgLanding, n)
	var prodErr atomic.Pointer[error]
	produced := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		defer close(produced)
		err := func() error {
			for from := 0; from < n; from += 500 {
				to := min(from+500, n)
				l, err := dgPut(ctx, kin, stream, keys[from:to], data[from:to])
				if err != nil {
					return err
				}
				copy(land[from:], l)
				// Spread the load over the kills instead of preloading it.
				time.Sleep(100 * time.Millisecond)
			}
			return nil
		}()
		if err != nil {
			prodErr.Store(&err)
		}
	}()
	producerFailed := func() bool {
		if err := prodErr.Load(); err != nil {
			t.Fatalf("producer: %v", *err)
		}
		return false
	}

	// Kill moments as progress marks (commands seen by the receiver), so
	// every kill falls while commands are being executed.
	marks := make([]int, kills)
	for i := range marks {
		marks[i] = n/20 + rng.IntN(n*17/20)
	}
	slices.Sort(marks)
	bound := 0
	var atKill []map[string]dgOutcome // the victims' last commands, read after each kill
	ended := map[string]time.Time{}   // the victims, by label (see dgCheckExplained)
	generation := map[string]int{"a": 1, "b": 1}
	for k, mark := range marks {
		waitProgress(t, giveUp, sink.distinct, func() bool { return producerFailed() || sink.distinct() >= mark },
			func() string {
				return fmt.Sprintf("%d commands at the receiver before kill %d (have %d)", mark, k+1, sink.distinct())
			})
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		// The victim is the worker holding the most leases, so that no kill
		// lands on a worker with nothing in flight.
		var rows map[string]dgLease
		// A worker restarted in-process has a new id: a process's workers
		// are all the ids it logged.
		waitFor(t, giveUp, func() bool {
			rows = dgMustLeases(t, env, id)
			return len(dgHeldByAny(rows, dgWorkerIDs(live[0].p)))+len(dgHeldByAny(rows, dgWorkerIDs(live[1].p))) > 0
		}, func() string { return fmt.Sprintf("a live worker holding a lease: %v", rows) })
		v := 0
		if len(dgHeldByAny(rows, dgWorkerIDs(live[1].p))) > len(dgHeldByAny(rows, dgWorkerIDs(live[0].p))) {
			v = 1
		}
		victim := live[v]
		before := dgHeldByAny(rows, dgWorkerIDs(victim.p))
		seen := sink.distinct()
		dgKill9(t, victim.p)
		ended[victim.label] = time.Now().Add(24 * time.Hour)
		// After SIGKILL the victim's rows cannot change: they show every
		// lease it held when it died, including one taken since the read.
		held := dgHeldByAny(dgMustLeases(t, env, id), dgWorkerIDs(victim.p))
		for _, s := range before {
			if !slices.Contains(held, s) {
				held = append(held, s)
			}
		}
		bound += len(held) * maxInFlight
		// The commands the victim sent last are the ones read again after
		// its checkpoints: their items, read before the restart, while
		// redelivery has not begun (its leases have yet to expire).
		reading := time.Now()
		atKill = append(atKill, dgOutcomesOf(t, env, table, dgSentSince(sink.snapshot(), "/"+victim.label, reading.Add(-5*time.Second))))
		t.Logf("kill %d: the victim's last %d commands read in %s", k+1, len(atKill[k]), time.Since(reading).Round(time.Millisecond))
		t.Logf("kill %d at %s: worker %s (%s) with %d/%d commands at the receiver, holding %v",
			k+1, time.Since(started).Round(time.Millisecond), victim.label, victim.id, seen, n, held)
		letter := victim.label[:1]
		generation[letter]++
		live[v] = start(fmt.Sprintf("%s%d", letter, generation[letter]))
		all = append(all, live[v])
	}

	<-produced
	producerFailed()
	sink.waitAll(t, ids, giveUp)
	t.Logf("all %d commands reached the receiver after %s", n, time.Since(started).Round(time.Millisecond))
	outcomes := dgWaitOutcomesDone(t, env, table, ids, giveUp)
	dgWaitCheckpoints(t, env, id, dgLastSeqs(land), giveUp)

	rec.halt()
	dgCheckMonotonic(t, rec.all())
	hits := sink.snapshot()
	if len(hits) != n {
		t.Errorf("the receiver saw %d distinct command ids, want %d", len(hits), n)
	}
	for _, id := range ids {
		if o := outcomes[id]; o.verdict != "executed" {
			t.Errorf("command %s: outcome %+v, want done/executed", id, o)
		}
	}
	if len(outcomes) != n {
		t.Errorf("the outcome table has %d items, want %d", len(outcomes), n)
	}
	// Killed workers log nothing after death, so every loss logged is one a
	// running worker suffered (its renewal came too late).
	var lost []string
	for _, w := range all {
		for _, m := range w.p.logsMatching(msgIs("lease lost")) {
			lost = append(lost, fmt.Sprintf("%s:%v@%.3fs", w.label, m["shard"], logAt(t, m).Sub(started).Seconds()))
		}
	}
	t.Logf("leases lost by running workers: %d %v", len(lost), lost)
	// A lease lost by a running worker (its renewal came too late on a
	// loaded machine) leaves its calls in flight like a kill does.
	bound += len(lost) * maxInFlight
	dups, dupIDs := dgCheckExplained(t, ids, hits, outcomes, ended)
	for k, rows := range atKill {
		t.Logf("kill %d: %d commands recorded done, checked for later sends", k+1, dgCheckNoRerun(t, fmt.Sprintf("after kill %d", k+1), rows, hits))
	}
	dgCheckKeyOrder(t, ids, keys, land, hits)
	t.Logf("duplicates: %d deliveries beyond the first, of %d commands, after %d kills and %d lease losses (bound %d = shards held at each kill or lost x %d in flight); by sender and time since the start:%s",
		dups, len(dupIDs), kills, len(lost), bound, maxInFlight, dgDescribeDups(dupIDs, hits, started, 20))
	if dups > bound {
		t.Errorf("%d duplicate deliveries, more than the %d commands that can be in flight at the kills and lease losses", dups, bound)
	}
	sample := []string{ids[0], ids[n-1]}
	if len(dupIDs) > 0 {
		sample = append(sample, dupIDs[0])
	}
	dgCheckOutcomeCLI(t, env, table, sample...)

	for _, w := range live {
		took, err := w.p.stop(t)
		t.Logf("worker %s stopped %s after SIGTERM (%v)", w.label, took.Round(time.Millisecond), err)
		if took > 20*time.Second {
			t.Errorf("worker %s took %s to stop", w.label, took)
		}
	}
	t.Logf("took %s", time.Since(started).Round(time.Millisecond))
}

// dgLeaseSample is one reading of the lease table.
type dgLeaseSample struct {
	at   time.Time
	rows map[string]dgLease
}

// dgLeaseRecorder reads the lease table every 100 ms until stopped.
type dgLeaseRecorder struct {
	mu      sync.Mutex
	samples []dgLeaseSample
	stop    chan struct{}
	done    chan struct{}
}

func dgRecordLeases(t testing.TB, env emulator.Env, table string) *dgLeaseRecorder {
	db := dgDB(t, env)
	r := &dgLeaseRecorder{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			// Before the first worker creates the table, reads fail.
			if rows, err := dgLeases(context.Background(), db, table); err == nil {
				r.mu.Lock()
				r.samples = append(r.samples, dgLeaseSample{at: time.Now(), rows: rows})
				r.mu.Unlock()
			}
			select {
			case <-r.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(r.halt)
	return r
}

func (r *dgLeaseRecorder) halt() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
}

func (r *dgLeaseRecorder) all() []dgLeaseSample {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.samples)
}

// dgCheckMonotonic asserts that no shard's checkpoint ever moved back.
func dgCheckMonotonic(t *testing.T, samples []dgLeaseSample) {
	t.Helper()
	last := map[string]dgLeaseSample{}
	for _, s := range samples {
		for shard, row := range s.rows {
			prev, ok := last[shard]
			if ok && row.checkpoint != "" && prev.rows[shard].checkpoint != "" && dgSeqLess(row.checkpoint, prev.rows[shard].checkpoint) {
				t.Errorf("shard %s: checkpoint moved back from %s (owner %s, %s) to %s (owner %s, %s)",
					shard, prev.rows[shard].checkpoint, prev.rows[shard].owner, prev.at.Format(time.StampMilli),
					row.checkpoint, row.owner, s.at.Format(time.StampMilli))
			}
			if row.checkpoint != "" {
				last[shard] = s
			}
		}
	}
}

// TestDeliveryZombie freezes a worker (SIGSTOP) until the other takes its
// leases and every lease and claim it held has run out, then lets it run
// again (SIGCONT). What the design guarantees, and the test asserts: the
// revived worker sends nothing under the leases and claims it held (its
// fence passed while it was frozen), finds its leases lost and stops those
// shards, no checkpoint ever moves back, no lease flips back to it, and no
// command runs more often than the outcome table's claims explain.
func TestDeliveryZombie(t *testing.T) {
	parallel(t)
	env := emulator.Require(t)
	started := time.Now()
	const shards = 4
	stream := emulator.UniqueName(t, "zombie")
	id := "com.acme." + emulator.UniqueName(t, "obs")
	table := id + "-commands"
	env.CreateStream(t, stream, shards)
	sink := newDGSink(t)
	// The lease (failoverTimeMillis of dgObserverConfig) and claim durations.
	const lease, claimTimeout = 3 * time.Second, 3 * time.Second
	obs := dgObserverConfig(id, stream, dgTuning{maxInFlight: 32, claimTimeout: claimTimeout})
	rec := dgRecordLeases(t, env, id)
	// Claims and checks of the outcome table answered 100 ms late, as from
	// a distant DynamoDB: whenever the zombie freezes it holds commands
	// admitted (or claimed) but not yet sent, the state in which a worker
	// must not act on a claim or lease that lapsed while it was away.
	// One proxy per worker, so that the test can hold one worker's checks.
	proxies := map[string]*dgProxy{}
	slowEnv := func(label string) emulator.Env {
		slow := env
		proxies[label] = newDGProxy(t, env.DynamoDBURL, 100*time.Millisecond)
		slow.DynamoDBURL = proxies[label].URL
		return slow
	}

	// Together, so that they split the shards between them.
	a := &dgWorker{label: "a", p: dgStartProcess(t, slowEnv("a"), sink.URL, "a", obs, "--log-level", "info")}
	b := &dgWorker{label: "b", p: dgStartProcess(t, slowEnv("b"), sink.URL, "b", obs, "--log-level", "info")}
	a.id, b.id = dgWorkerID(t, a.p), dgWorkerID(t, b.p)
	// A stopped process ignores SIGTERM: resume it before the harness stops it.
	t.Cleanup(func() {
		for _, w := range []*dgWorker{a, b} {
			_ = w.p.cmd.Process.Signal(syscall.SIGCONT)
		}
	})

	// A steady flow over many keys for the whole test, held back while
	// more than a few hundred commands wait: on a slow machine a fixed rate
	// would pile up work faster than it is done.
	kin := env.Kinesis(t)
	var (
		prodMu   sync.Mutex
		ids      []string
		keys     []string
		land     []dgLanding
		prodErr  error
		stopProd = make(chan struct{})
		prodDone = make(chan struct{})
	)
	go func() {
		defer close(prodDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for batch := 0; ; batch++ {
			bIDs := dgIDs(50)
			bKeys := make([]string, len(bIDs))
			bData := make([][]byte, len(bIDs))
			for i := range bIDs {
				bKeys[i] = fmt.Sprintf("key-%d", (batch*len(bIDs)+i)%200)
				bData[i] = dgCommand(bIDs[i], batch*len(bIDs)+i)
			}
			l, err := dgPut(context.Background(), kin, stream, bKeys, bData)
			prodMu.Lock()
			if err != nil {
				prodErr = err
				prodMu.Unlock()
				return
			}
			ids, keys, land = append(ids, bIDs...), append(keys, bKeys...), append(land, l...)
			n := len(ids)
			prodMu.Unlock()
			for first := true; first || n-sink.distinct() > 400; first = false {
				select {
				case <-stopProd:
					return
				case <-tick.C:
				}
			}
		}
	}()
	produced := func() int {
		prodMu.Lock()
		defer prodMu.Unlock()
		return len(ids)
	}

	var rows map[string]dgLease
	waitFor(t, giveUp, func() bool {
		rows = dgMustLeases(t, env, id)
		return len(rows) == shards && len(dgHeldByAny(rows, dgWorkerIDs(a.p)))+len(dgHeldByAny(rows, dgWorkerIDs(b.p))) == shards
	}, func() string { return fmt.Sprintf("every shard leased: %v", rows) })
	zombie, survivor := a, b
	if len(dgHeldByAny(rows, dgWorkerIDs(b.p))) > len(dgHeldByAny(rows, dgWorkerIDs(a.p))) {
		zombie, survivor = b, a
	}
	waitFor(t, giveUp, func() bool { return sink.distinct() >= 500 },
		func() string { return fmt.Sprintf("500 commands executed (have %d)", sink.distinct()) })

	// Frozen while it waits for the answer to a check of commands it has
	// read and not sent: the state in which it must not act, once it wakes,
	// on a lease that lapsed meanwhile, and in which the next owner must
	// claim those records (they arrived before the frozen lease ended).
	checks, release := proxies[zombie.label].holdNextCheck()
	defer release()
	var check []byte
	select {
	case check = <-checks:
	case <-time.After(giveUp):
		t.Fatalf("no check of commands from worker %s within %s", zombie.label, giveUp)
	}
	var pending []int
	prodMu.Lock()
	for i, c := range ids {
		if bytes.Contains(check, []byte(`"`+c+`"`)) {
			pending = append(pending, i)
		}
	}
	prodMu.Unlock()
	if len(pending) == 0 {
		t.Fatalf("worker %s checked no command the test put: %s", zombie.label, check)
	}
	frozenAt := dgFreeze(t, zombie.p)
	release()
	// Everything the frozen worker may send when it wakes is under a lease
	// or claim it took or renewed before now: its fence (at most the lease
	// or claim duration after that write) is behind this.
	fencesPassed := frozenAt.Add(max(lease, claimTimeout))
	atFreeze := dgMustLeases(t, env, id)
	// A worker restarted in-process (after a lease ran out under load, say)
	// has a new id: the frozen process's workers are all it logged.
	zombieIDs := dgWorkerIDs(zombie.p)
	frozen := dgHeldByAny(atFreeze, zombieIDs)
	// The commands it had claimed and not finished: those it would send on
	// waking if nothing stopped it.
	var claimedByZombie []string
	atFreezeOutcomes := dgOutcomes(t, env, table)
	for c, o := range atFreezeOutcomes {
		if o.status == "in_progress" && zombieIDs[o.owner] {
			claimedByZombie = append(claimedByZombie, c)
		}
	}
	t.Logf("froze worker %s holding %v and %d command claims; worker %s holds %v",
		zombie.label, frozen, len(claimedByZombie), survivor.label, dgHeldByAny(rows, dgWorkerIDs(survivor.p)))
	waitFor(t, giveUp, func() bool {
		rows = dgMustLeases(t, env, id)
		return len(dgHeldByAny(rows, dgWorkerIDs(survivor.p))) == shards
	}, func() string { return fmt.Sprintf("worker %s owning every shard: %v", survivor.label, rows) })
	takenAt := time.Now()
	t.Logf("worker %s took the frozen worker's shards %s after SIGSTOP", survivor.label, takenAt.Sub(frozenAt).Round(time.Millisecond))
	// The zombie wakes up behind: the survivor has checkpointed past the
	// zombie's last checkpoint on every shard it took (the zombie's claims
	// expired and were taken over on the way), so an unfenced write from the
	// zombie would move a checkpoint back.
	waitFor(t, giveUp, func() bool {
		rows = dgMustLeases(t, env, id)
		for _, shard := range frozen {
			if cp := rows[shard].checkpoint; cp == "" || !dgSeqLess(atFreeze[shard].checkpoint, cp) {
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprintf("checkpoints past %v: %v", atFreeze, rows) })
	t.Logf("worker %s moved every taken checkpoint on %s after SIGSTOP", survivor.label, time.Since(frozenAt).Round(time.Millisecond))
	// And it has executed a command that the zombie had read but not yet
	// sent when it froze: the survivor claims the records that arrived
	// before the zombie's lease ended, which the zombie may have started;
	// the zombie wakes up with those records admitted under a lease that
	// lapsed.
	var takenOver string
	waitFor(t, giveUp, func() bool {
		hits := sink.snapshot()
		prodMu.Lock()
		defer prodMu.Unlock()
		for _, i := range pending {
			c := ids[i]
			bySurvivor, byZombie := false, false
			for _, h := range hits[c] {
				bySurvivor = bySurvivor || h.path == "/"+survivor.label
				byZombie = byZombie || h.path == "/"+zombie.label
			}
			if bySurvivor && !byZombie {
				takenOver = c
				return true
			}
		}
		return false
	}, func() string {
		return "the survivor to execute a command the frozen worker had read but not sent"
	})
	t.Logf("worker %s executed command %s, read but not sent by the frozen worker, %s after SIGSTOP",
		survivor.label, takenOver, time.Since(frozenAt).Round(time.Millisecond))
	// The condition here is the time itself: every fence of the frozen
	// worker has passed.
	time.Sleep(time.Until(fencesPassed))
	if err := zombie.p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	resumedAt := time.Now()

	// Every lease the zombie had is let go once it runs again: found lost
	// at a renewal, or dropped with the whole worker when a renewal whose
	// deadline passed during the freeze fails and the observer restarts.
	lostAt := map[string]time.Time{}
	var missing []string
	waitFor(t, giveUp, func() bool {
		missing = missing[:0]
		stopped := zombie.p.logsMatching(func(m map[string]any) bool {
			return m["msg"] == "observer stopped" && !logAt(t, m).Before(resumedAt)
		})
		for _, shard := range frozen {
			recs := zombie.p.logsMatching(func(m map[string]any) bool {
				return strings.HasPrefix(fmt.Sprint(m["msg"]), "lease lost") && m["shard"] == shard && !logAt(t, m).Before(resumedAt)
			})
			if len(recs) == 0 {
				recs = stopped
			}
			if len(recs) == 0 {
				missing = append(missing, shard)
				continue
			}
			lostAt[shard] = logAt(t, recs[0])
		}
		return len(missing) == 0
	}, func() string {
		return fmt.Sprintf("the revived worker to log the loss of the leases of %v or to stop its worker", missing)
	})
	for _, shard := range frozen {
		t.Logf("shard %s: the revived worker let the lease go %s after SIGCONT", shard, lostAt[shard].Sub(resumedAt).Round(time.Millisecond))
	}

	// Commands keep flowing through the survivor for a while after the
	// zombie is back.
	after := produced()
	waitFor(t, giveUp, func() bool { return produced() >= after+500 },
		func() string { return "500 more commands put after SIGCONT" })
	close(stopProd)
	<-prodDone
	if prodErr != nil {
		t.Fatalf("producer: %v", prodErr)
	}
	sink.waitAll(t, ids, giveUp)
	outcomes := dgWaitOutcomesDone(t, env, table, ids, giveUp)
	dgWaitCheckpoints(t, env, id, dgLastSeqs(land), giveUp)
	rec.halt()
	samples := rec.all()

	dgCheckMonotonic(t, samples)
	// No lease flips back to the zombie once the survivor has it, unless
	// the revived worker acquired it anew (it had expired: renewals come
	// late on a loaded machine), which it logs.
	reacquired := map[string]bool{}
	for _, m := range zombie.p.logsMatching(msgIs("lease acquired")) {
		if !logAt(t, m).Before(resumedAt) {
			reacquired[fmt.Sprint(m["shard"])] = true
		}
	}
	for _, s := range samples {
		if s.at.Before(takenAt) {
			continue
		}
		for _, shard := range dgHeldByAny(s.rows, zombieIDs) {
			if !reacquired[shard] {
				t.Errorf("at %s the revived worker %s owned shard %s again without acquiring it", s.at.Format(time.StampMilli), zombie.label, shard)
			}
		}
	}
	hits := sink.snapshot()
	dups, dupIDs := dgCheckExplained(t, ids, hits, outcomes, map[string]time.Time{zombie.label: resumedAt})
	// Neither the new owner of the frozen worker's shards, which reads them
	// again from its checkpoints, nor the revived worker sends again what
	// was recorded done at the freeze.
	t.Logf("%d commands recorded done at the freeze, checked for later sends", dgCheckNoRerun(t, "at the freeze", atFreezeOutcomes, hits))
	dgCheckKeyOrder(t, ids, keys, land, hits)
	shardOf := map[string]string{}
	for i, id := range ids {
		shardOf[id] = land[i].shard
	}
	// The guarantee of the fence: nothing the frozen worker had claimed
	// arrives from it once it runs again, nor anything of a shard it had
	// leased, unless a worker of its process took that lease again later.
	zombieWorkers := dgWorkerIDs(zombie.p)
	retaken := map[string]bool{}
	for _, smp := range samples {
		if smp.at.Before(resumedAt) {
			continue
		}
		for shard, r := range smp.rows {
			if zombieWorkers[r.owner] {
				retaken[shard] = true
			}
		}
	}
	wasClaimed := map[string]bool{}
	for _, c := range claimedByZombie {
		wasClaimed[c] = true
	}
	afterResume, fenced := 0, 0
	for id, hs := range hits {
		for _, h := range hs {
			if h.path != "/"+zombie.label || h.at.Before(resumedAt) {
				continue
			}
			afterResume++
			shard := shardOf[id]
			if wasClaimed[id] || (slices.Contains(frozen, shard) && !retaken[shard]) {
				fenced++
				if fenced <= 5 {
					t.Errorf("command %s (shard %s, claimed by the frozen worker: %v) reached the receiver from the revived worker at %s, %s after SIGCONT, although its fence passed while it was frozen",
						id, shard, wasClaimed[id], h.at.Format(time.StampMicro), h.at.Sub(resumedAt).Round(time.Millisecond))
				}
			}
		}
	}
	// What the revived worker sends must not have been executed by another
	// worker too: a claim still live when it woke up makes the other worker
	// skip the command as done; a claim that lapsed while it was frozen must
	// stop it from sending.
	var stale []string
	for id, hs := range hits {
		zombieAfter, other := false, false
		for _, h := range hs {
			if h.path != "/"+zombie.label {
				other = true
			} else if !h.at.Before(resumedAt) {
				zombieAfter = true
			}
		}
		if zombieAfter && other {
			stale = append(stale, id)
		}
	}
	if len(stale) > 0 {
		sort.Strings(stale)
		t.Errorf("%d commands executed by worker %s and again by the revived worker %s after SIGCONT; by sender and time since SIGSTOP:%s",
			len(stale), survivor.label, zombie.label, dgDescribeDups(stale, hits, frozenAt, 10))
	}
	stopped := 0
	for _, m := range zombie.p.logsMatching(msgIs("command failed; retrying")) {
		if strings.Contains(fmt.Sprint(m["err"]), "ownership fence passed") && !logAt(t, m).Before(resumedAt) {
			stopped++
		}
	}
	t.Logf("%d commands, %d duplicate deliveries (%d commands); after SIGCONT the revived worker sent %d requests (%d past a fence) and its fence stopped %d attempts",
		len(ids), dups, len(dupIDs), afterResume, fenced, stopped)
	t.Logf("duplicates by sender and time since SIGSTOP (SIGCONT at %.3fs):%s",
		resumedAt.Sub(frozenAt).Seconds(), dgDescribeDups(dupIDs, hits, frozenAt, 20))
	// The outcomes the revived worker still held for commands run without
	// a claim are written where no item holds their ids, not in bulk.
	t.Logf("outcomes of the revived worker under its lost leases: %d written where no item was, %d found an item there, %d left behind such an earlier one of their key",
		len(zombie.p.logsMatching(msgIs("recorded the outcome of a command where no item held its id (its shard lease lost, or its run stopped)"))),
		len(zombie.p.logsMatching(msgIs("not recording the outcome of a command (its shard lease lost, or its run stopped): an item holds its id already (the next owner's claim or outcome, or this worker's earlier write)"))),
		len(zombie.p.logsMatching(msgIs("not recording the outcome of a command (its shard lease lost, or its run stopped): an earlier command of its partition key has no recorded outcome and runs again first"))))
	for _, w := range []*dgWorker{zombie, survivor} {
		took, err := w.p.stop(t)
		t.Logf("worker %s stopped %s after SIGTERM (%v)", w.label, took.Round(time.Millisecond), err)
	}
	t.Logf("took %s", time.Since(started).Round(time.Millisecond))
}

// dgBlackHole accepts TCP connections and forwards them to upstream until it
// is switched to swallowing: from then on it reads what the client sends
// and never answers, on old and new connections alike. With no upstream it
// swallows from the start.
type dgBlackHole struct {
	ln        net.Listener
	upstream  string
	hole      atomic.Bool
	accepted  atomic.Int64
	swallowed atomic.Int64 // bytes read and dropped
	mu        sync.Mutex
	conns     []net.Conn
	closed    bool
}

func newDGBlackHole(t testing.TB, upstream string) *dgBlackHole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &dgBlackHole{ln: ln, upstream: upstream}
	b.hole.Store(upstream == "")
	go b.serve()
	t.Cleanup(b.close)
	return b
}

func (b *dgBlackHole) url() string { return "http://" + b.ln.Addr().String() }

func (b *dgBlackHole) track(c net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		c.Close()
		return false
	}
	b.conns = append(b.conns, c)
	return true
}

func (b *dgBlackHole) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.accepted.Add(1)
		if !b.track(c) {
			return
		}
		var up net.Conn
		if !b.hole.Load() {
			up, err = net.DialTimeout("tcp", b.upstream, 5*time.Second)
			if err != nil || !b.track(up) {
				c.Close()
				continue
			}
			go func() { _, _ = io.Copy(c, up) }()
		}
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if up == nil || b.hole.Load() {
						b.swallowed.Add(int64(n))
					} else if _, werr := up.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

func (b *dgBlackHole) close() {
	b.ln.Close()
	b.mu.Lock()
	b.closed = true
	conns := b.conns
	b.conns = nil
	b.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// TestDeliveryShutdownBounded: SIGTERM ends the process within 20 s while
// (a) the webhook receiver hangs with commands in flight, the finished ones
// checkpointed so that a restart re-sends only the hung ones; (b) Kinesis is
// a black hole from the start; (c) Kinesis turns into a black hole while the
// worker holds every lease.
func TestDeliveryShutdownBounded(t *testing.T) {
	t.Parallel()
	env := emulator.Require(t)
	const limit = 20 * time.Second

	t.Run("hung receiver", func(t *testing.T) {
		t.Parallel() // timers, little CPU: no slot (see TestMain)
		const shards = 4
		stream := emulator.UniqueName(t, "hang")
		id := "com.acme." + emulator.UniqueName(t, "obs")
		table := id + "-commands"
		env.CreateStream(t, stream, shards)
		sink := newDGSink(t)
		// The final checkpoint is written only while the lease is held by
		// this worker's own clock; with a 3 s lease one renewal answered
		// 2.3 s late by a loaded emulator lapsed it during the 10 s drain,
		// and the shard stopped uncheckpointed, as designed. What is tested
		// here is what the checkpoint covers, so the lease outlasts such
		// stalls; the second worker takes the released leases at once.
		obs := dgObserverConfig(id, stream, dgTuning{lease: 15 * time.Second})
		kin := env.Kinesis(t)

		const normal, hung = 400, 8
		ids := dgIDs(normal + hung)
		hangs := map[string]bool{}
		for _, id := range ids[normal:] {
			hangs[id] = true
		}
		sink.setHang(func(id string) bool { return hangs[id] })
		keys := make([]string, len(ids))
		data := make([][]byte, len(ids))
		for i := range ids {
			keys[i] = fmt.Sprintf("key-%d", i%40)
			if i >= normal {
				keys[i] = fmt.Sprintf("hang-%d", i)
			}
			data[i] = dgCommand(ids[i], i)
		}

		w := dgStartWorker(t, env, sink.URL, "first", obs)
		landNormal, err := dgPut(t.Context(), kin, stream, keys[:normal], data[:normal])
		if err != nil {
			t.Fatal(err)
		}
		sink.waitAll(t, ids[:normal], giveUp)
		dgWaitOutcomesDone(t, env, table, ids[:normal], giveUp)
		// The hung commands come last in every shard they land in: the
		// checkpoint must stop right before them.
		landHung, err := dgPut(t.Context(), kin, stream, keys[normal:], data[normal:])
		if err != nil {
			t.Fatal(err)
		}
		sink.waitAll(t, ids[normal:], giveUp)

		took, err := w.p.stop(t)
		t.Logf("stopped %s after SIGTERM with %d commands hung at the receiver (%v)", took.Round(time.Millisecond), hung, err)
		if took > limit {
			t.Errorf("shutdown with a hung receiver took %s, want under %s", took, limit)
		}
		if err != nil {
			t.Errorf("sauna exited with %v", err)
		}
		want := dgLastSeqs(landNormal)
		rows := dgMustLeases(t, env, id)
		for shard, seq := range want {
			if got := rows[shard].checkpoint; got != seq {
				t.Errorf("shard %s: checkpoint %q after the stop, want %s (its last finished command)", shard, got, seq)
			}
		}
		for i, l := range landHung {
			if cp := rows[l.shard].checkpoint; cp != "" && !dgSeqLess(cp, l.seq) {
				t.Errorf("shard %s: checkpoint %s passes the hung command %s (seq %s)", l.shard, cp, ids[normal+i], l.seq)
			}
		}

		// A new worker re-sends exactly the hung commands.
		sink.setHang(nil)
		w2 := dgStartWorker(t, env, sink.URL, "second", obs)
		waitFor(t, giveUp, func() bool {
			for _, id := range ids[normal:] {
				if sink.count(id) < 2 {
					return false
				}
			}
			return true
		}, func() string { return "the hung commands to be sent again" })
		dgWaitOutcomesDone(t, env, table, ids, giveUp)
		dgWaitCheckpoints(t, env, id, dgLastSeqs(append(landNormal, landHung...)), giveUp)
		hits := sink.snapshot()
		for _, id := range ids[:normal] {
			if n := len(hits[id]); n != 1 {
				t.Errorf("finished command %s reached the receiver %d times", id, n)
			}
		}
		for _, id := range ids[normal:] {
			if n := len(hits[id]); n != 2 {
				t.Errorf("hung command %s reached the receiver %d times, want 2", id, n)
			}
		}
		// Not even skipped as duplicates: the finished commands were behind
		// the checkpoint and never read again.
		if skipped := w2.p.logsMatching(msgIs("command already executed; skipped")); len(skipped) > 0 {
			t.Errorf("the restarted worker re-read %d finished commands, e.g. %v", len(skipped), skipped[0])
		}
		took, err = w2.p.stop(t)
		t.Logf("second worker stopped %s after SIGTERM (%v)", took.Round(time.Millisecond), err)
	})

	t.Run("black-hole Kinesis from the start", func(t *testing.T) {
		t.Parallel() // timers, little CPU: no slot (see TestMain)
		stream := emulator.UniqueName(t, "bh")
		id := "com.acme." + emulator.UniqueName(t, "obs")
		hole := newDGBlackHole(t, "")
		sink := newDGSink(t)
		bhEnv := env
		bhEnv.KinesisURL = hole.url()
		w := dgStartWorker(t, bhEnv, sink.URL, "w", dgObserverConfig(id, stream, dgTuning{}))
		waitFor(t, giveUp, func() bool { return hole.swallowed.Load() > 0 },
			func() string { return "a Kinesis request swallowed by the black hole" })
		took, err := w.p.stop(t)
		t.Logf("stopped %s after SIGTERM with Kinesis a black hole (%d connections, %d bytes swallowed; %v)",
			took.Round(time.Millisecond), hole.accepted.Load(), hole.swallowed.Load(), err)
		if took > limit {
			t.Errorf("shutdown with Kinesis a black hole took %s, want under %s", took, limit)
		}
	})

	t.Run("Kinesis turns into a black hole", func(t *testing.T) {
		t.Parallel() // timers, little CPU: no slot (see TestMain)
		const shards = 4
		stream := emulator.UniqueName(t, "bh2")
		id := "com.acme." + emulator.UniqueName(t, "obs")
		env.CreateStream(t, stream, shards)
		upstream := strings.TrimPrefix(strings.TrimPrefix(env.KinesisURL, "http://"), "https://")
		hole := newDGBlackHole(t, upstream)
		sink := newDGSink(t)
		bhEnv := env
		bhEnv.KinesisURL = hole.url()
		w := dgStartWorker(t, bhEnv, sink.URL, "w", dgObserverConfig(id, stream, dgTuning{}))

		ids := dgIDs(200)
		keys := make([]string, len(ids))
		data := make([][]byte, len(ids))
		for i := range ids {
			keys[i], data[i] = fmt.Sprintf("key-%d", i%50), dgCommand(ids[i], i)
		}
		land, err := dgPut(t.Context(), env.Kinesis(t), stream, keys, data)
		if err != nil {
			t.Fatal(err)
		}
		sink.waitAll(t, ids, giveUp)
		want := dgLastSeqs(land)
		dgWaitCheckpoints(t, env, id, want, giveUp)
		waitFor(t, giveUp, func() bool { return len(dgHeldBy(dgMustLeases(t, env, id), w.id)) == shards },
			func() string { return "the worker to hold every shard" })

		hole.hole.Store(true)
		// The consumers poll every 250 ms when idle, so a swallowed request
		// follows at once.
		waitFor(t, giveUp, func() bool { return hole.swallowed.Load() > 0 },
			func() string { return "a Kinesis request swallowed by the black hole" })
		took, err := w.p.stop(t)
		t.Logf("stopped %s after SIGTERM with Kinesis turned into a black hole while holding %d shards (%v)",
			took.Round(time.Millisecond), shards, err)
		if took > limit {
			t.Errorf("shutdown with Kinesis a black hole took %s, want under %s", took, limit)
		}
		rows := dgMustLeases(t, env, id)
		for shard, seq := range want {
			if got := rows[shard].checkpoint; got != seq {
				t.Errorf("shard %s: checkpoint %q after the stop, want %s", shard, got, seq)
			}
		}

		// The abandoned worker released nothing; once its leases expire a
		// worker with a working Kinesis resumes every shard at its checkpoint.
		w2 := dgStartWorker(t, env, sink.URL, "w2", dgObserverConfig(id, stream, dgTuning{}))
		for _, m := range w2.p.waitLogs(t, shards, giveUp, msgIs("shard acquired")) {
			shard := fmt.Sprint(m["shard"])
			if from := fmt.Sprint(m["from"]); from != want[shard] {
				t.Errorf("shard %s resumed from %s, want its checkpoint %s", shard, from, want[shard])
			}
		}
		if n := len(sink.snapshot()); n != len(ids) {
			t.Errorf("the receiver saw %d distinct commands, want %d", n, len(ids))
		}
		for _, id := range ids {
			if n := sink.count(id); n != 1 {
				t.Errorf("command %s reached the receiver %d times", id, n)
			}
		}
		took, err = w2.p.stop(t)
		t.Logf("the next worker resumed every shard at its checkpoint and stopped %s after SIGTERM (%v)", took.Round(time.Millisecond), err)
	})
}
