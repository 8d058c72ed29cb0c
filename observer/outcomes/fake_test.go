package outcomes

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/sauna-io/sauna/observer/ddbtable/ddbfake"
)

// fakeDB answers each DynamoDB operation with its function field; a nil field
// fails the test if the operation is called. Every call must carry a
// deadline no later than the configured CallTimeout.
type fakeDB struct {
	t           *testing.T
	callTimeout time.Duration

	describeTable      func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error)
	createTable        func(*dynamodb.CreateTableInput) (*dynamodb.CreateTableOutput, error)
	describeTimeToLive func(*dynamodb.DescribeTimeToLiveInput) (*dynamodb.DescribeTimeToLiveOutput, error)
	updateTimeToLive   func(*dynamodb.UpdateTimeToLiveInput) (*dynamodb.UpdateTimeToLiveOutput, error)
	getItem            func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error)
	putItem            func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error)
	updateItem         func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error)
	updateTable        func(*dynamodb.UpdateTableInput) (*dynamodb.UpdateTableOutput, error)
	query              func(*dynamodb.QueryInput) (*dynamodb.QueryOutput, error)

	calls ddbfake.Calls
}

func (f *fakeDB) enter(ctx context.Context, op string, missing bool) error {
	f.t.Helper()
	return f.calls.Enter(f.t, ctx, op, f.callTimeout, missing)
}

func (f *fakeDB) ops() []string { return f.calls.Ops() }

func (f *fakeDB) DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	return ddbfake.Answer(ctx, f.enter, "DescribeTable", f.describeTable, in)
}

func (f *fakeDB) CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error) {
	return ddbfake.Answer(ctx, f.enter, "CreateTable", f.createTable, in)
}

func (f *fakeDB) DescribeTimeToLive(ctx context.Context, in *dynamodb.DescribeTimeToLiveInput, _ ...func(*dynamodb.Options)) (*dynamodb.DescribeTimeToLiveOutput, error) {
	return ddbfake.Answer(ctx, f.enter, "DescribeTimeToLive", f.describeTimeToLive, in)
}

func (f *fakeDB) UpdateTimeToLive(ctx context.Context, in *dynamodb.UpdateTimeToLiveInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error) {
	return ddbfake.Answer(ctx, f.enter, "UpdateTimeToLive", f.updateTimeToLive, in)
}

func (f *fakeDB) GetItem(ctx context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	return ddbfake.Answer(ctx, f.enter, "GetItem", f.getItem, in)
}

func (f *fakeDB) PutItem(ctx context.Context, in *dynamodb.PutItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return ddbfake.Answer(ctx, f.enter, "PutItem", f.putItem, in)
}

func (f *fakeDB) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	return ddbfake.Answer(ctx, f.enter, "UpdateItem", f.updateItem, in)
}

func (f *fakeDB) UpdateTable(ctx context.Context, in *dynamodb.UpdateTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateTableOutput, error) {
	return ddbfake.Answer(ctx, f.enter, "UpdateTable", f.updateTable, in)
}

func (f *fakeDB) Query(ctx context.Context, in *dynamodb.QueryInput, _ ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	return ddbfake.Answer(ctx, f.enter, "Query", f.query, in)
}

// clock is a settable time source shared by a test and its Tables.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock {
	// Millisecond precision, like the stored times, so that values read back
	// compare equal.
	return &clock{now: time.Now().UTC().Truncate(time.Millisecond)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// testDigest stands for a command's digest: to the table it is opaque.
const testDigest = "d1"

func ident(commandID string) Identity { return Identity{CommandID: commandID, Digest: testDigest} }
