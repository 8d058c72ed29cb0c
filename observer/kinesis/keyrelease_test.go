package kinesis

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"

	"github.com/sauna-io/sauna/observer/command"
	"github.com/sauna-io/sauna/observer/outcomes"
)

// gatedLedger holds the outcome writes of commands until their gate opens
// (all when all is set), and keeps the order outcomes were written in.
type gatedLedger struct {
	*fakeLedger
	mu      sync.Mutex
	gates   map[string]chan struct{} // by commandId
	all     chan struct{}
	written []string // commandIds
}

func newGatedLedger() *gatedLedger {
	return &gatedLedger{fakeLedger: newFakeLedger(), gates: map[string]chan struct{}{}}
}

func commandIDOf(seq string) string { return fmt.Sprintf("00000000-0000-4000-8000-%012s", seq) }

// hold holds the outcome write of the record with sequence number seq; the
// function returned lets it go.
func (g *gatedLedger) hold(seq string) func() {
	ch := make(chan struct{})
	g.mu.Lock()
	g.gates[commandIDOf(seq)] = ch
	g.mu.Unlock()
	return func() { close(ch) }
}

func (g *gatedLedger) pass(ctx context.Context, id string) error {
	g.mu.Lock()
	ch, all := g.gates[id], g.all
	g.mu.Unlock()
	for _, c := range []chan struct{}{ch, all} {
		if c == nil {
			continue
		}
		select {
		case <-c:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (g *gatedLedger) wrote(ids ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.written = append(g.written, ids...)
}

func (g *gatedLedger) writtenSeqs() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var s []string
	for _, id := range g.written {
		s = append(s, fmt.Sprint(id[len(id)-12:][len("00000000000"):]))
	}
	return s
}

func (g *gatedLedger) RecordDone(ctx context.Context, ds []outcomes.Done) error {
	var ids []string
	for _, d := range ds {
		if err := g.pass(ctx, d.Claim.CommandID); err != nil {
			return err
		}
		ids = append(ids, d.Claim.CommandID)
	}
	if err := g.fakeLedger.RecordDone(ctx, ds); err != nil {
		return err
	}
	g.wrote(ids...)
	return nil
}

// RecordDoneIfAbsent is held like RecordDone: a write of an outcome whose
// lease was lost, or whose run stopped, goes this way.
func (g *gatedLedger) RecordDoneIfAbsent(ctx context.Context, d outcomes.Done) error {
	if err := g.pass(ctx, d.Claim.CommandID); err != nil {
		return err
	}
	if err := g.fakeLedger.RecordDoneIfAbsent(ctx, d); err != nil {
		return err
	}
	g.wrote(d.Claim.CommandID)
	return nil
}

func (g *gatedLedger) Finish(ctx context.Context, id outcomes.Identity, f outcomes.Final) error {
	if err := g.pass(ctx, id.CommandID); err != nil {
		return err
	}
	if err := g.fakeLedger.Finish(ctx, id, f); err != nil {
		return err
	}
	g.wrote(id.CommandID)
	return nil
}

// withGatedLedger turns idempotency on with g as the ledger: with the
// fast path (outcomes written by the batcher), or with claims alone.
func withGatedLedger(t *testing.T, g *gatedLedger, fast bool) func(o *Observer) {
	return func(o *Observer) {
		o.ledger = g
		if !fast {
			return
		}
		o.memory = command.NewMemory()
		o.batcher = command.NewBatcher(g, o.log)
		o.batcher.Start()
		t.Cleanup(func() { o.batcher.Stop(context.Background()) })
		o.previousLeaseEnd = func(string) time.Time { return time.Time{} }
	}
}

// The next record of a key runs while its predecessor's outcome is still
// being written; its own outcome is written only after that one, and the
// checkpoint passes neither before both are written.
func TestKeyReleasedBeforeOutcomeWrite(t *testing.T) {
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast=%v", fast), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := newGatedLedger()
				h := newHarness(t, withGatedLedger(t, g, fast))
				open := g.hold("1")
				cp := &fakeCheckpointer{}
				h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{
					keyedRecord("1", "a", "first"), keyedRecord("2", "a", "second"), keyedRecord("3", "b", "other"),
				}})
				synctest.Wait()
				if !slices.Contains(h.resp.calls, "second") {
					t.Errorf("calls %v: the next command of the key waits for its predecessor's outcome write", h.resp.calls)
				}
				if w := g.writtenSeqs(); slices.Contains(w, "2") {
					t.Errorf("outcomes written %v: 2 before 1", w)
				}
				h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp})
				if len(cp.written) != 0 {
					t.Errorf("checkpoints %v before the outcome of 1 is written", cp.written)
				}
				open()
				h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
				// 3 may share 1's write.
				if w := g.writtenSeqs(); len(w) != 3 || slices.Index(w, "1") > slices.Index(w, "2") {
					t.Errorf("outcomes written %v, want 1, 2, 3 with 1 before 2", w)
				}
				if got, want := h.results(), []string{"1=executed", "2=executed", "3=executed"}; !slices.Equal(got, want) {
					t.Errorf("outcomes %v, want %v", got, want)
				}
				if n := len(cp.written); n == 0 || cp.written[n-1] != "3" {
					t.Errorf("checkpoints %v, want to end at 3", cp.written)
				}
			})
		})
	}
}

