package ddbtable

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sauna-io/sauna/observer/ddbtable/ddbfake"
)

const testCallTimeout = 2 * time.Second

var _ Client = (*ddbfake.DB)(nil)

// newDB returns a fake whose calls must all name table "tbl".
func newDB(t *testing.T, callTimeout time.Duration) *ddbfake.DB {
	db := ddbfake.New(t, callTimeout)
	db.Table = "tbl"
	return db
}

var created = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func desc(status types.TableStatus) *types.TableDescription {
	return &types.TableDescription{
		TableName:            aws.String("tbl"),
		TableStatus:          status,
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		BillingModeSummary:   &types.BillingModeSummary{BillingMode: types.BillingModePayPerRequest},
		CreationDateTime:     aws.Time(created),
	}
}

func notFound() error {
	return &types.ResourceNotFoundException{Message: aws.String("Requested resource not found")}
}

func testSpec(logs *bytes.Buffer) Spec {
	return Spec{
		Name:        "tbl",
		Kind:        "test table",
		HashKey:     "id",
		Refusal:     "not a test table",
		CallTimeout: testCallTimeout,
		WaitTimeout: time.Minute, // longer than CallTimeout, so that each poll needs its own deadline
		MinDelay:    time.Millisecond,
		MaxDelay:    5 * time.Millisecond,
		Logger:      slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func TestEnsure(t *testing.T) {
	wantCreate := &dynamodb.CreateTableInput{
		TableName:            aws.String("tbl"),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("id"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("id"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	}
	errDenied := errors.New("AccessDeniedException: no")
	errLimit := errors.New("LimitExceededException: too many tables")
	provisioned := desc(types.TableStatusActive)
	provisioned.BillingModeSummary = nil
	rangeKey := desc(types.TableStatusActive)
	rangeKey.KeySchema = append(rangeKey.KeySchema, types.KeySchemaElement{AttributeName: aws.String("seq"), KeyType: types.KeyTypeRange})

	tests := []struct {
		name        string
		spec        func(*Spec)
		describe    []any
		createErr   error
		waitTimeout time.Duration
		wantOps     []string // nil: none, unless anyOps
		anyOps      bool     // the count of polls is up to the waiter
		wantDesc    *types.TableDescription
		wantErr     string // the whole message; "" means success
		errPrefix   bool   // wantErr is only the start of the message
		wantIs      error
		wantLog     string
	}{
		{
			name:     "an ACTIVE table is used as is",
			describe: []any{desc(types.TableStatusActive)},
			wantOps:  []string{"DescribeTable"},
			wantDesc: desc(types.TableStatusActive),
		},
		{
			name:     "an UPDATING table is usable",
			describe: []any{desc(types.TableStatusUpdating)},
			wantOps:  []string{"DescribeTable"},
			wantDesc: desc(types.TableStatusUpdating),
		},
		{
			name:     "an existing table keeps its billing mode",
			describe: []any{provisioned},
			wantOps:  []string{"DescribeTable"},
			wantDesc: provisioned,
		},
		{
			name:     "a table that does not bill on demand is warned of",
			spec:     func(s *Spec) { s.ThrottleCost = "throttling slows tests" },
			describe: []any{provisioned},
			wantOps:  []string{"DescribeTable"},
			wantDesc: provisioned,
			wantLog:  "test table is not PAY_PER_REQUEST; throttling slows tests",
		},
		{
			name:     "creates a missing table and waits until ACTIVE",
			describe: []any{notFound(), desc(types.TableStatusCreating), desc(types.TableStatusActive)},
			wantOps:  []string{"DescribeTable", "CreateTable", "DescribeTable", "DescribeTable"},
			wantDesc: desc(types.TableStatusActive),
			wantLog:  "test table created",
		},
		{
			name:      "a concurrent creator is not an error",
			describe:  []any{notFound(), notFound(), desc(types.TableStatusActive)},
			createErr: &types.ResourceInUseException{Message: aws.String("Table already exists")},
			wantOps:   []string{"DescribeTable", "CreateTable", "DescribeTable", "DescribeTable"},
			wantDesc:  desc(types.TableStatusActive),
		},
		{
			name:     "a table being created by someone else is waited for",
			describe: []any{desc(types.TableStatusCreating), desc(types.TableStatusActive)},
			wantOps:  []string{"DescribeTable", "DescribeTable"},
			wantDesc: desc(types.TableStatusActive),
		},
		{
			name:     "other DescribeTable errors do not create",
			describe: []any{errDenied},
			wantOps:  []string{"DescribeTable"},
			wantErr:  `test table "tbl": describe: AccessDeniedException: no`,
			wantIs:   errDenied,
		},
		{
			name:      "CreateTable failure",
			describe:  []any{notFound()},
			createErr: errLimit,
			wantOps:   []string{"DescribeTable", "CreateTable"},
			wantErr:   `test table "tbl": create: LimitExceededException: too many tables`,
			wantIs:    errLimit,
		},
		{
			name:        "the wait is bounded",
			describe:    []any{notFound(), desc(types.TableStatusCreating)},
			waitTimeout: 30 * time.Millisecond,
			anyOps:      true,
			wantErr:     `test table "tbl": wait for ACTIVE: `,
			errPrefix:   true,
		},
		{
			name:     "a table keyed otherwise is refused",
			describe: []any{rangeKey},
			wantOps:  []string{"DescribeTable"},
			wantErr:  `test table "tbl": key schema is not a string hash key "id": not a test table`,
		},
		{
			name:     "a table created concurrently with another key is refused",
			describe: []any{notFound(), rangeKey},
			wantOps:  []string{"DescribeTable", "CreateTable", "DescribeTable"},
			wantErr:  `test table "tbl": key schema is not a string hash key "id": not a test table`,
		},
		{
			name:     "without a refusal the key error ends with the key",
			spec:     func(s *Spec) { s.Refusal = "" },
			describe: []any{rangeKey},
			wantOps:  []string{"DescribeTable"},
			wantErr:  `test table "tbl": key schema is not a string hash key "id"`,
		},
		{
			name:    "empty table name",
			spec:    func(s *Spec) { s.Name = "" },
			wantErr: "test table: empty table name",
		},
		{
			name:    "empty hash key",
			spec:    func(s *Spec) { s.HashKey = "" },
			wantErr: `test table "tbl": empty hash key`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			spec := testSpec(&logs)
			if tc.spec != nil {
				tc.spec(&spec)
			}
			if tc.waitTimeout > 0 {
				spec.WaitTimeout = tc.waitTimeout
			}
			db := newDB(t, testCallTimeout)
			if tc.describe != nil {
				db.OnDescribeTable = ddbfake.DescribeSeq(tc.describe...)
			}
			db.OnCreateTable = func(in *dynamodb.CreateTableInput) (*dynamodb.CreateTableOutput, error) {
				if diff := cmp.Diff(wantCreate, in, cmpopts.IgnoreUnexported(dynamodb.CreateTableInput{}, types.AttributeDefinition{}, types.KeySchemaElement{})); diff != "" {
					t.Errorf("CreateTable input (-want +got):\n%s", diff)
				}
				return &dynamodb.CreateTableOutput{}, tc.createErr
			}

			got, err := Ensure(t.Context(), db, spec)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Ensure: %v", err)
				}
				if diff := cmp.Diff(tc.wantDesc, got, cmpopts.IgnoreUnexported(types.TableDescription{}, types.KeySchemaElement{}, types.AttributeDefinition{}, types.BillingModeSummary{})); diff != "" {
					t.Errorf("description (-want +got):\n%s", diff)
				}
			} else {
				if err == nil || err.Error() != tc.wantErr && !(tc.errPrefix && strings.HasPrefix(err.Error(), tc.wantErr)) {
					t.Fatalf("Ensure: %v, want %q", err, tc.wantErr)
				}
				if got != nil {
					t.Errorf("Ensure returned a description with its error: %+v", got)
				}
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("Ensure: %v does not wrap %v", err, tc.wantIs)
			}
			if !tc.anyOps {
				if diff := cmp.Diff(tc.wantOps, db.Ops()); diff != "" {
					t.Errorf("calls (-want +got):\n%s", diff)
				}
			}
			if tc.wantLog != "" && !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, logs.String())
			}
		})
	}
}

