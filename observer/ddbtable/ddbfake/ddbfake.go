// Package ddbfake is for tests only: the common part of DynamoDB fakes whose
// operations answer through function fields set by each test. It checks that
// every call carries a deadline, records the calls in order, and fails the
// test on a call it gave no answer for.
package ddbfake

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ErrUnexpected is the error of a call the test gave no answer for.
var ErrUnexpected = errors.New("unexpected call")

// Calls checks and records the calls of one fake. The zero value is ready for
// use; it is safe for concurrent use.
type Calls struct {
	mu  sync.Mutex
	ops []string
}

// Enter records op and fails t when ctx has no deadline or one further away
// than callTimeout, since an unbounded call can hang its caller for ever.
// missing means the test set no answer for op: that fails t too, and Enter
// returns ErrUnexpected.
func (c *Calls) Enter(t testing.TB, ctx context.Context, op string, callTimeout time.Duration, missing bool) error {
	t.Helper()
	c.mu.Lock()
	c.ops = append(c.ops, op)
	c.mu.Unlock()
	dl, ok := ctx.Deadline()
	if !ok {
		t.Errorf("%s without a deadline", op)
	} else if left := time.Until(dl); left > callTimeout {
		t.Errorf("%s deadline %v away, want at most %v", op, left, callTimeout)
	}
	if missing {
		t.Errorf("unexpected %s", op)
		return ErrUnexpected
	}
	return nil
}

// Ops returns the operations called so far, in order.
func (c *Calls) Ops() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ops...)
}

// Reset forgets the calls recorded so far.
func (c *Calls) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ops = nil
}

// Answer is the body of a fake operation: enter checks and records the call
// (typically through Calls.Enter), then answer, the test's function field,
// gives the result. A nil answer is an unexpected call.
func Answer[I, O any](ctx context.Context, enter func(ctx context.Context, op string, missing bool) error, op string, answer func(*I) (*O, error), in *I) (*O, error) {
	if err := enter(ctx, op, answer == nil); err != nil {
		return nil, err
	}
	return answer(in)
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
