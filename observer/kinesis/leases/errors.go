package leases

import (
	"errors"
	"fmt"

	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
)

var (
	// ErrLeaseLost means a fenced write was refused because this worker no
	// longer owns the shard: another worker took it over, or it was claimed.
	// Whatever the shard's processor has not yet made durable must be dropped;
	// retrying cannot succeed.
	ErrLeaseLost = errors.New("lease lost")

	// ErrStreamMismatch is matched (errors.Is) by a *StreamMismatchError.
	ErrStreamMismatch = errors.New("lease table belongs to another stream")

	// ErrNotAcquired is wrapped by every refusal of GetLease to take a lease
	// (the KCL sees the same errors as checkpoint.ErrLeaseNotAcquired).
	ErrNotAcquired = errors.New("lease not acquired")

	// ErrCheckpointRegression means CheckpointSequence was asked to move a
	// shard's checkpoint backwards, or away from SHARD_END. It is permanent:
	// retrying the same value fails the same way.
	ErrCheckpointRegression = errors.New("checkpoint would move backwards")
)

// StreamMismatchError is returned by Init when the table is bound to another
// stream. Reusing the table would apply that stream's checkpoints to the
// same-named shards of the new one.
type StreamMismatchError struct {
	Table string // the lease table (the observer id)
	Bound string // the stream the table belongs to
	Want  string // the stream this Table was configured with
}

func (e *StreamMismatchError) Error() string {
	return fmt.Sprintf("lease table %q belongs to stream %q, not %q: use another observer id or delete the table",
		e.Table, e.Bound, e.Want)
}

// Is makes errors.Is(err, ErrStreamMismatch) true.
func (e *StreamMismatchError) Is(target error) bool { return target == ErrStreamMismatch }

// NotAcquiredError is GetLease's refusal to take a lease. It says why, and
// matches both ErrNotAcquired (errors.Is) and checkpoint.ErrLeaseNotAcquired
// (errors.As), which is what the KCL worker checks to treat a refusal as "not
// now" rather than logging it as a failure.
type NotAcquiredError struct {
	Shard  string
	Reason string
	// Finished: the shard is done (SHARD_END); nobody will hold it again.
	Finished bool
}

func (e *NotAcquiredError) Error() string {
	return fmt.Sprintf("lease on shard %s "+NotAcquiredText+"%s", e.Shard, e.Reason)
}

// NotAcquiredText and ShardFinishedText are in every NotAcquiredError's
// text, and in that of a finished shard's: the KCL sometimes logs the error
// only as text, and these let a reader of that text tell what it was.
const (
	NotAcquiredText   = "not acquired: "
	ShardFinishedText = "shard is finished (SHARD_END)"
)

// RenewalAfterEndText is in the error of a renewal of a lease that had
// already ended (lost, handed over or abandoned; the end was logged then):
// the KCL's consumer of the shard ends on it, and logs it as an error, by
// text alone through logrus.
const RenewalAfterEndText = "renewal after the lease was lost"

func (e *NotAcquiredError) Unwrap() error { return ErrNotAcquired }

// As lets errors.As(err, &checkpoint.ErrLeaseNotAcquired{}) succeed: that
// struct's cause is unexported, so only its zero value can be handed over.
func (e *NotAcquiredError) As(target any) bool {
	if p, ok := target.(*checkpoint.ErrLeaseNotAcquired); ok {
		*p = checkpoint.ErrLeaseNotAcquired{}
		return true
	}
	return false
}

func notAcquired(shard, format string, args ...any) error {
	return &NotAcquiredError{Shard: shard, Reason: fmt.Sprintf(format, args...)}
}
