package kinesis

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/sauna-io/sauna/observer/command"
	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/kinesis/leases"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
)

// useEmulators points the SDK's standard endpoint variables at the emulators,
// as an operator would for sauna run.
func useEmulators(t *testing.T) emulator.Env {
	env := emulator.Require(t)
	t.Setenv("AWS_ENDPOINT_URL_KINESIS", env.KinesisURL)
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", env.DynamoDBURL)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_CONFIG_FILE", os.DevNull)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	return env
}

// testConfig is an observer that polls often. No test using it waits for a
// lease or a claim to lapse (each worker stops cleanly, releasing its
// leases), so both last long enough that a stalled worker (GC pause, CPU
// starvation on a busy machine) keeps them: with a 3 s lease a renewal late
// by a second passed the fence, and a worker could record an outcome after
// its lease had lapsed. Renewals stay frequent.
func testConfig(id, stream string) Config {
	return Config{
		ID: id, StreamName: stream, Region: "us-east-1", MaxRecords: 100,
		InitialPosition:   PositionTrimHorizon,
		MaxInFlight:       16,
		RetryBudget:       time.Minute,
		Idempotency:       Idempotency{Enabled: true, TableName: id + "-commands", Retention: 24 * time.Hour, ClaimTimeout: 30 * time.Second},
		ShardSyncInterval: 300 * time.Millisecond, IdleBetweenReads: 250 * time.Millisecond,
		LeaseDuration: 30 * time.Second, LeaseRefresh: time.Second, ParentShardPoll: 500 * time.Millisecond,
	}
}

type collector struct {
	mu   sync.Mutex
	outs []command.Outcome
}

func (c *collector) add(o command.Outcome) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.outs = append(c.outs, o)
}

func (c *collector) snapshot() []command.Outcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]command.Outcome(nil), c.outs...)
}

