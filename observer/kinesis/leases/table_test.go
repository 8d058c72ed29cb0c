package leases

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sauna-io/sauna/observer/ddbtable/ddbfake"
)

var created = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func tableDesc(status types.TableStatus) *types.TableDescription {
	return &types.TableDescription{
		TableName:            aws.String("obs"),
		TableStatus:          status,
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(attrShardID), KeyType: types.KeyTypeHash}},
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(attrShardID), AttributeType: types.ScalarAttributeTypeS}},
		BillingModeSummary:   &types.BillingModeSummary{BillingMode: types.BillingModePayPerRequest},
		CreationDateTime:     aws.Time(created),
	}
}

func notFound() error {
	return &types.ResourceNotFoundException{Message: aws.String("Requested resource not found")}
}

func TestInit(t *testing.T) {
	wantCreate := &dynamodb.CreateTableInput{
		TableName:            aws.String("obs"),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("ShardID"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("ShardID"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	}
	bindOK := func(in *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
		return &dynamodb.PutItemOutput{}, nil
	}
	bindTaken := func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) { return nil, ccf() }
	wrongKey := tableDesc(types.TableStatusActive)
	// A legacy item that another Init gives a start between our read and
	// our write.
	raced := items{MetadataKey: {attrShardID: MetadataKey, attrStream: "stream-a"}}
	wrongKey.KeySchema = []types.KeySchemaElement{{AttributeName: aws.String("leaseKey"), KeyType: types.KeyTypeHash}}

	tests := []struct {
		name        string
		describe    []any
		createErr   error
		put         func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error)
		update      func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error)
		stored      items
		waitTimeout time.Duration
		wantOps     []string
		wantErr     string // substring; "" means success
		wantIs      error
		wantStarted time.Time // zero means this start (the clock's now)
	}{
		{
			name:     "creates a missing table and waits until ACTIVE",
			describe: []any{notFound(), tableDesc(types.TableStatusCreating), tableDesc(types.TableStatusActive)},
			put:      bindOK,
			wantOps:  []string{"DescribeTable", "CreateTable", "DescribeTable", "DescribeTable", "PutItem"},
		},
		{
			name:      "a concurrent creator is not an error",
			describe:  []any{notFound(), notFound(), tableDesc(types.TableStatusActive)},
			createErr: &types.ResourceInUseException{Message: aws.String("Table already exists")},
			put:       bindOK,
			wantOps:   []string{"DescribeTable", "CreateTable", "DescribeTable", "DescribeTable", "PutItem"},
		},
		{
			name:     "an ACTIVE table is used as is",
			describe: []any{tableDesc(types.TableStatusActive)},
			put:      bindOK,
			wantOps:  []string{"DescribeTable", "PutItem"},
		},
		{
			name:     "a table being created by someone else is waited for",
			describe: []any{tableDesc(types.TableStatusCreating), tableDesc(types.TableStatusActive)},
			put:      bindOK,
			wantOps:  []string{"DescribeTable", "DescribeTable", "PutItem"},
		},
		{
			name:     "other DescribeTable errors do not create",
			describe: []any{errors.New("AccessDeniedException: no")},
			wantOps:  []string{"DescribeTable"},
			wantErr:  `lease table "obs": describe: AccessDeniedException: no`,
		},
		{
			name:      "CreateTable failure",
			describe:  []any{notFound()},
			createErr: errors.New("LimitExceededException: too many tables"),
			wantOps:   []string{"DescribeTable", "CreateTable"},
			wantErr:   "create: LimitExceededException",
		},
		{
			name:        "wait is bounded",
			describe:    []any{notFound(), tableDesc(types.TableStatusCreating)},
			waitTimeout: 30 * time.Millisecond,
			wantErr:     "wait for ACTIVE",
		},
		{
			name:     "a table of another shape is refused",
			describe: []any{wrongKey},
			wantOps:  []string{"DescribeTable"},
			wantErr:  "not a lease table of this kind",
		},
		{
			name:        "already bound to the same stream: the recorded start holds",
			describe:    []any{tableDesc(types.TableStatusActive)},
			put:         bindTaken,
			stored:      items{MetadataKey: {attrShardID: MetadataKey, attrStream: "stream-a", attrStarted: "2026-03-04T05:06:07.5Z"}},
			wantOps:     []string{"DescribeTable", "PutItem", "GetItem"},
			wantStarted: time.Date(2026, 3, 4, 5, 6, 7, 5e8, time.UTC),
		},
		{
			name:     "a bound item without a start keeps the table's creation",
			describe: []any{tableDesc(types.TableStatusActive)},
			put:      bindTaken,
			stored:   items{MetadataKey: {attrShardID: MetadataKey, attrStream: "stream-a"}},
			update: func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
				if got, want := aws.ToString(in.ConditionExpression), "attribute_exists(#ShardID) AND attribute_not_exists(#StartedAt)"; got != want {
					t.Errorf("start condition %q, want %q", got, want)
				}
				if got, ok := in.ExpressionAttributeValues[":started"].(*types.AttributeValueMemberS); !ok || got.Value != formatTimeout(created) {
					t.Errorf("start value %v, want the table's creation", in.ExpressionAttributeValues[":started"])
				}
				return &dynamodb.UpdateItemOutput{}, nil
			},
			wantOps:     []string{"DescribeTable", "PutItem", "GetItem", "UpdateItem"},
			wantStarted: created,
		},
		{
			name:     "a start recorded concurrently wins",
			describe: []any{tableDesc(types.TableStatusActive)},
			put:      bindTaken,
			stored:   raced,
			update: func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
				raced[MetadataKey][attrStarted] = "2026-02-03T04:05:06Z"
				return nil, ccf()
			},
			wantOps:     []string{"DescribeTable", "PutItem", "GetItem", "UpdateItem", "GetItem"},
			wantStarted: time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC),
		},
		{
			name:     "an unreadable start is refused",
			describe: []any{tableDesc(types.TableStatusActive)},
			put:      bindTaken,
			stored:   items{MetadataKey: {attrShardID: MetadataKey, attrStream: "stream-a", attrStarted: "yesterday"}},
			wantOps:  []string{"DescribeTable", "PutItem", "GetItem"},
			wantErr:  `lease table "obs": item "sauna#stream": attribute StartedAt "yesterday" is not an RFC 3339 time`,
		},
		{
			name:     "bound to another stream",
			describe: []any{tableDesc(types.TableStatusActive)},
			put:      bindTaken,
			stored:   items{MetadataKey: {attrShardID: MetadataKey, attrStream: "stream-old"}},
			wantOps:  []string{"DescribeTable", "PutItem", "GetItem"},
			wantErr:  `lease table "obs" belongs to stream "stream-old", not "stream-a": use another observer id or delete the table`,
			wantIs:   ErrStreamMismatch,
		},
		{
			name:     "binding write fails",
			describe: []any{tableDesc(types.TableStatusActive)},
			put: func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
				return nil, errors.New("InternalServerError")
			},
			wantOps: []string{"DescribeTable", "PutItem"},
			wantErr: `bind to stream "stream-a": InternalServerError`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.waitTimeout > 0 {
				f.tbl.cfg.TableWaitTimeout = tc.waitTimeout
			}
			f.db.OnDescribeTable = ddbfake.DescribeSeq(tc.describe...)
			f.db.OnCreateTable = func(in *dynamodb.CreateTableInput) (*dynamodb.CreateTableOutput, error) {
				if diff := cmp.Diff(wantCreate, in, cmpopts.IgnoreUnexported(dynamodb.CreateTableInput{}, types.AttributeDefinition{}, types.KeySchemaElement{})); diff != "" {
					t.Errorf("CreateTable input (-want +got):\n%s", diff)
				}
				return &dynamodb.CreateTableOutput{}, tc.createErr
			}
			if tc.put != nil {
				f.db.OnPutItem = func(in *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
					if got := aws.ToString(in.ConditionExpression); got != "attribute_not_exists(#ShardID)" {
						t.Errorf("binding condition %q", got)
					}
					want := map[string]string{attrShardID: MetadataKey, attrStream: "stream-a", attrStarted: formatTimeout(fakeNow)}
					if diff := cmp.Diff(want, flatten(in.Item)); diff != "" {
						t.Errorf("binding item (-want +got):\n%s", diff)
					}
					return tc.put(in)
				}
			}
			if tc.stored != nil {
				f.db.OnGetItem = tc.stored.get
			}
			f.db.OnUpdateItem = tc.update

			err := f.tbl.Init()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Init: %v", err)
				}
				want := tc.wantStarted
				if want.IsZero() {
					want = fakeNow
				}
				if !f.tbl.Started().Equal(want) {
					t.Errorf("Started() = %v, want %v", f.tbl.Started(), want)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Init: %v, want an error containing %q", err, tc.wantErr)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("Init: %v is not %v", err, tc.wantIs)
			}
			if tc.wantOps != nil {
				if diff := cmp.Diff(tc.wantOps, f.db.Ops()); diff != "" {
					t.Errorf("calls (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// The KCL calls Init again in Worker.Start, right after the observer did:
// once Init has succeeded, it calls nothing more; a failed Init is tried
// again in full.
func TestInitOnce(t *testing.T) {
	f := newFixture(t)
	f.db.OnDescribeTable = ddbfake.DescribeSeq(errors.New("InternalServerError"), tableDesc(types.TableStatusActive))
	f.db.OnPutItem = func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) { return &dynamodb.PutItemOutput{}, nil }
	if err := f.tbl.Init(); err == nil {
		t.Fatal("Init succeeded although DescribeTable failed")
	}
	if err := f.tbl.Init(); err != nil {
		t.Fatalf("Init after a failed one: %v", err)
	}
	want := []string{"DescribeTable", "DescribeTable", "PutItem"}
	if diff := cmp.Diff(want, f.db.Ops()); diff != "" {
		t.Fatalf("calls of the first two Inits (-want +got):\n%s", diff)
	}
	if err := f.tbl.Init(); err != nil {
		t.Fatalf("Init after a successful one: %v", err)
	}
	if diff := cmp.Diff(want, f.db.Ops()); diff != "" {
		t.Errorf("Init after a successful one called DynamoDB (-want +got):\n%s", diff)
	}
	if !f.tbl.Started().Equal(fakeNow) {
		t.Errorf("Started() = %v, want %v", f.tbl.Started(), fakeNow)
	}
}

func TestInitValidatesConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"table", func(c *Config) { c.TableName = "" }, "empty table name"},
		{"stream", func(c *Config) { c.StreamName = "" }, "empty stream name"},
		{"worker", func(c *Config) { c.WorkerID = "" }, "empty worker id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tc.edit(&f.tbl.cfg)
			if err := f.tbl.Init(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Init: %v, want %q", err, tc.want)
			}
			if ops := f.db.Ops(); len(ops) != 0 {
				t.Errorf("calls %v before validation", ops)
			}
		})
	}
}

