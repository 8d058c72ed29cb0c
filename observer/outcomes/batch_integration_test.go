package outcomes

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/internal/testclock"
	"github.com/sauna-io/sauna/observer/verdict"
)

// rawItem reads an item as stored.
func (e itEnv) rawItem(t *testing.T, key string) map[string]types.AttributeValue {
	t.Helper()
	out, err := e.db.GetItem(t.Context(), &dynamodb.GetItemInput{
		TableName: aws.String(e.name), Key: map[string]types.AttributeValue{AttrCommandID: s(key)}, ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatalf("GetItem %s: %v", key, err)
	}
	return out.Item
}

// TestITRecordDone: an outcome recorded without a claim is the item Claim and
// Finish leave (but for the claim token), and everything that reads the
// table takes it so: Peek sees it done, Claim answers it as a duplicate (or
// claims a dead letter replayed elsewhere again), Lookup and Search find it.
func TestITRecordDone(t *testing.T) {
	e := newIT(t)
	clk := newClock()
	tbl := e.worker(t, "w1", clk)
	ctx := t.Context()
	const schema = "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0"
	at := func(id string) Claim {
		return Claim{CommandID: id, Digest: "d-" + id, Schema: schema, Shard: "shardId-1", Sequence: "seq-" + id, Responder: "slack"}
	}
	start := clk.Now()
	clk.Add(2 * time.Second)
	finals := map[string]Final{
		"executed": {Verdict: verdict.Executed, Attempts: 1, FirstAttempt: start, LastAttempt: start},
		"dead":     {Verdict: verdict.DeadLettered, Attempts: 1, FirstAttempt: start, LastAttempt: start, Reason: "failed_permanently: 400"},
	}

	// The same outcomes, once claimed and finished, once recorded in bulk.
	for name, f := range finals {
		claimClk := testclock.New(start)
		claimer := e.worker(t, "w1", claimClk)
		c := at("claimed-" + name)
		if err := claimer.Claim(ctx, c); err != nil {
			t.Fatalf("Claim: %v", err)
		}
		claimClk.Add(clk.Now().Sub(start))
		if err := claimer.Finish(ctx, c.Identity(), f); err != nil {
			t.Fatalf("Finish: %v", err)
		}
	}
	var done []Done
	for name, f := range finals {
		done = append(done, Done{Claim: at("fast-" + name), Final: f})
	}
	// Enough more to take several requests of each kind.
	for i := range 120 {
		done = append(done, Done{Claim: at(fmt.Sprint("bulk-", i)), Final: Final{Verdict: verdict.Executed}})
	}
	if err := tbl.RecordDone(ctx, done); err != nil {
		t.Fatalf("RecordDone: %v", err)
	}
	for name := range finals {
		claimed, fast := e.rawItem(t, "claimed-"+name), e.rawItem(t, "fast-"+name)
		if _, ok := fast[attrToken]; ok {
			t.Errorf("%s: recorded item has a claim token", name)
		}
		// Apart from the key (and so the digest, sequence and token), the
		// same item.
		for _, attr := range []string{AttrCommandID, attrDigest, attrSequence, attrToken} {
			delete(claimed, attr)
			delete(fast, attr)
		}
		if diff := cmp.Diff(render(claimed), render(fast)); diff != "" {
			t.Errorf("%s: recorded item differs from the claimed and finished one (-claimed +recorded):\n%s", name, diff)
		}
	}

	// Peek: every recorded command done, a replay of the dead letter
	// elsewhere contended, an unknown id unseen.
	var claims []Claim
	for _, d := range done {
		claims = append(claims, d.Claim)
	}
	replay := at("fast-dead")
	replay.Shard, replay.Sequence = "shardId-2", "seq-replay"
	claims = append(claims, replay, at("never"))
	peeked, err := tbl.Peek(ctx, claims)
	if err != nil {
		t.Fatalf("Peek: %v", err)
	}
	for i, p := range peeked[:len(done)] {
		if p.Seen != SeenDone {
			t.Errorf("%s: Peek %v, want seen_done", claims[i].CommandID, p.Seen)
		}
	}
	if got := peeked[len(done)].Seen; got != Contended {
		t.Errorf("replayed dead letter: Peek %v, want contended", got)
	}
	if got := peeked[len(done)+1].Seen; got != Unseen {
		t.Errorf("unknown id: Peek %v, want unseen", got)
	}

	// Claim: the duplicate Peek announced, and the replay claimed again.
	other := e.worker(t, "w2", clk)
	err = other.Claim(ctx, claims[0])
	var dup *DuplicateError
	if !errors.As(err, &dup) {
		t.Fatalf("Claim of a recorded command = %v, want a duplicate", err)
	}
	if diff := cmp.Diff(dup, peeked[0].Duplicate); diff != "" {
		t.Errorf("Peek's duplicate differs from Claim's (-claim +peek):\n%s", diff)
	}
	if err := other.Claim(ctx, replay); err != nil {
		t.Errorf("Claim of the replayed dead letter: %v", err)
	}

	// Lookup and Search find them as they find claimed ones.
	recs, err := tbl.Lookup(ctx, "fast-executed")
	if err != nil || len(recs) != 1 || recs[0].Outcome() != string(verdict.Executed) || recs[0].Owner != "w1" || !recs[0].FirstAttempt.Equal(start) {
		t.Errorf("Lookup = %+v, %v; want the executed record", recs, err)
	}
	var found []string
	err = tbl.Search(ctx, Search{Since: start.Add(-time.Minute), Until: clk.Now().Add(time.Minute), Outcomes: []string{string(verdict.Executed)}, Responder: "slack"},
		func(r *Record) error {
			found = append(found, r.CommandID)
			return nil
		})
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	for _, id := range []string{"claimed-executed", "fast-executed", "bulk-0", "bulk-119"} {
		if !slices.Contains(found, id) {
			t.Errorf("Search did not find %s (found %d)", id, len(found))
		}
	}
	if want := 2 + 120; len(found) != want {
		t.Errorf("Search found %d executed, want %d", len(found), want)
	}
}

// render makes an item comparable.
func render(item map[string]types.AttributeValue) map[string]string {
	out := make(map[string]string, len(item))
	for name, v := range item {
		switch v := v.(type) {
		case *types.AttributeValueMemberS:
			out[name] = "S:" + v.Value
		case *types.AttributeValueMemberN:
			out[name] = "N:" + v.Value
		case *types.AttributeValueMemberSS:
			out[name] = fmt.Sprint("SS:", v.Value)
		default:
			out[name] = fmt.Sprintf("%T", v)
		}
	}
	return out
}
