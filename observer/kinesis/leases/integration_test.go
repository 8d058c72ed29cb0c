package leases

import (
	"context"
	"errors"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/google/go-cmp/cmp"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	par "github.com/vmware/vmware-go-kcl-v2/clientlibrary/partition"

	"github.com/sauna-io/sauna/observer/ddbtable"
	"github.com/sauna-io/sauna/observer/internal/testclock"
	"github.com/sauna-io/sauna/observer/internal/testlog"
	"github.com/sauna-io/sauna/observer/kinesis/emulator"
)

// These tests run against dynalite and kinesalite (scripts/test.sh, or
// emulators.sh start + env) and skip without them.

const itTimeout = 15 * time.Second

type itEnv struct {
	env emulator.Env
	db  *dynamodb.Client
	kin *kinesis.Client
}

func newITEnv(t *testing.T) itEnv {
	t.Helper()
	env := emulator.Require(t)
	return itEnv{env: env, db: env.DynamoDB(t), kin: env.Kinesis(t)}
}

// table returns an initialised Table; the DynamoDB table is deleted when the
// test ends.
func (e itEnv) table(t *testing.T, name, stream, worker string, lease time.Duration) *Table {
	t.Helper()
	tbl := e.newTable(t, name, stream, worker, lease)
	if err := tbl.Init(); err != nil {
		t.Fatalf("Init: %v", err)
	}
	e.dropOnCleanup(t, name)
	return tbl
}

// streamAndTable creates a stream of the given shards and picks a lease table
// name for it; each test gets its own pair.
func (e itEnv) streamAndTable(t *testing.T, shards int32) (stream, name string) {
	t.Helper()
	return e.env.NewStream(t, "s", shards), emulator.UniqueName(t, "leases")
}

func (e itEnv) newTable(t *testing.T, name, stream, worker string, lease time.Duration) *Table {
	return New(e.db, e.kin, Config{
		TableName:     name,
		StreamName:    stream,
		WorkerID:      worker,
		LeaseDuration: lease,
		CallTimeout:   5 * time.Second,
		Logger:        testlog.Logger(t).With("worker", worker),
	})
}

func (e itEnv) dropOnCleanup(t *testing.T, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = e.db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)})
	})
}

func (e itEnv) item(t *testing.T, table, shardID string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), itTimeout)
	defer cancel()
	out, err := e.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]types.AttributeValue{attrShardID: s(shardID)},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatalf("GetItem %s: %v", shardID, err)
	}
	return flatten(out.Item)
}

func flatten(item map[string]types.AttributeValue) map[string]string {
	if len(item) == 0 {
		return nil
	}
	m := make(map[string]string, len(item))
	for k, v := range item {
		if sv, ok := v.(*types.AttributeValueMemberS); ok {
			m[k] = sv.Value
		} else {
			m[k] = "<non-string>"
		}
	}
	return m
}

func newShard(id, parent string) *par.ShardStatus {
	return &par.ShardStatus{ID: id, ParentShardId: parent, Mux: &sync.RWMutex{}}
}

// take acquires the way the KCL's event loop does: FetchCheckpoint, then
// GetLease.
func take(tbl *Table, shard *par.ShardStatus) error {
	if err := tbl.FetchCheckpoint(shard); err != nil && err != checkpoint.ErrSequenceIDNotFound {
		return err
	}
	return tbl.GetLease(shard, tbl.cfg.WorkerID)
}

