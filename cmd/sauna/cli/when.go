package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/sauna-io/sauna/responders"
)

// parseWhen reads a time flag: an RFC 3339 time, or a duration meaning that
// long before now ("15m", "2h30m").
func parseWhen(flagName, value string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(value); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%s: %q is a negative duration; give how long ago, e.g. 15m", flagName, value)
		}
		return now.Add(-d), nil
	}
	ts, err := responders.ParseTimestamp(value)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: want an RFC 3339 time such as 2026-01-02T15:04:05Z or a duration ago such as 15m, got %q", flagName, value)
	}
	return ts, nil
}

// timeWindow parses --since and --until (either may be empty) and checks
// that they make a window.
func timeWindow(since, until string, now time.Time) (from, to time.Time, err error) {
	if since != "" {
		if from, err = parseWhen("--since", since, now); err != nil {
			return from, to, err
		}
	}
	if until != "" {
		if to, err = parseWhen("--until", until, now); err != nil {
			return from, to, err
		}
	}
	if !from.IsZero() && !to.IsZero() && !from.Before(to) {
		return from, to, fmt.Errorf("--since (%s) must be before --until (%s)", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	return from, to, nil
}

// isTerminal reports whether w is a character device (a terminal), where
// people rather than programs read the output.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// listFlag is a comma-separated flag value that may also be repeated.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// repeatedFlag is a flag that may be repeated, each value taken whole: a
// value may hold commas.
type repeatedFlag []string

func (l *repeatedFlag) String() string { return strings.Join(*l, " ") }

func (l *repeatedFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}