func (c *collector) waitFor(t *testing.T, n int, timeout time.Duration) []command.Outcome {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		outs := c.snapshot()
		if len(outs) >= n {
			return outs
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s: %d of %d outcomes", timeout, len(outs), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// hashKeyOfShard returns an explicit hash key inside shard i of n evenly
// split shards, so a test can put a record on every shard.
func hashKeyOfShard(i, n int) string {
	span := new(big.Int).Lsh(big.NewInt(1), 128)
	span.Div(span, big.NewInt(int64(n)))
	k := new(big.Int).Mul(span, big.NewInt(int64(i)))
	return k.Add(k, big.NewInt(1)).String()
}

func putOnEveryShard(t *testing.T, kin *kds.Client, stream string, shards int, first, count int, text string) {
	t.Helper()
	for n := first; n < first+count; n++ {
		shard := n % shards
		_, err := kin.PutRecord(t.Context(), &kds.PutRecordInput{
			StreamName:      aws.String(stream),
			PartitionKey:    aws.String(fmt.Sprintf("key-%d", n)),
			ExplicitHashKey: aws.String(hashKeyOfShard(shard, shards)),
			Data:            slackRecord(fmt.Sprint(n), fmt.Sprintf("%s %d", text, n)).Data,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func startObserver(t *testing.T, cfg Config, col *collector) (stop func() error) {
	t.Helper()
	return runObserver(t, cfg, &scripted{}, Options{OnOutcome: col.add})
}

// runObserver runs an observer whose one responder (module testslack) is
// resp until stop is called or the test ends. opts.Logger defaults to one on
// testLogHandler.
func runObserver(t *testing.T, cfg Config, resp responders.Responder, opts Options) (stop func() error) {
	t.Helper()
	d := responders.NewDispatcher(nil)
	d.Replace(map[string]responders.Enabled{"testslack": {ID: "slack", Module: "testslack", Responder: resp}})
	if opts.Logger == nil {
		opts.Logger = slog.New(testLogHandler())
	}
	o := New(cfg, d, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				err = fmt.Errorf("observer did not stop within 20s")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// testLogHandler discards the observer's log, or shows it on stderr with -v.
func testLogHandler() slog.Handler {
	if testing.Verbose() {
		return slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
	}
	return slog.NewTextHandler(io.Discard, nil)
}

func TestIntegrationWorkerConsumesEveryShard(t *testing.T) {
	env := useEmulators(t)
	stream := env.NewStream(t, "consume", 4)
	id := emulator.UniqueName(t, "obs")
	kin := env.Kinesis(t)
	putOnEveryShard(t, kin, stream, 4, 0, 40, "before start")

	col := &collector{}
	start := time.Now()
	stop := startObserver(t, testConfig(id, stream), col)
	putOnEveryShard(t, kin, stream, 4, 40, 20, "while running")
	outs := col.waitFor(t, 60, 60*time.Second)
	t.Logf("60 records from 4 shards in %s", time.Since(start).Round(time.Millisecond))

	shards := map[string]int{}
	seen := map[string]bool{}
	for _, o := range outs {
		if o.Verdict != verdict.Executed {
			t.Errorf("record %s: %v %v", o.Sequence, o.Verdict, o.Err)
		}
		shards[o.Shard]++
		if seen[o.CommandID] {
			t.Errorf("command %s ran twice", o.CommandID)
		}
		seen[o.CommandID] = true
	}
	if len(shards) != 4 {
		t.Errorf("records came from %d shards, want 4: %v", len(shards), shards)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}

	// The lease table is named after the observer id and, after a clean stop,
	// every shard's checkpoint is its last record with no owner left.
	items := scanLeases(t, env, id)
	var shardRows []string
	for _, it := range items {
		sid := attr(it, "ShardID")
		if !strings.HasPrefix(sid, "shardId-") { // the table's own metadata row
			continue
		}
		shardRows = append(shardRows, sid)
		if attr(it, "Checkpoint") == "" {
			t.Errorf("shard %s has no checkpoint after processing its records: %v", sid, it)
		}
		if owner := attr(it, "AssignedTo"); owner != "" {
			t.Errorf("shard %s still owned by %s after a clean stop", sid, owner)
		}
	}
	sort.Strings(shardRows)
	if len(shardRows) != 4 {
		t.Errorf("lease rows %v, want 4 shards", shardRows)
	}
}

func TestIntegrationRestartResumesFromCheckpoint(t *testing.T) {
	env := useEmulators(t)
	stream := env.NewStream(t, "resume", 2)
	id := emulator.UniqueName(t, "obs")
	kin := env.Kinesis(t)
	putOnEveryShard(t, kin, stream, 2, 0, 10, "first")
	col := &collector{}
	stop := startObserver(t, testConfig(id, stream), col)
	col.waitFor(t, 10, 60*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	putOnEveryShard(t, kin, stream, 2, 10, 6, "second")
	col2 := &collector{}
	stop2 := startObserver(t, testConfig(id, stream), col2)
	outs := col2.waitFor(t, 6, 60*time.Second)
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	if got := len(col2.snapshot()); got != 6 {
		t.Errorf("after a restart %d records ran, want only the 6 new ones: %+v", got, outs)
	}
}

func TestIntegrationAtTimestamp(t *testing.T) {
	env := useEmulators(t)
	stream := env.NewStream(t, "atts", 4)
	id := emulator.UniqueName(t, "obs")
	kin := env.Kinesis(t)
	putOnEveryShard(t, kin, stream, 4, 0, 8, "old")
	// Arrival timestamps have millisecond precision; keep both batches well
	// apart from the chosen instant.
	time.Sleep(1100 * time.Millisecond)
	from := time.Now()
	time.Sleep(1100 * time.Millisecond)
	putOnEveryShard(t, kin, stream, 4, 100, 8, "new")

	cfg := testConfig(id, stream)
	cfg.InitialPosition, cfg.Timestamp = PositionAtTimestamp, from
	col := &collector{}
	stop := startObserver(t, cfg, col)
	col.waitFor(t, 8, 60*time.Second)
	// Give the worker a moment to (wrongly) deliver older records too.
	time.Sleep(time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, o := range col.snapshot() {
		var n int
		fmt.Sscan(o.Sequence, &n)
		if o.CommandID < "00000000-0000-4000-8000-000000000100" {
			t.Errorf("record from before the timestamp ran: %+v", o)
		}
	}
	if got := len(col.snapshot()); got != 8 {
		t.Errorf("%d records ran, want the 8 after the timestamp", got)
	}
}

func scanLeases(t *testing.T, env emulator.Env, table string) []map[string]ddbtypes.AttributeValue {
	t.Helper()
	out, err := env.DynamoDB(t).Scan(t.Context(), &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatalf("lease table %q: %v", table, err)
	}
	return out.Items
}

func attr(item map[string]ddbtypes.AttributeValue, name string) string {
	if s, ok := item[name].(*ddbtypes.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}

// LATEST means "from this observer's first start", even when the lease table
// was created ahead of time (infrastructure as code), and a restart before
// any checkpoint keeps that start.
func TestIntegrationLatestOnPrecreatedLeaseTable(t *testing.T) {
	env := useEmulators(t)
	stream := env.NewStream(t, "latest", 2)
	id := emulator.UniqueName(t, "obs")
	kin := env.Kinesis(t)
	db := env.DynamoDB(t)
	if _, err := db.CreateTable(t.Context(), &dynamodb.CreateTableInput{
		TableName:            aws.String(id),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("ShardID"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("ShardID"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	}); err != nil {
		t.Fatalf("pre-create lease table: %v", err)
	}
	putOnEveryShard(t, kin, stream, 2, 0, 6, "before the first start")
	// Arrival timestamps have millisecond precision: keep the first start
	// clear of the old records.
	time.Sleep(1100 * time.Millisecond)

	cfg := testConfig(id, stream)
	cfg.InitialPosition = PositionLatest
	col := &collector{}
	stop := startObserver(t, cfg, col)
	started := waitForStart(t, env, id)
	// Stopped once it reads both shards (a stop during the start would
	// only be a failed start), before any record after the start exists.
	waitForLeases(t, env, id, 2)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	putOnEveryShard(t, kin, stream, 2, 100, 4, "between the first start and a restart")

	col2 := &collector{}
	stop2 := startObserver(t, cfg, col2)
	putOnEveryShard(t, kin, stream, 2, 200, 4, "after the restart")
	col2.waitFor(t, 8, 60*time.Second)
	// Stopping drains what was handed over; per-shard order means an old
	// record would have been handed over before the newer ones.
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	if again := waitForStart(t, env, id); !again.Equal(started) {
		t.Errorf("first start moved from %v to %v on a restart", started, again)
	}
	outs := append(col.snapshot(), col2.snapshot()...)
	for _, o := range outs {
		if o.CommandID < "00000000-0000-4000-8000-000000000100" {
			t.Errorf("record from before the first start ran: %+v", o)
		}
	}
	if len(outs) != 8 {
		t.Errorf("%d records ran, want the 8 written after the first start: %+v", len(outs), outs)
	}
}

// waitForStart returns the first start recorded in an observer's lease table.
func waitForStart(t *testing.T, env emulator.Env, table string) time.Time {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, it := range scanLeases(t, env, table) {
			if attr(it, "ShardID") != leases.MetadataKey || attr(it, "StartedAt") == "" {
				continue
			}
			ts, err := time.Parse(time.RFC3339Nano, attr(it, "StartedAt"))
			if err != nil {
				t.Fatalf("StartedAt: %v", err)
			}
			return ts
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease table %q: no first start recorded within 30s", table)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitForLeases waits until n shard leases of an observer's table are held.
func waitForLeases(t *testing.T, env emulator.Env, table string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		held := 0
		for _, it := range scanLeases(t, env, table) {
			if strings.HasPrefix(attr(it, "ShardID"), "shardId-") && attr(it, "AssignedTo") != "" {
				held++
			}
		}
		if held >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease table %q: %d of %d leases held after 60s", table, held, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