func checkpointAt(tbl *Table, shard *par.ShardStatus, seq string) error {
	shard.SetCheckpoint(seq)
	return tbl.CheckpointSequence(shard)
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestIntegrationInitCreatesOnDemandTable(t *testing.T) {
	e := newITEnv(t)
	name := emulator.UniqueName(t, "leases")
	tbl := e.table(t, name, "stream-a", "w1", 10*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), itTimeout)
	defer cancel()
	out, err := e.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
	if err != nil {
		t.Fatalf("DescribeTable: %v", err)
	}
	d := out.Table
	if d.TableStatus != types.TableStatusActive {
		t.Errorf("status %s, want ACTIVE", d.TableStatus)
	}
	if d.BillingModeSummary == nil || d.BillingModeSummary.BillingMode != types.BillingModePayPerRequest {
		t.Errorf("billing mode summary %+v, want PAY_PER_REQUEST", d.BillingModeSummary)
	}
	if err := ddbtable.CheckHashKey(d, attrShardID); err != nil {
		t.Error(err)
	}
	started := tbl.Started()
	if started.IsZero() || started.Before(aws.ToTime(d.CreationDateTime).Add(-time.Minute)) {
		t.Errorf("Started() = %v, want this start (table created %v)", started, aws.ToTime(d.CreationDateTime))
	}
	want := map[string]string{attrShardID: MetadataKey, attrStream: "stream-a", attrStarted: formatTimeout(started)}
	if diff := cmp.Diff(want, e.item(t, name, MetadataKey)); diff != "" {
		t.Errorf("metadata item (-want +got):\n%s", diff)
	}

	// Idempotent, and the epoch is stable across restarts.
	again := e.newTable(t, name, "stream-a", "w2", 10*time.Second)
	again.now = func() time.Time { return started.Add(time.Hour) }
	if err := again.Init(); err != nil {
		t.Fatalf("second Init: %v", err)
	}
	if err := again.Init(); err != nil {
		t.Fatalf("third Init: %v", err)
	}
	if !again.Started().Equal(started) {
		t.Errorf("Started() after re-Init = %v, want %v", again.Started(), started)
	}
}

// A table created ahead of time (infrastructure as code) holds no metadata
// item: the first start is recorded, not the table's creation; a table bound
// by a version that recorded no start keeps its creation as the epoch.
func TestIntegrationStartedOnPrecreatedTable(t *testing.T) {
	e := newITEnv(t)
	name := emulator.UniqueName(t, "leases")
	e.dropOnCleanup(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), itTimeout)
	defer cancel()
	if _, err := e.db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(attrShardID), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(attrShardID), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	}); err != nil {
		t.Fatalf("CreateTable: %v", err)
	}
	tbl := e.newTable(t, name, "stream-a", "w1", 10*time.Second)
	first := time.Now().Add(time.Hour).UTC() // far from the table's creation
	tbl.now = func() time.Time { return first }
	if err := tbl.Init(); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if !tbl.Started().Equal(first) {
		t.Errorf("Started() = %v, want the first start %v", tbl.Started(), first)
	}

	// An item as bound before starts were recorded.
	if _, err := e.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(name),
		Item:      map[string]types.AttributeValue{attrShardID: s(MetadataKey), attrStream: s("stream-a")},
	}); err != nil {
		t.Fatalf("PutItem: %v", err)
	}
	out, err := e.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
	if err != nil {
		t.Fatalf("DescribeTable: %v", err)
	}
	legacy := e.newTable(t, name, "stream-a", "w2", 10*time.Second)
	if err := legacy.Init(); err != nil {
		t.Fatalf("Init of a legacy binding: %v", err)
	}
	if created := aws.ToTime(out.Table.CreationDateTime); !legacy.Started().Equal(created) {
		t.Errorf("legacy Started() = %v, want the table's creation %v", legacy.Started(), created)
	}
	if got := e.item(t, name, MetadataKey)[attrStarted]; got != formatTimeout(legacy.Started()) {
		t.Errorf("recorded start %q, want %q", got, formatTimeout(legacy.Started()))
	}
}

func TestIntegrationConcurrentInit(t *testing.T) {
	e := newITEnv(t)
	name := emulator.UniqueName(t, "leases")
	e.dropOnCleanup(t, name)
	const n = 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.newTable(t, name, "stream-a", "w", 10*time.Second).Init()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Init %d: %v", i, err)
		}
	}
}

