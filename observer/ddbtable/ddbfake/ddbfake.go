// Package ddbfake is for tests only: a scripted DynamoDB client for the
// observer's tables. Each operation answers through a function field set by
// the test; the fake checks that every call carries a deadline, records the
// calls in order, and fails the test on a call it gave no answer for. Batch
// requests DynamoDB would refuse (too many keys, a key twice, none at all)
// are refused as DynamoDB refuses them, with a ValidationException, before
// the test's answer is asked.
package ddbfake

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
)

// DynamoDB's limits on one batch request, which the fake enforces on its
// own, apart from the code under test.
const (
	maxBatchGet   = 100
	maxBatchWrite = 25
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
	// ConsistentReads makes a GetItem or BatchGetItem that is not a
	// consistent read fail the test.
	ConsistentReads bool
	// HashKey is the hash key attribute of the tables written with
	// BatchWriteItem: the fake finds a put's key by it.
	HashKey string

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
	OnBatchGetItem       func(*dynamodb.BatchGetItemInput) (*dynamodb.BatchGetItemOutput, error)
	OnBatchWriteItem     func(*dynamodb.BatchWriteItemInput) (*dynamodb.BatchWriteItemOutput, error)

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

// BatchGetItem refuses, as DynamoDB does, a request for no key, for more
// than 100 keys, or for one key twice; the test's answer may leave keys
// unprocessed (UnprocessedKeys) to make the caller retry.
func (f *DB) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	f.T.Helper()
	var tables []string
	var keys []map[string]types.AttributeValue
	for table, ka := range in.RequestItems {
		tables = append(tables, table)
		if f.ConsistentReads && !aws.ToBool(ka.ConsistentRead) {
			f.T.Errorf("BatchGetItem of %s without ConsistentRead", table)
		}
		if len(ka.Keys) == 0 {
			return nil, f.refuse(ctx, "BatchGetItem", tables, "no keys for table "+table)
		}
		keys = append(keys, ka.Keys...)
	}
	if msg := batchProblem(keys, maxBatchGet, "Too many items requested for the BatchGetItem call"); msg != "" {
		return nil, f.refuse(ctx, "BatchGetItem", tables, msg)
	}
	if err := f.enterBatch(ctx, "BatchGetItem", tables, f.OnBatchGetItem == nil); err != nil {
		return nil, err
	}
	return f.OnBatchGetItem(in)
}

// BatchWriteItem refuses, as DynamoDB does, a request of no write, of more
// than 25 writes, or with a key written twice (HashKey names the key of
// puts); the test's answer may leave writes unprocessed (UnprocessedItems)
// to make the caller retry.
func (f *DB) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, _ ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	f.T.Helper()
	var tables []string
	var keys []map[string]types.AttributeValue
	for table, writes := range in.RequestItems {
		tables = append(tables, table)
		for _, w := range writes {
			switch {
			case (w.PutRequest == nil) == (w.DeleteRequest == nil):
				return nil, f.refuse(ctx, "BatchWriteItem", tables, "a write request must hold exactly one of PutRequest and DeleteRequest")
			case w.DeleteRequest != nil:
				keys = append(keys, w.DeleteRequest.Key)
			case f.HashKey == "":
				f.T.Errorf("BatchWriteItem put into %s: the fake's HashKey is not set", table)
				return nil, ErrUnexpected
			default:
				key, ok := w.PutRequest.Item[f.HashKey]
				if !ok {
					return nil, f.refuse(ctx, "BatchWriteItem", tables, "One of the required keys was not given a value")
				}
				keys = append(keys, map[string]types.AttributeValue{f.HashKey: key})
			}
		}
	}
	if msg := batchProblem(keys, maxBatchWrite, "Member must have length less than or equal to 25"); msg != "" {
		return nil, f.refuse(ctx, "BatchWriteItem", tables, msg)
	}
	if err := f.enterBatch(ctx, "BatchWriteItem", tables, f.OnBatchWriteItem == nil); err != nil {
		return nil, err
	}
	return f.OnBatchWriteItem(in)
}

// batchProblem is DynamoDB's refusal of a batch of keys, or "".
func batchProblem(keys []map[string]types.AttributeValue, limit int, tooMany string) string {
	switch {
	case len(keys) == 0:
		return "Member must have length greater than or equal to 1"
	case len(keys) > limit:
		return tooMany
	}
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		id := keyString(k)
		if seen[id] {
			return "Provided list of item keys contains duplicates"
		}
		seen[id] = true
	}
	return ""
}

// keyString renders an item's key, so that keys can be compared and used as
// map keys.
func keyString(key map[string]types.AttributeValue) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(key)) {
		switch v := key[name].(type) {
		case *types.AttributeValueMemberS:
			parts = append(parts, name+"=S:"+v.Value)
		case *types.AttributeValueMemberN:
			parts = append(parts, name+"=N:"+v.Value)
		case *types.AttributeValueMemberB:
			parts = append(parts, name+"=B:"+string(v.Value))
		default:
			parts = append(parts, fmt.Sprintf("%s=%T", name, v))
		}
	}
	return strings.Join(parts, ",")
}

// enterBatch is enter for a request naming several tables.
func (f *DB) enterBatch(ctx context.Context, op string, tables []string, missing bool) error {
	f.T.Helper()
	var table *string
	for _, name := range tables {
		if f.Table != "" && name != f.Table {
			table = aws.String(name) // enter reports it
		}
	}
	if table == nil && len(tables) > 0 {
		table = aws.String(tables[0])
	}
	return f.enter(ctx, op, table, missing)
}

// refuse records op as called and answers it with DynamoDB's
// ValidationException.
func (f *DB) refuse(ctx context.Context, op string, tables []string, msg string) error {
	f.T.Helper()
	if err := f.enterBatch(ctx, op, tables, false); err != nil {
		return err
	}
	return &smithy.GenericAPIError{Code: "ValidationException", Message: msg, Fault: smithy.FaultClient}
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
