package responders

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Verdict is the final or intermediate outcome of one attempt to execute a command.
type Verdict int

const (
	// Done means the command took effect.
	Done Verdict = iota
	// Retry means the attempt failed in a way that may succeed later.
	Retry
	// Fail means the command can never succeed as sent; retrying is pointless.
	Fail
)

func (v Verdict) String() string {
	switch v {
	case Done:
		return "done"
	case Retry:
		return "retryable"
	case Fail:
		return "permanent"
	}
	return fmt.Sprintf("verdict(%d)", int(v))
}

// ErrPermanent is matched by errors.Is for every error wrapped with Permanent.
var ErrPermanent = errors.New("permanent failure")

// RetryableError asks for another attempt, no sooner than After (zero: the
// caller's own backoff decides).
type RetryableError struct {
	After time.Duration
	Err   error
}

func (e *RetryableError) Error() string {
	if e.After > 0 {
		return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
	}
	return e.Err.Error()
}

func (e *RetryableError) Unwrap() error { return e.Err }

// Retryable marks err as worth retrying after the given delay (zero: no hint).
func Retryable(err error, after time.Duration) error {
	if err == nil {
		return nil
	}
	return &RetryableError{After: after, Err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string        { return e.err.Error() }
func (e *permanentError) Unwrap() error        { return e.err }
func (e *permanentError) Is(target error) bool { return target == ErrPermanent }

// Permanent marks err as final: the command will not be retried.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// Classify turns the error returned by Respond into a verdict and the delay
// the responder asked for. Unclassified errors are retryable: a network error
// or a bug is no reason to lose a command. A RejectError is permanent.
func Classify(err error) (Verdict, time.Duration) {
	if err == nil {
		return Done, 0
	}
	if errors.Is(err, ErrPermanent) {
		return Fail, 0
	}
	var rej *RejectError
	if errors.As(err, &rej) {
		return Fail, 0
	}
	var re *RetryableError
	if errors.As(err, &re) {
		return Retry, re.After
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return Retry, 0
	}
	return Retry, 0
}
