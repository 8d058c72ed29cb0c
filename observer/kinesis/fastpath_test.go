package kinesis

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"

	"github.com/sauna-io/sauna/observer/command"
	"github.com/sauna-io/sauna/observer/outcomes"
)

// withFastPath turns idempotency on with the fast path: ledger, the
// process's memory and outcome batcher, and when the shard's previous
// lease ended (zero: it had none).
func withFastPath(t *testing.T, ledger *fakeLedger, previousEnd time.Time) func(o *Observer) {
	return func(o *Observer) {
		o.ledger = ledger
		o.memory = command.NewMemory()
		o.batcher = command.NewBatcher(ledger, o.log)
		o.batcher.Start()
		t.Cleanup(func() { o.batcher.Stop(context.Background()) })
		o.previousLeaseEnd = func(string) time.Time { return previousEnd }
	}
}

// arrivedAt stamps r with its arrival in the stream.
func arrivedAt(r types.Record, at time.Time) types.Record {
	r.ApproximateArrivalTimestamp = &at
	return r
}

func (f *fakeLedger) claimedSeqs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var s []string
	for _, c := range f.claims {
		s = append(s, c.Sequence)
	}
	slices.Sort(s)
	return s
}

// A batch costs one Peek per 100 records and outcome writes of up to 25,
// and no claim.
func TestFastPathCosts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ledger := newFakeLedger()
		h := newHarness(t, withFastPath(t, ledger, time.Time{}), func(o *Observer) { o.cfg.MaxInFlight = 64 })
		var recs []types.Record
		for i := 1; i <= 250; i++ {
			recs = append(recs, keyedRecord(fmt.Sprint(i), fmt.Sprintf("k%d", i%50), "hi"))
		}
		cp := &fakeCheckpointer{}
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: recs})
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
		if got := len(h.results()); got != 250 {
			t.Fatalf("%d outcomes, want 250", got)
		}
		if !slices.Equal(ledger.peeks, []int{100, 100, 50}) {
			t.Errorf("Peek sizes %v, want [100 100 50]", ledger.peeks)
		}
		total := 0
		for _, b := range ledger.batches {
			total += b
		}
		t.Logf("outcome writes %v", ledger.batches)
		if len(ledger.claims) != 0 || total != 250 || len(ledger.batches) >= 250/5 {
			t.Errorf("%d claims, outcome writes %v; want none, and 250 outcomes in far fewer writes", len(ledger.claims), ledger.batches)
		}
		if cp.written[len(cp.written)-1] != "250" {
			t.Errorf("checkpoints %v", cp.written)
		}
	})
}

// After a takeover, the records that arrived before the previous lease
// ended (give or take the clocks' skew) are claimed one by one, as its
// owner may have started them without a claim, and so is one whose arrival
// is unknown; one that owner recorded done is not run again. Those that
// arrived later run without a claim.
func TestFastPathAfterTakeover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ended := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
		ledger := newFakeLedger()
		h := newHarness(t, withFastPath(t, ledger, ended))
		recs := []types.Record{
			arrivedAt(keyedRecord("1", "a", "one"), ended.Add(-time.Minute)),
			arrivedAt(keyedRecord("2", "b", "two"), ended.Add(-time.Second)),
			keyedRecord("3", "c", "three"),
			arrivedAt(keyedRecord("4", "d", "four"), ended.Add(arrivalSkew+time.Millisecond)),
			arrivedAt(keyedRecord("5", "e", "five"), ended.Add(time.Hour)),
		}
		ledger.done[identityOf(t, recs[1])] = outcomes.Final{Verdict: "executed"}
		cp := &fakeCheckpointer{}
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: recs})
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
		want := []string{"1=executed", "2=duplicate", "3=executed", "4=executed", "5=executed"}
		if got := h.results(); !slices.Equal(got, want) {
			t.Errorf("outcomes %v, want %v", got, want)
		}
		if got := ledger.claimedSeqs(); !slices.Equal(got, []string{"1", "2", "3"}) {
			t.Errorf("claims for %v, want for the records that may have been started: [1 2 3]", got)
		}
		if !slices.Equal(ledger.peeks, []int{2}) {
			t.Errorf("Peek sizes %v, want the two records that arrived after the previous lease", ledger.peeks)
		}
		if slices.Contains(h.resp.calls, "two") {
			t.Error("a command recorded done by the previous owner ran again")
		}
		for _, seq := range []string{"4", "5"} {
			if _, ok := ledger.doneFor(fmt.Sprintf("00000000-0000-4000-8000-%012s", seq)); !ok {
				t.Errorf("command %s has no recorded outcome", seq)
			}
		}
	})
}

// The same command put twice on one shard, under two keys so that both
// are in flight together, runs once, without any claim but the second
// record's, which finds it done.
func TestFastPathSameIDOneShard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ledger := newFakeLedger()
		h := newHarness(t, withFastPath(t, ledger, time.Time{}))
		cp := &fakeCheckpointer{}
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{
			keyedRecord("1", "a", "same"), sameAs(keyedRecord("2", "b", "same"), "1"),
		}})
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
		// Either may go first.
		if got := h.results(); !slices.Equal(got, []string{"1=executed", "2=duplicate"}) && !slices.Equal(got, []string{"1=duplicate", "2=executed"}) {
			t.Errorf("outcomes %v, want one executed and one duplicate", got)
		}
		if len(h.resp.calls) != 1 {
			t.Errorf("responder calls %v, want one", h.resp.calls)
		}
	})
}

// sameAs gives r the commandId keyedRecord gives to sequence number seq.
func sameAs(r types.Record, seq string) types.Record {
	id := fmt.Sprintf("00000000-0000-4000-8000-%012s", *r.SequenceNumber)
	r.Data = []byte(strings.Replace(string(r.Data), id, fmt.Sprintf("00000000-0000-4000-8000-%012s", seq), 1))
	return r
}