// A zero CallTimeout must not mean an already expired deadline.
func TestEnsureDefaults(t *testing.T) {
	var logs bytes.Buffer
	spec := testSpec(&logs)
	spec.CallTimeout, spec.WaitTimeout, spec.MinDelay, spec.MaxDelay, spec.Logger = 0, 0, 0, 0, nil
	db := newDB(t, DefaultCallTimeout)
	db.OnDescribeTable = func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
		return &dynamodb.DescribeTableOutput{Table: desc(types.TableStatusActive)}, nil
	}
	if _, err := Ensure(t.Context(), db, spec); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
}

// The caller's context bounds the whole call, the wait included.
// TestEnsureCanceled runs in a synctest bubble, where time moves only when
// every goroutine waits: the wait must end at its context's deadline, not
// at WaitTimeout, whatever the machine's load.
func TestEnsureCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		spec := testSpec(&logs)
		spec.WaitTimeout = time.Minute
		db := newDB(t, testCallTimeout)
		db.OnDescribeTable = ddbfake.DescribeSeq(desc(types.TableStatusCreating))
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := Ensure(ctx, db, spec)
		if err == nil || !strings.HasPrefix(err.Error(), `test table "tbl": wait for ACTIVE: `) {
			t.Fatalf("Ensure: %v, want a failed wait", err)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Ensure: %v, want it to wrap context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d != 50*time.Millisecond {
			t.Errorf("Ensure returned %v after it started, want it at its context's deadline (50ms)", d)
		}
	})
}

