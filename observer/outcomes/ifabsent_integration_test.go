package outcomes

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/verdict"
)

// TestITRecordDoneIfAbsent: the conditional write of an outcome whose
// shard lease was lost puts the item RecordDone would have put where no
// item holds the id, and leaves any item there (the next owner's claim or
// outcome) as it was, answering ErrItemExists; a write repeated after its
// answer was lost finds its own item, and says so the same way.
func TestITRecordDoneIfAbsent(t *testing.T) {
	e := newIT(t)
	clk := newClock()
	ctx := t.Context()
	tbl := e.worker(t, "w1", clk)
	next := e.worker(t, "w2", clk)
	done := func(id string) Done {
		start := clk.Now().Add(-2 * time.Second)
		return Done{
			Claim: Claim{CommandID: id, Digest: testDigest, Schema: "iglu:com.acme/x/jsonschema/1-0-0", Shard: "shardId-1", Sequence: "7", Responder: "webhook"},
			Final: Final{Verdict: verdict.Executed, Attempts: 2, FirstAttempt: start, LastAttempt: start.Add(time.Second), Reason: "r"},
		}
	}

	// Absent: written, the very item a bulk put leaves.
	if err := tbl.RecordDoneIfAbsent(ctx, done("absent")); err != nil {
		t.Fatalf("RecordDoneIfAbsent where no item is: %v", err)
	}
	if err := tbl.RecordDone(ctx, []Done{done("bulk")}); err != nil {
		t.Fatalf("RecordDone: %v", err)
	}
	got, want := e.rawItem(t, "absent"), e.rawItem(t, "bulk")
	if len(got) == 0 {
		t.Fatal("no item written")
	}
	delete(got, AttrCommandID)
	delete(want, AttrCommandID)
	if diff := cmp.Diff(render(want), render(got)); diff != "" {
		t.Errorf("conditionally written item differs from the bulk put's (-bulk +conditional):\n%s", diff)
	}
	peeked, err := next.Peek(ctx, []Claim{done("absent").Claim})
	if err != nil || peeked[0].Seen != SeenDone {
		t.Errorf("Peek of the conditionally recorded command = %+v, %v; want seen_done", peeked, err)
	}

	// Present: the next owner's claim, and its outcome, stay as they were.
	claimed := done("claimed")
	if err := next.Claim(ctx, claimed.Claim); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	finished := done("finished")
	finished.Final.Verdict, finished.Final.Reason = verdict.Failed, "the next owner's"
	if err := next.RecordDone(ctx, []Done{finished}); err != nil {
		t.Fatalf("RecordDone by the next owner: %v", err)
	}
	for _, d := range []Done{claimed, finished} {
		before := e.rawItem(t, d.Claim.CommandID)
		mine := d
		mine.Final = done(d.Claim.CommandID).Final
		clk.Add(time.Minute) // an overwrite would move the expiry
		err := tbl.RecordDoneIfAbsent(ctx, mine)
		if !errors.Is(err, ErrItemExists) {
			t.Errorf("%s: RecordDoneIfAbsent over an item = %v; want ErrItemExists", d.Claim.CommandID, err)
		}
		if diff := cmp.Diff(render(before), render(e.rawItem(t, d.Claim.CommandID))); diff != "" {
			t.Errorf("%s: the item present changed (-before +after):\n%s", d.Claim.CommandID, diff)
		}
	}
	if err := next.Finish(ctx, claimed.Claim.Identity(), Final{Verdict: verdict.Executed}); err != nil {
		t.Errorf("the next owner's Finish after a conditional write was refused: %v", err)
	}

	// The answer to a write that landed is lost: the retry finds its own
	// item, and answers as for anyone's.
	db := &answerLost{Client: e.db}
	lossy := New(db, Config{
		TableName: e.name, Observer: "obs", WorkerID: "w1", Retention: 72 * time.Hour,
		ClaimTimeout: 30 * time.Second, CallTimeout: 5 * time.Second, Now: clk.Now,
	})
	err = lossy.RecordDoneIfAbsent(ctx, done("lost-answer"))
	if err == nil || errors.Is(err, ErrItemExists) || !db.lost.Load() {
		t.Fatalf("RecordDoneIfAbsent whose answer was lost = %v; want the lost answer's error", err)
	}
	if err := lossy.RecordDoneIfAbsent(ctx, done("lost-answer")); !errors.Is(err, ErrItemExists) {
		t.Errorf("RecordDoneIfAbsent again = %v; want ErrItemExists", err)
	}

	// A Done no item can be made of is refused before any write.
	bad := done("bad")
	bad.Claim.Digest = ""
	if err := tbl.RecordDoneIfAbsent(ctx, bad); err == nil || errors.Is(err, ErrItemExists) {
		t.Errorf("RecordDoneIfAbsent without a digest = %v; want a refusal", err)
	}
	if item := e.rawItem(t, "bad"); len(item) != 0 {
		t.Errorf("an invalid Done was written: %v", render(item))
	}
}
