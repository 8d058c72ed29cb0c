// Package ddbtable is the DynamoDB plumbing shared by the tables a Kinesis
// observer keeps for itself (leases, command outcomes): the client interface
// they use; Ensure, which makes sure such a table, keyed by a single string
// hash key, exists, bills on demand and is ACTIVE with the global secondary
// indexes it is queried by; GetItem, the consistent read of one item; and
// the placeholders, update expressions and attribute values of their
// requests. What the items mean, and the
// conditions that guard them, belong to the packages that own the tables.
package ddbtable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Defaults for the zero values of Spec.
const (
	DefaultCallTimeout = 10 * time.Second
	DefaultWaitTimeout = 2 * time.Minute
	DefaultMinDelay    = 20 * time.Millisecond // a new table is often ACTIVE at once (and on emulators always); the waiter backs off from here
	DefaultMaxDelay    = 5 * time.Second
)

// Client is the part of *dynamodb.Client that the observer's tables use.
type Client interface {
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	UpdateTable(ctx context.Context, in *dynamodb.UpdateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateTableOutput, error)
	DescribeTimeToLive(ctx context.Context, in *dynamodb.DescribeTimeToLiveInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTimeToLiveOutput, error)
	UpdateTimeToLive(ctx context.Context, in *dynamodb.UpdateTimeToLiveInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Scan(ctx context.Context, in *dynamodb.ScanInput, optFns ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
}

// DynamoDB's limits on one batch request.
const (
	MaxBatchGet   = 100 // keys per BatchGetItem
	MaxBatchWrite = 25  // put and delete requests per BatchWriteItem
)

// Spec is the table Ensure makes sure of.
type Spec struct {
	Name    string // the DynamoDB table name
	Kind    string // what the table is for, e.g. "lease table"; every error starts with it and Name
	HashKey string // the string hash key attribute

	// Refusal ends the error for an existing table keyed otherwise, e.g. "not
	// an outcomes table": its items would not fit, and it most likely
	// belongs to something else.
	Refusal string

	// Indexes are created with the table, and added to an existing table
	// that lacks them (see Ensure).
	Indexes []Index

	// ThrottleCost says what throttling costs the table's users, e.g.
	// "throttling can cost leases": Ensure warns with it when the table
	// does not bill on demand (it was created provisioned, ahead of time
	// or by another tool). Empty means no warning.
	ThrottleCost string

	CallTimeout time.Duration // deadline of each DynamoDB call; 0 means DefaultCallTimeout
	WaitTimeout time.Duration // bound on the wait for ACTIVE; 0 means DefaultWaitTimeout
	MinDelay    time.Duration // first poll delay of that wait; 0 means DefaultMinDelay
	MaxDelay    time.Duration // longest poll delay of that wait; 0 means DefaultMaxDelay
	Logger      *slog.Logger  // nil means slog.Default()
}

// Index is a global secondary index keyed by a string hash key and a string
// range key, projecting every attribute.
type Index struct {
	Name, HashKey, RangeKey string
}

// Ensure creates the table if it is missing (PAY_PER_REQUEST, with
// s.Indexes), waits until it is ACTIVE, checks its key and returns its
// description. A table that exists already is used as it is, whatever its
// billing mode; an index it lacks is requested with UpdateTable and not
// waited for: DynamoDB backfills a new index in the background, and the
// table serves its items meanwhile. Failing to add an index is logged, not
// returned. Concurrent callers are fine: the one whose CreateTable loses the
// race waits like the others. ctx bounds the whole call; every request has
// its own CallTimeout as well.
func Ensure(ctx context.Context, db Client, s Spec) (*types.TableDescription, error) {
	switch {
	case s.Name == "":
		return nil, fmt.Errorf("%s: empty table name", s.Kind)
	case s.HashKey == "":
		return nil, fmt.Errorf("%s %q: empty hash key", s.Kind, s.Name)
	}
	s.defaults()
	desc, err := s.ensure(ctx, db)
	if err != nil {
		return nil, err
	}
	if err := CheckHashKey(desc, s.HashKey); err != nil {
		if s.Refusal != "" {
			err = fmt.Errorf("%w: %s", err, s.Refusal)
		}
		return nil, s.errorf("%w", err)
	}
	s.addIndexes(ctx, db, desc)
	if s.ThrottleCost != "" && !onDemand(desc) {
		s.Logger.Warn(s.Kind + " is not PAY_PER_REQUEST; " + s.ThrottleCost)
	}
	return desc, nil
}

// onDemand reports whether the table bills per request; only such a table
// cannot be throttled for lack of provisioned capacity.
func onDemand(desc *types.TableDescription) bool {
	return desc.BillingModeSummary != nil && desc.BillingModeSummary.BillingMode == types.BillingModePayPerRequest
}

// GetItem reads the item of table whose string hash key attr is key, as a
// consistent read: what a table decides (who holds a lease, whether a
// command ran) must follow the last write. A missing item is an empty map.
// ctx should carry the caller's call timeout.
func GetItem(ctx context.Context, db Client, table, attr, key string) (map[string]types.AttributeValue, error) {
	out, err := db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]types.AttributeValue{attr: S(key)},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, err
	}
	return out.Item, nil
}