func TestIntegrationStreamMismatch(t *testing.T) {
	e := newITEnv(t)
	name := emulator.UniqueName(t, "leases")
	e.table(t, name, "stream-a", "w1", 10*time.Second)

	err := e.newTable(t, name, "stream-b", "w1", 10*time.Second).Init()
	if !errors.Is(err, ErrStreamMismatch) {
		t.Fatalf("Init with another stream: %v, want ErrStreamMismatch", err)
	}
	want := `lease table "` + name + `" belongs to stream "stream-a", not "stream-b": use another observer id or delete the table`
	if err.Error() != want {
		t.Errorf("error = %q\nwant    %q", err, want)
	}
	var sme *StreamMismatchError
	if !errors.As(err, &sme) || sme.Bound != "stream-a" || sme.Want != "stream-b" || sme.Table != name {
		t.Errorf("error %#v does not carry table and both streams", err)
	}
}

// rivals returns two workers of one new lease table over a one-shard
// stream, A and B. B reads the time from clock, which stands still until
// the test moves it: A's lease expires for B when the test says so, not
// when the machine gets round to it, and A's own lease (by the real clock)
// is long enough that no stall lets it run out, so that what refuses A's
// late writes is the table's fence alone.
func (e itEnv) rivals(t *testing.T) (name string, a, b *Table, clock *testclock.Clock) {
	t.Helper()
	stream, name := e.streamAndTable(t, 1)
	a = e.table(t, name, stream, "worker-a", time.Minute)
	b = e.newTable(t, name, stream, "worker-b", 10*time.Second)
	clock = testclock.New(time.Now())
	b.now = clock.Now
	if err := b.Init(); err != nil {
		t.Fatal(err)
	}
	return name, a, b, clock
}

// T5: a worker whose lease expired and was taken over cannot move the
// checkpoint any more.
func TestIntegrationFencing(t *testing.T) {
	e := newITEnv(t)
	name, a, b, clock := e.rivals(t)
	const id = "shardId-000000000000"

	shardA := newShard(id, "")
	if err := take(a, shardA); err != nil {
		t.Fatalf("A acquires: %v", err)
	}
	lostA := a.Lost(id)
	if err := checkpointAt(a, shardA, "100"); err != nil {
		t.Fatalf("A checkpoints 100: %v", err)
	}

	// B gets the lease once A's has expired by B's clock (A does not renew).
	shardB := newShard(id, "")
	if err := take(b, shardB); !errors.Is(err, ErrNotAcquired) {
		t.Fatalf("B acquires a live lease: %v, want ErrNotAcquired", err)
	}
	clock.Add(time.Hour)
	if err := take(b, shardB); err != nil {
		t.Fatalf("B acquires the expired lease: %v", err)
	}
	if got := shardB.GetCheckpoint(); got != "100" {
		t.Errorf("B resumes from %q, want 100", got)
	}
	if err := checkpointAt(b, shardB, "300"); err != nil {
		t.Fatalf("B checkpoints 300: %v", err)
	}
	before := e.item(t, name, id)

	err := checkpointAt(a, shardA, "200")
	if !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("A checkpoints after takeover: %v, want ErrLeaseLost", err)
	}
	if !isClosed(lostA) {
		t.Error("A's Lost channel is open after a refused checkpoint")
	}
	if got := shardA.GetCheckpoint(); got != "100" {
		t.Errorf("A's in-memory checkpoint = %q, want the last stored 100", got)
	}
	if diff := cmp.Diff(before, e.item(t, name, id)); diff != "" {
		t.Errorf("row changed by the refused checkpoint (-before +after):\n%s", diff)
	}
	if before[attrOwner] != "worker-b" || before[attrCheckpoint] != "300" {
		t.Errorf("row %v, want owner worker-b at 300", before)
	}
	// A's renewal fails the same way, and its release leaves B's lease alone.
	if err := a.GetLease(shardA, "worker-a"); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("A renews after takeover: %v, want ErrLeaseLost", err)
	}
	shardA.SetLeaseOwner("")
	if err := a.RemoveLeaseOwner(id); err != nil {
		t.Errorf("A releases: %v", err)
	}
	if diff := cmp.Diff(before, e.item(t, name, id)); diff != "" {
		t.Errorf("row changed by A's release (-before +after):\n%s", diff)
	}
	if isClosed(b.Lost(id)) {
		t.Error("B's Lost channel closed")
	}
}

