package command

import (
	"errors"
	"fmt"
)

// Why a run stopped short of a final outcome while its source's lease was
// held and no stop was asked for: Turn.Stopped is told an error that
// matches one of these (errors.Is) and wraps what failed, so that the
// source, which gives the record up to be read again, can say why.
var (
	// ErrClaimTakenOver: another worker took the command's claim over
	// (this one was frozen or cut off from the ledger past the claim's
	// lifetime); it wraps outcomes.ErrClaimedElsewhere.
	ErrClaimTakenOver = errors.New("its claim was taken over by another worker")
	// ErrClaimExpired: the claim could not be renewed before it expired,
	// so running the command again could run it twice.
	ErrClaimExpired = errors.New("its claim expired before it could be renewed")
	// ErrDeadLetterNotWritten: the dead-letter stream did not take the
	// command's dead letter.
	ErrDeadLetterNotWritten = errors.New("its dead letter could not be written")
	// ErrOutcomeNotRecorded: the command ran, but its outcome could not
	// be written to the ledger.
	ErrOutcomeNotRecorded = errors.New("its outcome could not be recorded")
	// ErrEarlierUnfinished: an earlier record of the partition key ended
	// without a recorded outcome, so this one records none either.
	ErrEarlierUnfinished = errors.New("an earlier record of its partition key has no recorded outcome")
)

// Stopper is told why a run stopped short (Turn.Stopped).
type Stopper interface{ Stopped(why error) }

// stoppedBecause tells the source why the run is about to stop short:
// class, wrapping err when there is one.
func (c *run) stoppedBecause(class, err error) {
	if c.turn.Stopped == nil {
		return
	}
	why := class
	if err != nil {
		why = fmt.Errorf("%w: %w", class, err)
	}
	c.turn.Stopped.Stopped(why)
}