func TestStreamMismatchError(t *testing.T) {
	err := error(&StreamMismatchError{Table: "obs", Bound: "a", Want: "b"})
	if got, want := err.Error(), `lease table "obs" belongs to stream "a", not "b": use another observer id or delete the table`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(err, ErrStreamMismatch) {
		t.Error("not ErrStreamMismatch")
	}
}

func TestDefaults(t *testing.T) {
	tbl := New(nil, nil, Config{TableName: "obs"})
	want := Config{
		TableName:          "obs",
		LeaseDuration:      DefaultLeaseDuration,
		CallTimeout:        DefaultCallTimeout,
		TableWaitTimeout:   DefaultTableWaitTimeout,
		ShardListTTL:       DefaultShardListTTL,
		ClaimTimeout:       DefaultClaimTimeout,
		LeaseSyncInterval:  DefaultLeaseSyncInterval,
		TakesPerPass:       DefaultTakesPerPass,
		BalanceInterval:    DefaultBalanceInterval,
		BalanceMaxInterval: DefaultBalanceMaxInterval,
		HandoffTimeout:     DefaultHandoffTimeout,
		RetakeBackoff:      DefaultRetakeBackoff,
		RetakeBackoffMax:   DefaultRetakeBackoffMax,
	}
	if diff := cmp.Diff(want, tbl.cfg, cmpopts.IgnoreFields(Config{}, "Logger")); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}
