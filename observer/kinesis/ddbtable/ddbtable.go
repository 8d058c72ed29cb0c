// Package ddbtable makes sure that a DynamoDB table keyed by a single string
// hash key exists, bills on demand and is ACTIVE, for the tables a Kinesis
// observer creates for itself (leases, command outcomes).
package ddbtable

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// Client is the part of *dynamodb.Client that Ensure uses.
type Client interface {
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
}

// Spec is the table Ensure makes sure of.
type Spec struct {
	Name    string // the DynamoDB table name
	Kind    string // what the table is for, e.g. "lease table"; every error starts with it and Name
	HashKey string // the string hash key attribute

	// Refusal ends the error for an existing table keyed otherwise, e.g. "not
	// an outcomes table": its items would not fit, and it most likely
	// belongs to something else.
	Refusal string

	CallTimeout time.Duration // deadline of each DynamoDB call; 0 means DefaultCallTimeout
	WaitTimeout time.Duration // bound on the wait for ACTIVE; 0 means DefaultWaitTimeout
	MinDelay    time.Duration // first poll delay of that wait; 0 means DefaultMinDelay
	MaxDelay    time.Duration // longest poll delay of that wait; 0 means DefaultMaxDelay
	Logger      *slog.Logger  // nil means slog.Default()
}

// Ensure creates the table if it is missing (PAY_PER_REQUEST), waits until it
// is ACTIVE, checks its key and returns its description. A table that exists
// already is used as it is, whatever its billing mode. Concurrent callers are
// fine: the one whose CreateTable loses the race waits like the others. ctx
// bounds the whole call; every request has its own CallTimeout as well.
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
	return desc, nil
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
	_, err := db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(s.Name),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(s.HashKey), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(s.HashKey), KeyType: types.KeyTypeHash},
		},
		BillingMode: types.BillingModePayPerRequest,
	})
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
