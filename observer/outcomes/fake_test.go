package outcomes

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a settable time source shared by a test and its Tables.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock {
	// Millisecond precision, like the stored times, so that values read back
	// compare equal.
	return &clock{now: time.Now().UTC().Truncate(time.Millisecond)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// testDigest stands for a command's digest: to the table it is opaque.
const testDigest = "d1"

func ident(commandID string) Identity { return Identity{CommandID: commandID, Digest: testDigest} }
