package kinesis

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
)

// A shard is read once per IdleBetweenReads, counted from the start of the
// previous read, unless the previous read returned a full batch.
func TestProcessorPacesReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.p.o.cfg.IdleBetweenReads = 250 * time.Millisecond
		h.p.o.cfg.MaxRecords = 2
		cp := &fakeCheckpointer{}
		held := func(readStarted time.Time, records ...types.Record) time.Duration {
			start := time.Now()
			h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: records, CacheEntryTime: &readStarted})
			return time.Since(start)
		}

		if got := held(time.Now()); got != 250*time.Millisecond {
			t.Errorf("after an empty read that just started: held %s, want 250ms", got)
		}
		if got := held(time.Now().Add(-100 * time.Millisecond)); got != 150*time.Millisecond {
			t.Errorf("after a read that started 100ms ago: held %s, want 150ms", got)
		}
		if got := held(time.Now().Add(-time.Second)); got != 0 {
			t.Errorf("after a read that started 1s ago: held %s, want 0", got)
		}
		if got := held(time.Now(), keyedRecord("1", "a", "hello")); got != 250*time.Millisecond {
			t.Errorf("after a short batch: held %s, want 250ms", got)
		}
		if got := held(time.Now(), keyedRecord("2", "a", "hello"), keyedRecord("3", "b", "hello")); got != 0 {
			t.Errorf("after a full batch (the shard is behind): held %s, want 0", got)
		}

		h.stop() // the observer stops: the pause must not delay it
		if got := held(time.Now()); got != 0 {
			t.Errorf("while stopping: held %s, want 0", got)
		}
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
	})
}
