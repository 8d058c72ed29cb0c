package leases

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kintypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sauna-io/sauna/observer/ddbtable/ddbfake"
)

// fakeDB answers each DynamoDB operation with its function field; a nil field
// fails the test if the operation is called. Every call must carry a
// deadline no later than the configured CallTimeout.
type fakeDB struct {
	t           *testing.T
	callTimeout time.Duration

	describeTable func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error)
	createTable   func(*dynamodb.CreateTableInput) (*dynamodb.CreateTableOutput, error)
	getItem       func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error)
	putItem       func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error)
	updateItem    func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error)
	deleteItem    func(*dynamodb.DeleteItemInput) (*dynamodb.DeleteItemOutput, error)
	scan          func(*dynamodb.ScanInput) (*dynamodb.ScanOutput, error)

	calls ddbfake.Calls
}

func (f *fakeDB) enter(ctx context.Context, op string, missing bool) error {
	f.t.Helper()
	return f.calls.Enter(f.t, ctx, op, f.callTimeout, missing)
}

func (f *fakeDB) ops() []string { return f.calls.Ops() }

func (f *fakeDB) resetOps() { f.calls.Reset() }

func (f *fakeDB) DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	return ddbfake.Answer(ctx, f.enter, "DescribeTable", f.describeTable, in)
}

func (f *fakeDB) CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error) {
	return ddbfake.Answer(ctx, f.enter, "CreateTable", f.createTable, in)
}

func (f *fakeDB) GetItem(ctx context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	if err := f.enter(ctx, "GetItem", f.getItem == nil); err != nil {
		return nil, err
	}
	if !aws.ToBool(in.ConsistentRead) {
		f.t.Errorf("GetItem %v without ConsistentRead", in.Key)
	}
	return f.getItem(in)
}

func (f *fakeDB) PutItem(ctx context.Context, in *dynamodb.PutItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return ddbfake.Answer(ctx, f.enter, "PutItem", f.putItem, in)
}

func (f *fakeDB) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	return ddbfake.Answer(ctx, f.enter, "UpdateItem", f.updateItem, in)
}

func (f *fakeDB) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return ddbfake.Answer(ctx, f.enter, "DeleteItem", f.deleteItem, in)
}

func (f *fakeDB) Scan(ctx context.Context, in *dynamodb.ScanInput, _ ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	return ddbfake.Answer(ctx, f.enter, "Scan", f.scan, in)
}

// fakeKinesis answers ListShards with listShards.
type fakeKinesis struct {
	t          *testing.T
	listShards func(*kinesis.ListShardsInput) (*kinesis.ListShardsOutput, error)

	mu    sync.Mutex
	calls int
}

func (f *fakeKinesis) ListShards(ctx context.Context, in *kinesis.ListShardsInput, _ ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		f.t.Errorf("ListShards without a deadline")
	}
	if f.listShards == nil {
		f.t.Errorf("unexpected ListShards")
		return nil, ddbfake.ErrUnexpected
	}
	return f.listShards(in)
}

func (f *fakeKinesis) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// shardList answers ListShards in one page with the given shards, written
// as "id" or "id<parent" or "id<parent+adjacent".
func shardList(specs ...string) func(*kinesis.ListShardsInput) (*kinesis.ListShardsOutput, error) {
	shards := make([]kintypes.Shard, 0, len(specs))
	for _, sp := range specs {
		shards = append(shards, parseShardSpec(sp))
	}
	return func(*kinesis.ListShardsInput) (*kinesis.ListShardsOutput, error) {
		return &kinesis.ListShardsOutput{Shards: shards}, nil
	}
}

func parseShardSpec(sp string) kintypes.Shard {
	var sh kintypes.Shard
	id, parents, hasParents := strings.Cut(sp, "<")
	sh.ShardId = aws.String(id)
	if hasParents {
		p, adj, hasAdj := strings.Cut(parents, "+")
		sh.ParentShardId = aws.String(p)
		if hasAdj {
			sh.AdjacentParentShardId = aws.String(adj)
		}
	}
	return sh
}

var (
	fakeNow      = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	fakeLease    = 2 * time.Second
	fakeCallTime = 3 * time.Second
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type fixture struct {
	tbl   *Table
	db    *fakeDB
	kin   *fakeKinesis
	clock *fakeClock
}

// newFixture returns a Table (worker "me", table "obs", stream "stream-a")
// over fresh fakes and a fixed clock.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		db:    &fakeDB{t: t, callTimeout: fakeCallTime},
		kin:   &fakeKinesis{t: t},
		clock: &fakeClock{now: fakeNow},
	}
	f.tbl = New(f.db, f.kin, Config{
		TableName:     "obs",
		StreamName:    "stream-a",
		WorkerID:      "me",
		LeaseDuration: fakeLease,
		CallTimeout:   fakeCallTime,
		Logger:        testLogger(t),
	})
	f.tbl.now = f.clock.Now
	f.tbl.waitMinDelay, f.tbl.waitMaxDelay = time.Millisecond, 5*time.Millisecond
	return f
}

// items is a map of stored items, keyed by ShardID, with string attributes.
type items map[string]map[string]string

func (it items) get(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
	id, _ := str(in.Key, attrShardID)
	return &dynamodb.GetItemOutput{Item: toItem(it[id])}, nil
}

func toItem(m map[string]string) map[string]types.AttributeValue {
	if m == nil {
		return nil
	}
	item := make(map[string]types.AttributeValue, len(m))
	for k, v := range m {
		item[k] = s(v)
	}
	return item
}

func ccf() error {
	return &types.ConditionalCheckFailedException{Message: aws.String("The conditional request failed")}
}

// update is an UpdateItem input reduced to what the tests compare.
type update struct {
	Key, Update, Condition string
	Names, Values          map[string]string
	ReturnValues           types.ReturnValue
}

func reduce(in *dynamodb.UpdateItemInput) update {
	key, _ := str(in.Key, attrShardID)
	u := update{
		Key:          key,
		Update:       aws.ToString(in.UpdateExpression),
		Condition:    aws.ToString(in.ConditionExpression),
		Names:        in.ExpressionAttributeNames,
		ReturnValues: in.ReturnValues,
	}
	if len(in.ExpressionAttributeValues) > 0 {
		u.Values = flatten(in.ExpressionAttributeValues)
	}
	return u
}

// names is the placeholder map for the given attributes.
func names(attrs ...string) map[string]string {
	m := make(map[string]string, len(attrs))
	for _, a := range attrs {
		m["#"+a] = a
	}
	return m
}

// testLogger sends the Table's log to the test's log, shown for failures and
// with -v.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
