package leases

import (
	"context"
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
	"github.com/sauna-io/sauna/observer/internal/testclock"
	"github.com/sauna-io/sauna/observer/internal/testlog"
)

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

type fixture struct {
	tbl   *Table
	db    *ddbfake.DB
	kin   *fakeKinesis
	clock *testclock.Clock
}

// newFixture returns a Table (worker "me", table "obs", stream "stream-a")
// over fresh fakes and a fixed clock.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		db:    ddbfake.New(t, fakeCallTime),
		kin:   &fakeKinesis{t: t},
		clock: testclock.New(fakeNow),
	}
	f.db.ConsistentReads = true
	f.tbl = New(f.db, f.kin, Config{
		TableName:     "obs",
		StreamName:    "stream-a",
		WorkerID:      "me",
		LeaseDuration: fakeLease,
		CallTimeout:   fakeCallTime,
		Logger:        testlog.Logger(t),
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