// IndexStatus is the state of the index named name in desc: "" when the
// table has no such index, else CREATING, ACTIVE, ... as DynamoDB says.
func IndexStatus(desc *types.TableDescription, name string) types.IndexStatus {
	for _, gsi := range desc.GlobalSecondaryIndexes {
		if aws.ToString(gsi.IndexName) == name {
			if gsi.IndexStatus == "" {
				// Emulators may leave the status out of an index they serve.
				return types.IndexStatusActive
			}
			return gsi.IndexStatus
		}
	}
	return ""
}

// addIndexes asks for each index of s the table lacks, one per UpdateTable
// call as DynamoDB requires; it stops at the first refusal (DynamoDB builds
// one index at a time).
func (s *Spec) addIndexes(ctx context.Context, db Client, desc *types.TableDescription) {
	for _, ix := range s.Indexes {
		if IndexStatus(desc, ix.Name) != "" {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, s.CallTimeout)
		_, err := db.UpdateTable(cctx, &dynamodb.UpdateTableInput{
			TableName:            aws.String(s.Name),
			AttributeDefinitions: ix.attributes(),
			GlobalSecondaryIndexUpdates: []types.GlobalSecondaryIndexUpdate{{Create: &types.CreateGlobalSecondaryIndexAction{
				IndexName:  aws.String(ix.Name),
				KeySchema:  ix.keySchema(),
				Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
				// Without throughput a PROVISIONED table refuses the index;
				// an on-demand one refuses throughput.
				ProvisionedThroughput: s.indexThroughput(desc),
			}}},
		})
		cancel()
		if err != nil {
			// The table does its main job without the index: a refusal
			// (another index being built, a missing permission, an
			// emulator that cannot add indexes) is reported, and the next
			// start asks again.
			s.Logger.Warn(s.Kind+": cannot add index; what needs it fails until it exists", "index", ix.Name, "err", err)
			return
		}
		s.Logger.Info(s.Kind+": adding index; DynamoDB fills it in the background", "index", ix.Name)
	}
}

func (s *Spec) indexThroughput(desc *types.TableDescription) *types.ProvisionedThroughput {
	if onDemand(desc) {
		return nil
	}
	if pt := desc.ProvisionedThroughput; pt != nil && aws.ToInt64(pt.ReadCapacityUnits) > 0 {
		return &types.ProvisionedThroughput{ReadCapacityUnits: pt.ReadCapacityUnits, WriteCapacityUnits: pt.WriteCapacityUnits}
	}
	return nil
}

func (ix Index) attributes() []types.AttributeDefinition {
	return []types.AttributeDefinition{
		{AttributeName: aws.String(ix.HashKey), AttributeType: types.ScalarAttributeTypeS},
		{AttributeName: aws.String(ix.RangeKey), AttributeType: types.ScalarAttributeTypeS},
	}
}

func (ix Index) keySchema() []types.KeySchemaElement {
	return []types.KeySchemaElement{
		{AttributeName: aws.String(ix.HashKey), KeyType: types.KeyTypeHash},
		{AttributeName: aws.String(ix.RangeKey), KeyType: types.KeyTypeRange},
	}
}

