package kinesis

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/sauna-io/sauna/observer/kinesis/leases"
)

// The KCL logs a refused lease renewal at ERROR; sauna says what it is.
func TestKCLErrorLinesAboutRefusedLeasesAreNotErrors(t *testing.T) {
	finished := &leases.NotAcquiredError{Shard: "shardId-000000000001", Reason: "shard is finished (SHARD_END)", Finished: true}
	held := &leases.NotAcquiredError{Shard: "shardId-000000000001", Reason: `held by worker "b"`}
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"shard finished", finished, "level=DEBUG"},
		{"shard finished, wrapped", fmt.Errorf("renew: %w", finished), "level=DEBUG"},
		{"held by another worker", held, "level=WARN"},
		{"renewal after the lease ended", fmt.Errorf("%w: shard s: %s", leases.ErrLeaseLost, leases.RenewalAfterEndText), "level=DEBUG"},
		{"lease lost otherwise", fmt.Errorf("%w: shard s: owned by worker b", leases.ErrLeaseLost), "level=ERROR"},
		{"anything else", errors.New("connection reset"), "level=ERROR"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := &kclLogger{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			l.Errorf("Error in refreshing lease on shard: %s for worker: %s. Error: %+v", "shardId-000000000001", "a", c.err)
			if !strings.Contains(buf.String(), c.want) {
				t.Errorf("logged %q; want %s", buf.String(), c.want)
			}
		})
	}
}

// The same lines reach sauna through logrus, as text only.
func TestKCLLogrusLinesAboutRefusedLeasesAreNotErrors(t *testing.T) {
	finished := &leases.NotAcquiredError{Shard: "shardId-000000000001", Reason: leases.ShardFinishedText, Finished: true}
	held := &leases.NotAcquiredError{Shard: "shardId-000000000001", Reason: `held by worker "b"`}
	const format = "Error in refreshing lease on shard: %s for worker: %s. Error: %+v"
	for _, c := range []struct {
		err  error
		want slog.Level
	}{
		{finished, slog.LevelDebug},
		{held, slog.LevelWarn},
		{fmt.Errorf("%w: shard s: %s", leases.ErrLeaseLost, leases.RenewalAfterEndText), slog.LevelDebug},
		{errors.New("connection reset"), slog.LevelError},
	} {
		msg := fmt.Sprintf(format, "shardId-000000000001", "a", c.err)
		if got := refusedLeaseLevel(msg); got != c.want {
			t.Errorf("%q logged at %v; want %v", msg, got, c.want)
		}
	}
}