func TestIntegrationRenewalKeepsCheckpoint(t *testing.T) {
	e := newITEnv(t)
	stream, name := e.streamAndTable(t, 1)
	tbl := e.table(t, name, stream, "worker-a", 10*time.Second)
	const id = "shardId-000000000000"
	shard := newShard(id, "")
	if err := take(tbl, shard); err != nil {
		t.Fatal(err)
	}
	if err := checkpointAt(tbl, shard, "100"); err != nil {
		t.Fatal(err)
	}
	// A checkpoint that reaches the table while the renewal is under way, as
	// with the KCL's renewal goroutine: memory lags the table.
	ctx, cancel := context.WithTimeout(context.Background(), itTimeout)
	defer cancel()
	if _, err := e.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(name),
		Key:                       map[string]types.AttributeValue{attrShardID: s(id)},
		UpdateExpression:          aws.String("SET Checkpoint = :c"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":c": s("150")},
	}); err != nil {
		t.Fatal(err)
	}
	before := e.item(t, name, id)
	if err := tbl.GetLease(shard, "worker-a"); err != nil {
		t.Fatalf("renew: %v", err)
	}
	after := e.item(t, name, id)
	if after[attrCheckpoint] != "150" {
		t.Errorf("checkpoint after renewal = %q, want 150", after[attrCheckpoint])
	}
	if after[attrTimeout] == before[attrTimeout] {
		t.Errorf("LeaseTimeout not extended: %s", after[attrTimeout])
	}
	if got, _ := tbl.leaseDeadline(id); got != after[attrTimeout] {
		t.Errorf("held timeout %q, stored %q", got, after[attrTimeout])
	}
}

func TestIntegrationFetchCheckpoint(t *testing.T) {
	e := newITEnv(t)
	stream, name := e.streamAndTable(t, 1)
	tbl := e.table(t, name, stream, "worker-a", 10*time.Second)
	other := e.newTable(t, name, stream, "worker-b", 10*time.Second)
	const id = "shardId-000000000000"

	// No item.
	probe := newShard(id, "")
	probe.Checkpoint = "stale"
	if err := other.FetchCheckpoint(probe); err != checkpoint.ErrSequenceIDNotFound {
		t.Fatalf("missing item: %v, want ErrSequenceIDNotFound", err)
	}
	if probe.Checkpoint != "" || probe.AssignedTo != "" {
		t.Errorf("missing item left %+v", probe)
	}

	// Item without a checkpoint.
	shard := newShard(id, "")
	if err := take(tbl, shard); err != nil {
		t.Fatal(err)
	}
	if err := other.FetchCheckpoint(probe); err != checkpoint.ErrSequenceIDNotFound {
		t.Fatalf("item without checkpoint: %v, want ErrSequenceIDNotFound", err)
	}
	if probe.AssignedTo != "worker-a" || probe.LeaseTimeout.IsZero() {
		t.Errorf("item without checkpoint: owner %q timeout %v", probe.AssignedTo, probe.LeaseTimeout)
	}

	// Item with a checkpoint.
	if err := checkpointAt(tbl, shard, "42"); err != nil {
		t.Fatal(err)
	}
	if err := other.FetchCheckpoint(probe); err != nil {
		t.Fatalf("item with checkpoint: %v", err)
	}
	stored := e.item(t, name, id)
	if probe.Checkpoint != "42" || probe.AssignedTo != "worker-a" || formatTimeout(probe.LeaseTimeout) != stored[attrTimeout] {
		t.Errorf("fetched %q/%q/%s, stored %v", probe.Checkpoint, probe.AssignedTo, formatTimeout(probe.LeaseTimeout), stored)
	}

	// Any other failure is an error of its own.
	gone := e.newTable(t, emulator.UniqueName(t, "missing"), stream, "worker-b", 10*time.Second)
	err := gone.FetchCheckpoint(newShard(id, ""))
	if err == nil || err == checkpoint.ErrSequenceIDNotFound || errors.Is(err, checkpoint.ErrSequenceIDNotFound) {
		t.Errorf("fetch from a missing table: %v, want a real error", err)
	}
}