func TestCheckHashKey(t *testing.T) {
	numberKey := desc(types.TableStatusActive)
	numberKey.AttributeDefinitions[0].AttributeType = types.ScalarAttributeTypeN
	otherKey := desc(types.TableStatusActive)
	otherKey.KeySchema[0].AttributeName = aws.String("ShardID")
	rangeOnly := desc(types.TableStatusActive)
	rangeOnly.KeySchema[0].KeyType = types.KeyTypeRange
	compound := desc(types.TableStatusActive)
	compound.KeySchema = append(compound.KeySchema, types.KeySchemaElement{AttributeName: aws.String("seq"), KeyType: types.KeyTypeRange})
	undefined := desc(types.TableStatusActive)
	undefined.AttributeDefinitions = nil
	extraAttr := desc(types.TableStatusActive)
	extraAttr.AttributeDefinitions = append([]types.AttributeDefinition{{AttributeName: aws.String("gsi"), AttributeType: types.ScalarAttributeTypeN}}, extraAttr.AttributeDefinitions...)

	for _, tc := range []struct {
		name string
		desc *types.TableDescription
		ok   bool
	}{
		{"string hash key", desc(types.TableStatusActive), true},
		{"other attributes defined too", extraAttr, true},
		{"number key", numberKey, false},
		{"another attribute", otherKey, false},
		{"range key only", rangeOnly, false},
		{"hash and range key", compound, false},
		{"key attribute not defined", undefined, false},
		{"no key", &types.TableDescription{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckHashKey(tc.desc, "id")
			if tc.ok != (err == nil) {
				t.Fatalf("CheckHashKey: %v, want ok %v", err, tc.ok)
			}
			if err != nil && err.Error() != `key schema is not a string hash key "id"` {
				t.Errorf("CheckHashKey error %q", err)
			}
		})
	}
}

