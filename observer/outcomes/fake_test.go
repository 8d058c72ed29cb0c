package outcomes

import (
	"time"

	"github.com/sauna-io/sauna/observer/internal/testclock"
)

// newClock is a settable time source shared by a test and its Tables.
func newClock() *testclock.Clock {
	// Millisecond precision, like the stored times, so that values read back
	// compare equal.
	return testclock.New(time.Now().UTC().Truncate(time.Millisecond))
}

// testDigest stands for a command's digest: to the table it is opaque.
const testDigest = "d1"

func ident(commandID string) Identity { return Identity{CommandID: commandID, Digest: testDigest} }
