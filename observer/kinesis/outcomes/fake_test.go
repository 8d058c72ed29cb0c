package outcomes

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

var errUnexpected = errors.New("unexpected call")

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

	mu    sync.Mutex
	calls []string
}

func (f *fakeDB) enter(ctx context.Context, op string, missing bool) error {
	f.t.Helper()
	f.mu.Lock()
	f.calls = append(f.calls, op)
	f.mu.Unlock()
	dl, ok := ctx.Deadline()
	if !ok {
		f.t.Errorf("%s without a deadline", op)
	} else if left := time.Until(dl); left > f.callTimeout {
		f.t.Errorf("%s deadline %v away, want at most %v", op, left, f.callTimeout)
	}
	if missing {
		f.t.Errorf("unexpected %s", op)
		return errUnexpected
	}
	return nil
}

func (f *fakeDB) ops() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeDB) DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	if err := f.enter(ctx, "DescribeTable", f.describeTable == nil); err != nil {
		return nil, err
	}
	return f.describeTable(in)
}

func (f *fakeDB) CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error) {
	if err := f.enter(ctx, "CreateTable", f.createTable == nil); err != nil {
		return nil, err
	}
	return f.createTable(in)
}

func (f *fakeDB) DescribeTimeToLive(ctx context.Context, in *dynamodb.DescribeTimeToLiveInput, _ ...func(*dynamodb.Options)) (*dynamodb.DescribeTimeToLiveOutput, error) {
	if err := f.enter(ctx, "DescribeTimeToLive", f.describeTimeToLive == nil); err != nil {
		return nil, err
	}
	return f.describeTimeToLive(in)
}

func (f *fakeDB) UpdateTimeToLive(ctx context.Context, in *dynamodb.UpdateTimeToLiveInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error) {
	if err := f.enter(ctx, "UpdateTimeToLive", f.updateTimeToLive == nil); err != nil {
		return nil, err
	}
	return f.updateTimeToLive(in)
}

func (f *fakeDB) GetItem(ctx context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	if err := f.enter(ctx, "GetItem", f.getItem == nil); err != nil {
		return nil, err
	}
	return f.getItem(in)
}

func (f *fakeDB) PutItem(ctx context.Context, in *dynamodb.PutItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	if err := f.enter(ctx, "PutItem", f.putItem == nil); err != nil {
		return nil, err
	}
	return f.putItem(in)
}

func (f *fakeDB) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	if err := f.enter(ctx, "UpdateItem", f.updateItem == nil); err != nil {
		return nil, err
	}
	return f.updateItem(in)
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
