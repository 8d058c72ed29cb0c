// Package testlog sends a logger's output to a test's log, where it is shown
// for a failing test and with -v, next to the test's own lines.
package testlog

import (
	"log/slog"
	"strings"
	"testing"
)

// Logger logs at debug level to t.Log, one record a line.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(writer{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type writer struct{ t testing.TB }

func (w writer) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