func TestIntegrationReleaseAndReacquire(t *testing.T) {
	e := newITEnv(t)
	stream, name := e.streamAndTable(t, 1)
	a := e.table(t, name, stream, "worker-a", 10*time.Second)
	b := e.newTable(t, name, stream, "worker-b", 10*time.Second)
	const id = "shardId-000000000000"

	shardA := newShard(id, "")
	if err := take(a, shardA); err != nil {
		t.Fatal(err)
	}
	lost := a.Lost(id)
	// The KCL's release: clear the owner in memory, then RemoveLeaseOwner.
	shardA.SetLeaseOwner("")
	if err := a.RemoveLeaseOwner(id); err != nil {
		t.Fatal(err)
	}
	if !isClosed(lost) {
		t.Error("Lost open after release")
	}
	if _, ok := e.item(t, name, id)[attrOwner]; ok {
		t.Error("AssignedTo still set after release")
	}
	// A released lease is free at once for anyone.
	if err := take(b, newShard(id, "")); err != nil {
		t.Fatalf("B takes a released lease: %v", err)
	}
}

// B4: a child is refused until its parent, and after a merge also its
// adjacent parent, is at SHARD_END.
func TestIntegrationLineage(t *testing.T) {
	e := newITEnv(t)
	stream, name := e.streamAndTable(t, 1)
	tbl := e.table(t, name, stream, "worker-a", 30*time.Second)
	const parent = "shardId-000000000000"

	// The parent is acquired before the split, so the cached shard list is
	// older than the children.
	parentShard := newShard(parent, "")
	if err := take(tbl, parentShard); err != nil {
		t.Fatalf("acquire parent: %v", err)
	}
	split(t, e.kin, stream, parent)
	children := listChildren(t, e.kin, stream, parent)
	if len(children) != 2 {
		t.Fatalf("children of %s: %v", parent, children)
	}

	child := newShard(children[0], parent)
	waitRefusal(t, tbl, child, "parent shard "+parent+" is not finished")
	if err := checkpointAt(tbl, parentShard, "1"); err != nil {
		t.Fatal(err)
	}
	if err := take(tbl, child); !errors.Is(err, ErrNotAcquired) {
		t.Fatalf("child with a checkpointed parent: %v, want refusal", err)
	}
	if err := checkpointAt(tbl, parentShard, checkpoint.ShardEnd); err != nil {
		t.Fatal(err)
	}
	if err := take(tbl, child); err != nil {
		t.Fatalf("child after parent SHARD_END: %v", err)
	}
	// The child's records are its own: no earlier owner read any.
	if end := tbl.PreviousLeaseEnd(child.ID); !end.IsZero() {
		t.Errorf("child's previous lease ended at %s", end)
	}
	if got := e.item(t, name, child.ID)[attrParent]; got != parent {
		t.Errorf("child's ParentShardId = %q, want %s", got, parent)
	}

	// Merge the two children: the grandchild has a parent and an adjacent
	// parent, and needs both finished.
	merge(t, e.kin, stream, children[0], children[1])
	grand := listChildren(t, e.kin, stream, children[0])
	if len(grand) != 1 {
		t.Fatalf("children of %s: %v", children[0], grand)
	}
	g := newShard(grand[0], children[0])
	if err := checkpointAt(tbl, child, checkpoint.ShardEnd); err != nil {
		t.Fatal(err)
	}
	waitRefusal(t, tbl, g, "parent shard "+children[1]+" is not finished")
	other := newShard(children[1], parent)
	if err := take(tbl, other); err != nil {
		t.Fatalf("second child: %v", err)
	}
	if err := checkpointAt(tbl, other, checkpoint.ShardEnd); err != nil {
		t.Fatal(err)
	}
	if err := take(tbl, g); err != nil {
		t.Fatalf("merged child after both parents SHARD_END: %v", err)
	}
}