// A record whose predecessor of the key has no recorded outcome (a lost
// lease while its write is out, and held) records nothing either, though
// it ran: the Batcher, which goes on trying the predecessor's, records
// this one only after it. Nothing waits for ever: the shard shuts down,
// checkpointing neither.
func TestKeySuccessorOfUnrecordedRecordRecordsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGatedLedger()
		h := newHarness(t, withGatedLedger(t, g, true))
		open := g.hold("1")
		defer open()
		cp := &fakeCheckpointer{}
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{
			keyedRecord("1", "a", "first"), keyedRecord("2", "a", "second"),
		}})
		synctest.Wait()
		if !slices.Contains(h.resp.calls, "second") {
			t.Fatalf("calls %v: the next command of the key did not run", h.resp.calls)
		}
		close(h.lost)
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
		// The Batcher goes on trying the first outcome, held, and holds
		// the second behind it.
		synctest.Wait()
		if _, ok := g.doneFor(commandIDOf("2")); ok || len(h.results()) != 0 {
			t.Errorf("outcome of 2 recorded, or outcomes reported %v", h.results())
		}
		if len(cp.written) != 0 {
			t.Errorf("checkpoints %v", cp.written)
		}
	})
}

// Released records waiting for their outcome write hold a token of
// recording, recordingPerSlot per slot: once those are taken, the next
// record that ran keeps its slot, and nothing more is admitted.
func TestKeyReleasesBoundedWhileOutcomesWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGatedLedger()
		g.all = make(chan struct{})
		h := newHarness(t, withGatedLedger(t, g, true), func(o *Observer) { o.cfg.MaxInFlight = 1 })
		var recs []types.Record
		for i := 1; i <= 2*recordingPerSlot+2; i++ {
			recs = append(recs, keyedRecord(fmt.Sprint(i), fmt.Sprintf("k%d", i), "hi"))
		}
		cp := &fakeCheckpointer{}
		admitted := make(chan struct{})
		go func() {
			defer close(admitted)
			h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: recs})
		}()
		synctest.Wait()
		// recordingPerSlot outcomes wait, one more command ran and waits
		// for a token holding the one slot.
		if n := len(h.resp.calls); n != recordingPerSlot+1 {
			t.Errorf("%d commands ran while outcome writes wait, want %d", n, recordingPerSlot+1)
		}
		if len(cp.written) != 0 {
			t.Errorf("checkpoints %v before any outcome is written", cp.written)
		}
		close(g.all)
		<-admitted
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
		if n := len(h.results()); n != len(recs) {
			t.Errorf("%d outcomes, want %d", n, len(recs))
		}
		if last := fmt.Sprint(len(recs)); cp.written[len(cp.written)-1] != last {
			t.Errorf("checkpoints %v, want to end at %s", cp.written, last)
		}
	})
}
