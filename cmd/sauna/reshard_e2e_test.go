package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/outcomes"
)

// dlvRequest is one request the delivery server received: which command,
// which of its partition key's commands, and what it was answered.
type dlvRequest struct {
	ID     string
	Key    string
	N      int
	Status int
	At     time.Time
}

// dlvServer is the webhook receiver of the delivery tests. It keeps every
// request in arrival order, so that per-key order can be checked on what
// the receiver really saw.
type dlvServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []dlvRequest
	// reply decides each answer: status, Retry-After header ("" for none)
	// and body. nil answers 200.
	reply func(r dlvRequest) (int, string, string)
	// jitter, if set, delays each answer by up to that long after the
	// arrival is recorded, so that commands overlap as with a real receiver.
	jitter time.Duration
}

func newDlvServer(t testing.TB) *dlvServer {
	t.Helper()
	s := &dlvServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var b struct {
			Key string `json:"key"`
			N   int    `json:"n"`
		}
		_ = json.Unmarshal(body, &b)
		req := dlvRequest{ID: r.Header.Get("X-Sauna-Command-Id"), Key: b.Key, N: b.N, At: time.Now()}
		s.mu.Lock()
		status, retryAfter, text := http.StatusOK, "", "ok"
		if s.reply != nil {
			status, retryAfter, text = s.reply(req)
		}
		req.Status = status
		s.reqs = append(s.reqs, req)
		jitter := s.jitter
		s.mu.Unlock()
		if jitter > 0 {
			time.Sleep(rand.N(jitter))
		}
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(status)
		io.WriteString(w, text)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *dlvServer) setReply(f func(r dlvRequest) (int, string, string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reply = f
}

// answered is how many requests the receiver has answered or is answering.
func (s *dlvServer) answered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

func (s *dlvServer) requests() []dlvRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// accepted returns the commandIds answered 2xx, with how often.
func (s *dlvServer) accepted() map[string]int {
	got := map[string]int{}
	for _, r := range s.requests() {
		if r.Status/100 == 2 {
			got[r.ID]++
		}
	}
	return got
}

// dlvCommand is one published command and its place in its key's sequence.
type dlvCommand struct {
	ID   string
	Key  string
	N    int
	Data []byte
}

// dlvWebhookCommand is a webhook command whose body names its partition key
// and number, so that the receiver can tell the order it sees.
func dlvWebhookCommand(id, key string, n int) dlvCommand {
	inner := fmt.Sprintf(`{"schema":"iglu:io.sauna.commands/webhook/jsonschema/1-0-0","data":{"body":{"key":%q,"n":%d}}}`, key, n)
	return dlvCommand{ID: id, Key: key, N: n, Data: []byte(commandRecord(id, time.Now(), "null", inner))}
}

// dlvObserverConfig is a 1-0-2 observer tuned for tests, with the delivery
// settings under test.
func dlvObserverConfig(id, stream, position string, retryBudgetMillis int, deadLetterStream string) string {
	dlq := "null"
	if deadLetterStream != "" {
		dlq = fmt.Sprintf("%q", deadLetterStream)
	}
	return fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.observers/AmazonKinesisConfig/avro/1-0-2",
 "data":{"enabled":true,"id":%q,"parameters":{
   "aws":{"accessKeyId":"","secretAccessKey":""},
   "kinesis":{"region":"us-east-1","streamName":%q,"maxRecords":100,
              "initialPosition":%q,"initialPositionModifiers":null,
              "shardSyncIntervalMillis":300,"idleTimeBetweenReadsMillis":250,
              "failoverTimeMillis":3000,"leaseRefreshMillis":1000,"parentShardPollMillis":500},
   "delivery":{"maxInFlightPerShard":64,"retryBudgetMillis":%d,"deadLetterStream":%s,
               "idempotency":{"enabled":true,"tableName":null,"retentionDays":1,"claimTimeoutMillis":10000}},
   "cloudwatch":{"enabled":false,"namespace":null,"flushIntervalMillis":10000}}}}`, id, stream, position, retryBudgetMillis, dlq)
}

func dlvWebhookConfig(url string) string {
	return fmt.Sprintf(`{"schema":"iglu:io.sauna.responders/WebhookConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"com.acme.webhook","parameters":{"url":%q,"headers":{},"signingSecret":null,
   "timeoutMillis":5000,"rateLimitPerSecond":null,"rateLimitBurst":5}}}`, url)
}

// dlvPut puts one command with PutRecord, which (unlike PutRecords) orders
// the records of a partition key as they are put.
func dlvPut(ctx context.Context, kin *kinesis.Client, stream string, c dlvCommand) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := kin.PutRecord(cctx, &kinesis.PutRecordInput{
		StreamName: aws.String(stream), PartitionKey: aws.String(c.Key), Data: c.Data,
	})
	return err
}

// dlvCheckKeyOrder checks, for each partition key in published, that the first
// accepted delivery of each command came in publish order with none skipped,
// and returns the commandIds accepted more than once.
func dlvCheckKeyOrder(t *testing.T, reqs []dlvRequest, published map[string][]dlvCommand) (repeats []string) {
	t.Helper()
	next := map[string]int{}
	seen := map[string]bool{}
	inversions := 0
	for _, r := range reqs {
		if _, ok := published[r.Key]; !ok || r.Status/100 != 2 {
			continue
		}
		if seen[r.ID] {
			repeats = append(repeats, r.ID)
			continue
		}
		seen[r.ID] = true
		if want := next[r.Key]; r.N != want {
			if inversions++; inversions <= 10 {
				t.Errorf("key %s: command %d (%s) arrived for the first time while command %d was due", r.Key, r.N, r.ID, want)
			}
		}
		next[r.Key] = max(next[r.Key], r.N+1)
	}
	if inversions > 10 {
		t.Errorf("%d out-of-order first deliveries in all", inversions)
	}
	for key, cmds := range published {
		if next[key] != len(cmds) {
			t.Errorf("key %s: %d commands delivered in order, %d published", key, next[key], len(cmds))
		}
	}
	return repeats
}

// dlvExplainRepeats fails for a command delivered more than once unless the
// outcomes table shows it was attempted more than once (a claim taken over
// after it expired): with idempotency on, that is the only way a command the
// receiver accepted may run again.
func dlvExplainRepeats(t *testing.T, env emulator.Env, table string, repeats []string) {
	t.Helper()
	if len(repeats) == 0 {
		return
	}
	tbl := outcomes.New(env.DynamoDB(t), outcomes.Config{TableName: table})
	for _, id := range repeats {
		rec, err := tbl.Get(t.Context(), id)
		if err != nil {
			t.Errorf("command %s was delivered more than once and its outcome cannot be read: %v", id, err)
			continue
		}
		if rec.Attempts < 2 {
			t.Errorf("command %s was delivered more than once, but its outcome records %d attempt(s) (%s/%s at %s/%s): nothing explains the repeat",
				id, rec.Attempts, rec.Status, rec.Verdict, rec.Shard, rec.Sequence)
		} else {
			t.Logf("command %s delivered again; its outcome shows %d attempts", id, rec.Attempts)
		}
	}
}

// dlvShards lists a stream's open shards, by starting hash key, and its
// closed ones.
func dlvShards(t *testing.T, kin *kinesis.Client, stream string) (open, closed []types.Shard) {
	t.Helper()
	out, err := kin.ListShards(t.Context(), &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatalf("list shards of %s: %v", stream, err)
	}
	for _, s := range out.Shards {
		if s.SequenceNumberRange != nil && s.SequenceNumberRange.EndingSequenceNumber != nil {
			closed = append(closed, s)
		} else {
			open = append(open, s)
		}
	}
	sort.Slice(open, func(i, j int) bool {
		return dlvHashKey(open[i].HashKeyRange.StartingHashKey).Cmp(dlvHashKey(open[j].HashKeyRange.StartingHashKey)) < 0
	})
	return open, closed
}

// dlvSplit splits parent at the middle of its hash key range.
func dlvSplit(t *testing.T, kin *kinesis.Client, stream string, parent types.Shard) {
	t.Helper()
	lo, hi := dlvHashKey(parent.HashKeyRange.StartingHashKey), dlvHashKey(parent.HashKeyRange.EndingHashKey)
	mid := new(big.Int).Add(lo, hi)
	mid.Add(mid, big.NewInt(1)).Rsh(mid, 1)
	if _, err := kin.SplitShard(t.Context(), &kinesis.SplitShardInput{
		StreamName: aws.String(stream), ShardToSplit: parent.ShardId, NewStartingHashKey: aws.String(mid.String()),
	}); err != nil {
		t.Fatalf("split %s: %v", aws.ToString(parent.ShardId), err)
	}
}

// dlvMergeLastPair merges the last two adjacent shards of open (sorted by
// starting hash key, as dlvShards returns them) and returns them.
func dlvMergeLastPair(t *testing.T, kin *kinesis.Client, stream string, open []types.Shard) (a, b types.Shard) {
	t.Helper()
	for i := len(open) - 2; i >= 0; i-- {
		end := dlvHashKey(open[i].HashKeyRange.EndingHashKey)
		if new(big.Int).Add(end, big.NewInt(1)).Cmp(dlvHashKey(open[i+1].HashKeyRange.StartingHashKey)) == 0 {
			a, b = open[i], open[i+1]
			break
		}
	}
	if a.ShardId == nil {
		t.Fatalf("no two adjacent open shards among %d", len(open))
	}
	if _, err := kin.MergeShards(t.Context(), &kinesis.MergeShardsInput{
		StreamName: aws.String(stream), ShardToMerge: a.ShardId, AdjacentShardToMerge: b.ShardId,
	}); err != nil {
		t.Fatalf("merge %s and %s: %v", aws.ToString(a.ShardId), aws.ToString(b.ShardId), err)
	}
	return a, b
}

func dlvHashKey(s *string) *big.Int {
	n, ok := new(big.Int).SetString(aws.ToString(s), 10)
	if !ok {
		panic("not a hash key: " + aws.ToString(s))
	}
	return n
}

func dlvWaitActive(t *testing.T, kin *kinesis.Client, stream string) {
	t.Helper()
	var status types.StreamStatus
	waitFor(t, giveUp, func() bool {
		out, err := kin.DescribeStreamSummary(t.Context(), &kinesis.DescribeStreamSummaryInput{StreamName: aws.String(stream)})
		if err != nil {
			t.Fatalf("describe %s: %v", stream, err)
		}
		status = out.StreamDescriptionSummary.StreamStatus
		return status == types.StreamStatusActive
	}, func() string { return fmt.Sprintf("stream %s to become ACTIVE (it is %s)", stream, status) })
}

// dlvCheckpoints returns the Checkpoint of every row of a lease table.
func dlvCheckpoints(t *testing.T, env emulator.Env, table string) map[string]string {
	t.Helper()
	out, err := env.DynamoDB(t).Scan(t.Context(), &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatalf("lease table %q: %v", table, err)
	}
	cps := map[string]string{}
	for _, item := range out.Items {
		shard, _ := item["ShardID"].(*ddbtypes.AttributeValueMemberS)
		if shard == nil {
			continue
		}
		cp := ""
		if s, ok := item["Checkpoint"].(*ddbtypes.AttributeValueMemberS); ok {
			cp = s.Value
		}
		cps[shard.Value] = cp
	}
	return cps
}

func dlvWaitShardEnd(t *testing.T, env emulator.Env, table string, shards ...string) {
	t.Helper()
	var cps map[string]string
	waitFor(t, giveUp, func() bool {
		cps = dlvCheckpoints(t, env, table)
		for _, s := range shards {
			if cps[s] != "SHARD_END" {
				return false
			}
		}
		return true
	}, func() string { return fmt.Sprintf("shards %v at SHARD_END in the lease table; rows %v", shards, cps) })
}

// dlvProducer puts numbered commands for a set of partition keys, each key on
// its own goroutine so that PutRecord keeps each key's order, until stopped.
type dlvProducer struct {
	mu        sync.Mutex
	published map[string][]dlvCommand
	errs      []error
	stop      chan struct{}
	wg        sync.WaitGroup
}

func dlvStartProducer(ctx context.Context, kin *kinesis.Client, stream string, keys []string, idBase int, every time.Duration) *dlvProducer {
	return dlvStartPacedProducer(ctx, kin, stream, keys, idBase, every, nil, 0)
}

// dlvStartPacedProducer is dlvStartProducer held back while more than
// backlog of its commands have not been answered yet (answered counts
// the receiver's answers). A fixed rate piles work up on a slow machine
// faster than it is done, and the test then waits for all of it; paced,
// commands still flow through every step, as many as the machine can take.
func dlvStartPacedProducer(ctx context.Context, kin *kinesis.Client, stream string, keys []string, idBase int, every time.Duration, answered func() int, backlog int) *dlvProducer {
	p := &dlvProducer{published: map[string][]dlvCommand{}, stop: make(chan struct{})}
	for k, key := range keys {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for n := 0; ; n++ {
				c := dlvWebhookCommand(uuidFor(idBase+k*100000+n), key, n)
				if err := dlvPut(ctx, kin, stream, c); err != nil {
					p.mu.Lock()
					p.errs = append(p.errs, fmt.Errorf("put %s #%d: %w", key, n, err))
					p.mu.Unlock()
					return
				}
				p.mu.Lock()
				p.published[key] = append(p.published[key], c)
				p.mu.Unlock()
				for first := true; first || (answered != nil && p.count()-answered() > backlog); first = false {
					select {
					case <-p.stop:
						return
					case <-ctx.Done():
						return
					case <-tick.C:
					}
				}
			}
		}()
	}
	return p
}

// finish stops the producer and returns what it published.
func (p *dlvProducer) finish(t *testing.T) map[string][]dlvCommand {
	t.Helper()
	close(p.stop)
	p.wg.Wait()
	if err := errors.Join(p.errs...); err != nil {
		t.Fatalf("dlvProducer: %v", err)
	}
	return p.published
}

func (p *dlvProducer) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.published {
		n += len(c)
	}
	return n
}

// TestDeliveryReshard splits one shard and then merges two adjacent open
// shards of a stream while webhook commands of 20 partition keys flow
// through the binary: every command arrives, each key's commands arrive in
// the order they were put, and every parent shard's lease row reaches
// SHARD_END (without it the children would never be read). With LATEST,
// the KCL's own behaviour would skip what the children received before they
// were picked up.
func TestDeliveryReshard(t *testing.T) {
	t.Parallel() // the subtests take the slots
	for _, position := range []string{"TRIM_HORIZON", "LATEST"} {
		t.Run(position, func(t *testing.T) {
			parallel(t)
			testDeliveryReshard(t, position)
		})
	}
}

func testDeliveryReshard(t *testing.T, position string) {
	env := emulator.Require(t)
	started := time.Now()
	stream := emulator.UniqueName(t, "reshard")
	id := "com.acme." + emulator.UniqueName(t, "obs")
	env.CreateStream(t, stream, 2)
	kin := env.Kinesis(t)

	srv := newDlvServer(t)
	srv.jitter = 20 * time.Millisecond
	dir := t.TempDir()
	writeFile(t, dir, "observer.json", dlvObserverConfig(id, stream, position, 60000, ""))
	writeFile(t, dir, "webhook.json", dlvWebhookConfig(srv.URL+"/hook"))
	p := startSauna(t, env, dir)
	p.waitLogs(t, 1, giveUp, msgIs("observer started"))

	var keys []string
	for k := range 20 {
		keys = append(keys, fmt.Sprintf("key-%02d", k))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// 20 keys every 40 ms: about 500 commands a second, held back while
	// more than two seconds' worth wait: commands keep flowing through the
	// split and the merge without outrunning a slow machine.
	prod := dlvStartPacedProducer(ctx, kin, stream, keys, 10_000_000, 40*time.Millisecond, srv.answered, 1000)
	defer func() {
		select {
		case <-prod.stop:
		default:
			close(prod.stop)
		}
		prod.wg.Wait()
	}()
	delivered := func() int { return len(srv.accepted()) }
	waitGrowth := func(what string, by int) {
		t.Helper()
		from := delivered()
		waitFor(t, giveUp, func() bool { return delivered() >= from+by },
			func() string {
				return fmt.Sprintf("%d more deliveries %s (from %d, now %d)", by, what, from, delivered())
			})
		t.Logf("%5.1fs: %d deliveries %s", time.Since(started).Seconds(), delivered(), what)
	}
	waitGrowth("before the split", 200)

	open, _ := dlvShards(t, kin, stream)
	if len(open) != 2 {
		t.Fatalf("open shards before the split: %d, want 2", len(open))
	}
	parent := open[0]
	dlvSplit(t, kin, stream, parent)
	t.Logf("split %s after %d commands put", aws.ToString(parent.ShardId), prod.count())
	dlvWaitActive(t, kin, stream)
	dlvWaitShardEnd(t, env, id, aws.ToString(parent.ShardId))
	t.Logf("%5.1fs: split parent finished", time.Since(started).Seconds())
	waitGrowth("after the split", 200)

	open, _ = dlvShards(t, kin, stream)
	if len(open) != 3 {
		t.Fatalf("open shards after the split: %d, want 3", len(open))
	}
	// The last adjacent pair: the split's upper child and the untouched
	// shard, so the merged shard has parents of different lineages.
	a, b := dlvMergeLastPair(t, kin, stream, open)
	t.Logf("merged %s and %s after %d commands put", aws.ToString(a.ShardId), aws.ToString(b.ShardId), prod.count())
	dlvWaitActive(t, kin, stream)
	dlvWaitShardEnd(t, env, id, aws.ToString(a.ShardId), aws.ToString(b.ShardId))
	t.Logf("%5.1fs: merge parents finished", time.Since(started).Seconds())
	waitGrowth("after the merge", 200)

	published := prod.finish(t)
	var all []dlvCommand
	for _, cmds := range published {
		all = append(all, cmds...)
	}
	var missing []string
	waitFor(t, giveUp, func() bool {
		got := srv.accepted()
		missing = missing[:0]
		for _, c := range all {
			if got[c.ID] == 0 {
				missing = append(missing, fmt.Sprintf("%s#%d", c.Key, c.N))
			}
		}
		return len(missing) == 0
	}, func() string {
		return fmt.Sprintf("every one of %d commands to arrive; %d missing, e.g. %v", len(all), len(missing), missing[:min(len(missing), 10)])
	})
	t.Logf("%5.1fs: all %d commands arrived", time.Since(started).Seconds(), len(all))

	repeats := dlvCheckKeyOrder(t, srv.requests(), published)
	dlvExplainRepeats(t, env, id+"-commands", repeats)

	// Every shard closed by the reshard is finished in the lease table, and
	// after a clean stop the open ones carry a checkpoint.
	open, closed := dlvShards(t, kin, stream)
	var closedIDs []string
	for _, s := range closed {
		closedIDs = append(closedIDs, aws.ToString(s.ShardId))
	}
	if len(closedIDs) != 3 {
		t.Errorf("closed shards %v, want the split parent and both merge parents", closedIDs)
	}
	dlvWaitShardEnd(t, env, id, closedIDs...)

	stopCleanly(t, p)
	cps := dlvCheckpoints(t, env, id)
	for _, s := range open {
		if cp := cps[aws.ToString(s.ShardId)]; cp == "" || cp == "SHARD_END" {
			t.Errorf("open shard %s has checkpoint %q after a clean stop", aws.ToString(s.ShardId), cp)
		}
	}
	for _, m := range p.logsMatching(func(m map[string]any) bool { return m["level"] == "ERROR" }) {
		if transientCallFailure(m) {
			t.Logf("a call failed for a while (retried): %v", m)
			continue
		}
		t.Errorf("error logged: %v", m)
	}
	if n := len(p.logsMatching(func(m map[string]any) bool {
		return strings.Contains(fmt.Sprint(m["msg"]), "not every record ran")
	})); n > 0 {
		t.Errorf("%d shards ended with records left unfinished", n)
	}
	t.Logf("%d commands on %d keys, %d repeats, in %s", len(all), len(keys), len(repeats), time.Since(started).Round(time.Millisecond))
}

// transientFailures are what the AWS SDK and the network say of a call that
// timed out, was throttled or lost its connection, or that the SDK's
// retryer (which retries only such failures) gave up on.
var transientFailures = []string{
	"context deadline exceeded",
	"Client.Timeout exceeded",
	"i/o timeout",
	"connection reset by peer",
	"unexpected EOF",
	"ThrottlingException",
	"ProvisionedThroughputExceededException",
	"LimitExceededException",
	"exceeded maximum number of attempts",
}

// transientCallFailure tells whether an error line reports a transient
// failure of a call to the emulators. On a busy machine they answer late now
// and then; the KCL and sauna log such a failure as an error and retry the
// call, or read the shard again from its checkpoint, so every command still
// arrives, once and in order, which is what the test checks. Any other error
// line fails it.
func transientCallFailure(m map[string]any) bool {
	text := fmt.Sprint(m["msg"], " ", m["err"])
	for _, f := range transientFailures {
		if strings.Contains(text, f) {
			return true
		}
	}
	return false
}