// waitRefusal retries acquiring shard until it is refused for reason: the
// table learns of new shards through its cached ListShards.
func waitRefusal(t *testing.T, tbl *Table, shard *par.ShardStatus, reason string) {
	t.Helper()
	deadline := time.Now().Add(itTimeout)
	for {
		err := take(tbl, shard)
		if err == nil {
			t.Fatalf("acquired %s, want refusal %q", shard.ID, reason)
		}
		if !errors.Is(err, ErrNotAcquired) {
			t.Fatalf("acquire %s: %v", shard.ID, err)
		}
		if strings.Contains(err.Error(), reason) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("acquire %s: last refusal %v, want %q", shard.ID, err, reason)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func listAll(t *testing.T, kin *kinesis.Client, stream string) []kinesisShard {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), itTimeout)
	defer cancel()
	out, err := kin.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatalf("ListShards: %v", err)
	}
	var shards []kinesisShard
	for _, sh := range out.Shards {
		shards = append(shards, kinesisShard{
			id:       aws.ToString(sh.ShardId),
			parent:   aws.ToString(sh.ParentShardId),
			adjacent: aws.ToString(sh.AdjacentParentShardId),
			start:    aws.ToString(sh.HashKeyRange.StartingHashKey),
			end:      aws.ToString(sh.HashKeyRange.EndingHashKey),
		})
	}
	return shards
}

type kinesisShard struct{ id, parent, adjacent, start, end string }

func listChildren(t *testing.T, kin *kinesis.Client, stream, parent string) []string {
	var ids []string
	for _, sh := range listAll(t, kin, stream) {
		if sh.parent == parent || sh.adjacent == parent {
			ids = append(ids, sh.id)
		}
	}
	return ids
}

func split(t *testing.T, kin *kinesis.Client, stream, shardID string) {
	t.Helper()
	var mid string
	for _, sh := range listAll(t, kin, stream) {
		if sh.id == shardID {
			lo, _ := new(big.Int).SetString(sh.start, 10)
			hi, _ := new(big.Int).SetString(sh.end, 10)
			mid = new(big.Int).Rsh(new(big.Int).Add(lo, hi), 1).String()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), itTimeout)
	defer cancel()
	if _, err := kin.SplitShard(ctx, &kinesis.SplitShardInput{
		StreamName:         aws.String(stream),
		ShardToSplit:       aws.String(shardID),
		NewStartingHashKey: aws.String(mid),
	}); err != nil {
		t.Fatalf("SplitShard: %v", err)
	}
	waitActive(t, kin, stream)
}

func merge(t *testing.T, kin *kinesis.Client, stream, a, b string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), itTimeout)
	defer cancel()
	if _, err := kin.MergeShards(ctx, &kinesis.MergeShardsInput{
		StreamName:           aws.String(stream),
		ShardToMerge:         aws.String(a),
		AdjacentShardToMerge: aws.String(b),
	}); err != nil {
		t.Fatalf("MergeShards: %v", err)
	}
	waitActive(t, kin, stream)
}

func waitActive(t *testing.T, kin *kinesis.Client, stream string) {
	t.Helper()
	w := kinesis.NewStreamExistsWaiter(kin, func(o *kinesis.StreamExistsWaiterOptions) {
		o.MinDelay = 50 * time.Millisecond
		o.MaxDelay = time.Second
	})
	if err := w.Wait(context.Background(), &kinesis.DescribeStreamInput{StreamName: aws.String(stream)}, itTimeout); err != nil {
		t.Fatalf("wait for stream %s ACTIVE: %v", stream, err)
	}
}

// leaseDeadline is the lease timeout this Table holds for shardID.
func (t *Table) leaseDeadline(shardID string) (string, bool) {
	sl := t.slot(shardID)
	sl.op.Lock()
	defer sl.op.Unlock()
	if l := t.current(sl); l != nil {
		return l.timeout, true
	}
	return "", false
}
