// Package ddbfake is for tests only: a scripted DynamoDB client for the
// observer's tables. Each operation answers through a function field set by
// the test; the fake checks that every call carries a deadline, records the
// calls in order, and fails the test on a call it gave no answer for.
package ddbfake

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ErrUnexpected is the error of a call the test gave no answer for.
var ErrUnexpected = errors.New("unexpected call")

// DB is a fake *dynamodb.Client. A nil On field fails the test if its
// operation is called. Every call must carry a deadline no further away than
// CallTimeout, since an unbounded call can hang its caller for ever. Set the
// On fields before the code under test runs: they are read without a lock.
type DB struct {
	T           testing.TB
	CallTimeout time.Duration

	// Table, if set, is the table every call must name.
	Table string
	// ConsistentReads makes a GetItem that is not a consistent read fail
	// the test.
	ConsistentReads bool

	OnDescribeTable      func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error)
	OnCreateTable        func(*dynamodb.CreateTableInput) (*dynamodb.CreateTableOutput, error)
	OnUpdateTable        func(*dynamodb.UpdateTableInput) (*dynamodb.UpdateTableOutput, error)
	OnDescribeTimeToLive func(*dynamodb.DescribeTimeToLiveInput) (*dynamodb.DescribeTimeToLiveOutput, error)
	OnUpdateTimeToLive   func(*dynamodb.UpdateTimeToLiveInput) (*dynamodb.UpdateTimeToLiveOutput, error)
	OnGetItem            func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error)
	OnPutItem            func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error)
	OnUpdateItem         func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error)
	OnDeleteItem         func(*dynamodb.DeleteItemInput) (*dynamodb.DeleteItemOutput, error)
	OnScan               func(*dynamodb.ScanInput) (*dynamodb.ScanOutput, error)
	OnQuery              func(*dynamodb.QueryInput) (*dynamodb.QueryOutput, error)

	mu  sync.Mutex
	ops []string
}

// New returns a DB for t whose calls must have deadlines within callTimeout.
func New(t testing.TB, callTimeout time.Duration) *DB {
	return &DB{T: t, CallTimeout: callTimeout}
}

// Ops returns the operations called so far, in order.
func (f *DB) Ops() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ops...)
}

// Reset forgets the calls recorded so far.
func (f *DB) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = nil
}

// enter records op and checks its deadline and table. missing means the test
// set no answer for op: that fails the test too, and enter returns
// ErrUnexpected.
func (f *DB) enter(ctx context.Context, op string, table *string, missing bool) error {
	f.T.Helper()
	f.mu.Lock()
	f.ops = append(f.ops, op)
	f.mu.Unlock()
	dl, ok := ctx.Deadline()
	if !ok {
		f.T.Errorf("%s without a deadline", op)
	} else if left := time.Until(dl); left > f.CallTimeout {
		f.T.Errorf("%s deadline %v away, want at most %v", op, left, f.CallTimeout)
	}
	if got := aws.ToString(table); f.Table != "" && got != f.Table {
		f.T.Errorf("%s of table %q, want %q", op, got, f.Table)
	}
	if missing {
		f.T.Errorf("unexpected %s", op)
		return ErrUnexpected
	}
	return nil
}

// answer is the body of every operation.
func answer[I, O any](f *DB, ctx context.Context, op string, table *string, on func(*I) (*O, error), in *I) (*O, error) {
	f.T.Helper()
	if err := f.enter(ctx, op, table, on == nil); err != nil {
		return nil, err
	}
	return on(in)
}

func (f *DB) DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	return answer(f, ctx, "DescribeTable", in.TableName, f.OnDescribeTable, in)
}

func (f *DB) CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error) {
	return answer(f, ctx, "CreateTable", in.TableName, f.OnCreateTable, in)
}

func (f *DB) UpdateTable(ctx context.Context, in *dynamodb.UpdateTableInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateTableOutput, error) {
	return answer(f, ctx, "UpdateTable", in.TableName, f.OnUpdateTable, in)
}

func (f *DB) DescribeTimeToLive(ctx context.Context, in *dynamodb.DescribeTimeToLiveInput, _ ...func(*dynamodb.Options)) (*dynamodb.DescribeTimeToLiveOutput, error) {
	return answer(f, ctx, "DescribeTimeToLive", in.TableName, f.OnDescribeTimeToLive, in)
}

func (f *DB) UpdateTimeToLive(ctx context.Context, in *dynamodb.UpdateTimeToLiveInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error) {
	return answer(f, ctx, "UpdateTimeToLive", in.TableName, f.OnUpdateTimeToLive, in)
}

func (f *DB) GetItem(ctx context.Context, in *dynamodb.GetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error) {
	if f.ConsistentReads && !aws.ToBool(in.ConsistentRead) {
		f.T.Errorf("GetItem %v without ConsistentRead", in.Key)
	}
	return answer(f, ctx, "GetItem", in.TableName, f.OnGetItem, in)
}

func (f *DB) PutItem(ctx context.Context, in *dynamodb.PutItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return answer(f, ctx, "PutItem", in.TableName, f.OnPutItem, in)
}

func (f *DB) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	return answer(f, ctx, "UpdateItem", in.TableName, f.OnUpdateItem, in)
}

func (f *DB) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return answer(f, ctx, "DeleteItem", in.TableName, f.OnDeleteItem, in)
}

func (f *DB) Scan(ctx context.Context, in *dynamodb.ScanInput, _ ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error) {
	return answer(f, ctx, "Scan", in.TableName, f.OnScan, in)
}

func (f *DB) Query(ctx context.Context, in *dynamodb.QueryInput, _ ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error) {
	return answer(f, ctx, "Query", in.TableName, f.OnQuery, in)
}

// DescribeSeq answers DescribeTable with each of answers in turn (a
// *types.TableDescription or an error), repeating the last one: a table's
// life (missing, CREATING, ACTIVE) as successive polls see it.
func DescribeSeq(answers ...any) func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
	var mu sync.Mutex
	i := 0
	return func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
		mu.Lock()
		a := answers[min(i, len(answers)-1)]
		i++
		mu.Unlock()
		switch a := a.(type) {
		case error:
			return nil, a
		case *types.TableDescription:
			return &dynamodb.DescribeTableOutput{Table: a}, nil
		}
		panic(fmt.Sprintf("ddbfake: DescribeSeq answer %T, want an error or a *types.TableDescription", a))
	}
}