func TestEnsureIndexes(t *testing.T) {
	ix := Index{Name: "byDay", HashKey: "day", RangeKey: "at"}
	provisioned := func() *types.TableDescription {
		d := desc(types.TableStatusActive)
		d.BillingModeSummary = nil
		d.ProvisionedThroughput = &types.ProvisionedThroughputDescription{ReadCapacityUnits: aws.Int64(5), WriteCapacityUnits: aws.Int64(7)}
		return d
	}
	withIndex := func() *types.TableDescription {
		d := desc(types.TableStatusActive)
		d.GlobalSecondaryIndexes = []types.GlobalSecondaryIndexDescription{{IndexName: aws.String("byDay"), IndexStatus: types.IndexStatusCreating}}
		return d
	}
	tests := []struct {
		name      string
		table     *types.TableDescription
		update    func(*dynamodb.UpdateTableInput) (*dynamodb.UpdateTableOutput, error)
		wantOps   []string
		wantLog   string
		wantInput func(*testing.T, *dynamodb.UpdateTableInput)
	}{
		{name: "index there (being built): nothing asked", table: withIndex(), wantOps: []string{"DescribeTable"}},
		{name: "on-demand table: index without throughput", table: desc(types.TableStatusActive),
			update: func(*dynamodb.UpdateTableInput) (*dynamodb.UpdateTableOutput, error) {
				return &dynamodb.UpdateTableOutput{}, nil
			},
			wantOps: []string{"DescribeTable", "UpdateTable"}, wantLog: "adding index",
			wantInput: func(t *testing.T, in *dynamodb.UpdateTableInput) {
				c := in.GlobalSecondaryIndexUpdates[0].Create
				if c.ProvisionedThroughput != nil || aws.ToString(c.KeySchema[1].AttributeName) != "at" || len(in.AttributeDefinitions) != 2 {
					t.Errorf("index creation %+v", c)
				}
			}},
		{name: "provisioned table: the table's throughput", table: provisioned(),
			update: func(*dynamodb.UpdateTableInput) (*dynamodb.UpdateTableOutput, error) {
				return &dynamodb.UpdateTableOutput{}, nil
			},
			wantOps: []string{"DescribeTable", "UpdateTable"},
			wantInput: func(t *testing.T, in *dynamodb.UpdateTableInput) {
				pt := in.GlobalSecondaryIndexUpdates[0].Create.ProvisionedThroughput
				if pt == nil || aws.ToInt64(pt.ReadCapacityUnits) != 5 || aws.ToInt64(pt.WriteCapacityUnits) != 7 {
					t.Errorf("index throughput %+v, want the table's 5/7", pt)
				}
			}},
		{name: "refused: logged, not an error", table: desc(types.TableStatusActive),
			update: func(*dynamodb.UpdateTableInput) (*dynamodb.UpdateTableOutput, error) {
				return nil, &types.LimitExceededException{Message: aws.String("one index at a time")}
			},
			wantOps: []string{"DescribeTable", "UpdateTable"}, wantLog: "cannot add index"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			var got *dynamodb.UpdateTableInput
			f := newDB(t, testCallTimeout)
			f.OnDescribeTable = func(*dynamodb.DescribeTableInput) (*dynamodb.DescribeTableOutput, error) {
				return &dynamodb.DescribeTableOutput{Table: tc.table}, nil
			}
			if tc.update != nil {
				f.OnUpdateTable = func(in *dynamodb.UpdateTableInput) (*dynamodb.UpdateTableOutput, error) {
					got = in
					return tc.update(in)
				}
			}
			s := testSpec(&logs)
			s.Indexes = []Index{ix}
			if _, err := Ensure(t.Context(), f, s); err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			if diff := cmp.Diff(tc.wantOps, f.Ops()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if tc.wantLog != "" && !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, logs.String())
			}
			if tc.wantInput != nil && got != nil {
				tc.wantInput(t, got)
			}
		})
	}
}

func TestGetItem(t *testing.T) {
	db := ddbfake.New(t, time.Second)
	db.Table = "tbl"
	db.ConsistentReads = true
	item := map[string]types.AttributeValue{"id": S("k"), "v": S("x")}
	db.OnGetItem = func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
		if diff := cmp.Diff(map[string]types.AttributeValue{"id": S("k")}, in.Key, cmpopts.IgnoreUnexported(types.AttributeValueMemberS{})); diff != "" {
			t.Errorf("key (-want +got):\n%s", diff)
		}
		return &dynamodb.GetItemOutput{Item: item}, nil
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	got, err := GetItem(ctx, db, "tbl", "id", "k")
	if err != nil || len(got) != 2 {
		t.Fatalf("GetItem = %v, %v; want the item", got, err)
	}

	db.OnGetItem = func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) { return &dynamodb.GetItemOutput{}, nil }
	if got, err := GetItem(ctx, db, "tbl", "id", "gone"); err != nil || len(got) != 0 {
		t.Fatalf("GetItem of a missing item = %v, %v; want an empty map", got, err)
	}

	errDown := errors.New("InternalServerError")
	db.OnGetItem = func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) { return nil, errDown }
	if _, err := GetItem(ctx, db, "tbl", "id", "k"); !errors.Is(err, errDown) {
		t.Fatalf("GetItem error = %v, want %v", err, errDown)
	}
}