// CheckHashKey reports whether desc is keyed by key alone, a string hash key.
func CheckHashKey(desc *types.TableDescription, key string) error {
	if len(desc.KeySchema) == 1 && aws.ToString(desc.KeySchema[0].AttributeName) == key &&
		desc.KeySchema[0].KeyType == types.KeyTypeHash {
		for _, ad := range desc.AttributeDefinitions {
			if aws.ToString(ad.AttributeName) == key && ad.AttributeType == types.ScalarAttributeTypeS {
				return nil
			}
		}
	}
	return fmt.Errorf("key schema is not a string hash key %q", key)
}

func (s *Spec) defaults() {
	if s.CallTimeout <= 0 {
		s.CallTimeout = DefaultCallTimeout
	}
	if s.WaitTimeout <= 0 {
		s.WaitTimeout = DefaultWaitTimeout
	}
	if s.MinDelay <= 0 {
		s.MinDelay = DefaultMinDelay
	}
	if s.MaxDelay <= 0 {
		s.MaxDelay = DefaultMaxDelay
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
}

func (s *Spec) ensure(ctx context.Context, db Client) (*types.TableDescription, error) {
	cctx, cancel := context.WithTimeout(ctx, s.CallTimeout)
	out, err := db.DescribeTable(cctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.Name)})
	cancel()
	var desc *types.TableDescription
	var nf *types.ResourceNotFoundException
	switch {
	case err == nil:
		desc = out.Table
	case errors.As(err, &nf):
		if err := s.create(ctx, db); err != nil {
			return nil, err
		}
	default:
		return nil, s.errorf("describe: %w", err)
	}
	if desc != nil && (desc.TableStatus == types.TableStatusActive || desc.TableStatus == types.TableStatusUpdating) {
		return desc, nil
	}
	// Items cannot be written before ACTIVE; every caller waits, including
	// the one whose CreateTable lost the race.
	waiter := dynamodb.NewTableExistsWaiter(timedDescriber{db, s.CallTimeout}, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay = s.MinDelay
		o.MaxDelay = s.MaxDelay
	})
	wout, err := waiter.WaitForOutput(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.Name)}, s.WaitTimeout)
	if err != nil {
		return nil, s.errorf("wait for ACTIVE: %w", err)
	}
	if wout.Table == nil {
		return nil, s.errorf("DescribeTable returned no table")
	}
	return wout.Table, nil
}

func (s *Spec) create(ctx context.Context, db Client) error {
	ctx, cancel := context.WithTimeout(ctx, s.CallTimeout)
	defer cancel()
	in := &dynamodb.CreateTableInput{
		TableName: aws.String(s.Name),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(s.HashKey), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(s.HashKey), KeyType: types.KeyTypeHash},
		},
		BillingMode: types.BillingModePayPerRequest,
	}
	for _, ix := range s.Indexes {
		for _, ad := range ix.attributes() {
			if !slices.ContainsFunc(in.AttributeDefinitions, func(have types.AttributeDefinition) bool {
				return aws.ToString(have.AttributeName) == aws.ToString(ad.AttributeName)
			}) {
				in.AttributeDefinitions = append(in.AttributeDefinitions, ad)
			}
		}
		in.GlobalSecondaryIndexes = append(in.GlobalSecondaryIndexes, types.GlobalSecondaryIndex{
			IndexName:  aws.String(ix.Name),
			KeySchema:  ix.keySchema(),
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
		})
	}
	_, err := db.CreateTable(ctx, in)
	var inUse *types.ResourceInUseException
	switch {
	case err == nil:
		s.Logger.Info(s.Kind + " created")
		return nil
	case errors.As(err, &inUse):
		// Another caller is creating it right now.
		return nil
	default:
		return s.errorf("create: %w", err)
	}
}

func (s *Spec) errorf(format string, args ...any) error {
	return fmt.Errorf("%s %q: "+format, append([]any{s.Kind, s.Name}, args...)...)
}

// timedDescriber gives each of the waiter's DescribeTable calls its own
// deadline; the waiter's context only bounds the whole wait.
type timedDescriber struct {
	db      Client
	timeout time.Duration
}

func (d timedDescriber) DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	return d.db.DescribeTable(ctx, in, optFns...)
}
