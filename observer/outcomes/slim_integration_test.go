package outcomes

import (
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/verdict"
)

// TestITOlderAndSlimItems: on the same table, items this version writes
// (without observer, and without a lastAttempt equal to firstAttempt) and
// items as older versions wrote them (every attribute) are read alike by
// Get, Search and Peek, and Claim takes over an older dead letter as before.
func TestITOlderAndSlimItems(t *testing.T) {
	e := newIT(t)
	clk := newClock()
	tbl := e.worker(t, "w1", clk)
	ctx := t.Context()
	first := clk.Now()
	const schema = "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0"
	at := func(id string) Claim {
		return Claim{CommandID: id, Digest: "d-" + id, Schema: schema, Shard: "shardId-1", Sequence: "seq-" + id, Responder: "slack"}
	}
	// As the previous version's RecordDone and Claim+Finish wrote them.
	older := func(id string, v verdict.Outcome) map[string]types.AttributeValue {
		return map[string]types.AttributeValue{
			AttrCommandID: s(id), attrDigest: s("d-" + id), attrOwner: s("w0"),
			attrFirstAttempt: s(formatTime(first)), attrLastAttempt: s(formatTime(first)),
			AttrSearchDay: s(tbl.searchDay(first)), attrObserver: s("obs"),
			attrShard: s("shardId-1"), attrSequence: s("seq-" + id), attrResponder: s("slack"), attrSchema: s(schema),
			attrStatus: s(StatusDone), attrVerdict: s(string(v)), attrAttempts: n(1),
			AttrExpiresAt: n(first.Add(72 * time.Hour).Unix()),
		}
	}
	for _, it := range []map[string]types.AttributeValue{older("old-done", verdict.Executed), older("old-dead", verdict.DeadLettered)} {
		if _, err := e.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(e.name), Item: it}); err != nil {
			t.Fatalf("PutItem: %v", err)
		}
	}
	if err := tbl.RecordDone(ctx, []Done{
		{Claim: at("new-done"), Final: Final{Verdict: verdict.Executed, Attempts: 1, FirstAttempt: first, LastAttempt: first}},
	}); err != nil {
		t.Fatalf("RecordDone: %v", err)
	}
	slim := e.rawItem(t, "new-done")
	for _, attr := range []string{attrObserver, attrLastAttempt} {
		if _, ok := slim[attr]; ok {
			t.Errorf("new item has %s", attr)
		}
	}

	want := func(id, owner string) *Record {
		return &Record{
			CommandID: id, Observer: "obs", Shard: "shardId-1", Sequence: "seq-" + id, Responder: "slack",
			Digest: "d-" + id, Schema: schema, Status: StatusDone, Verdict: verdict.Executed, Owner: owner,
			Attempts: 1, FirstAttempt: first, LastAttempt: first, ExpiresAt: first.Add(72 * time.Hour).Truncate(time.Second),
		}
	}
	for id, owner := range map[string]string{"old-done": "w0", "new-done": "w1"} {
		got, err := tbl.Get(ctx, id)
		if err != nil {
			t.Fatalf("Get %s: %v", id, err)
		}
		if diff := cmp.Diff(want(id, owner), got); diff != "" {
			t.Errorf("Get %s (-want +got):\n%s", id, diff)
		}
	}
	found := map[string]*Record{}
	err := tbl.Search(ctx, Search{Since: first, Until: first.Add(time.Second), Outcomes: []string{string(verdict.Executed)}}, func(r *Record) error {
		found[r.CommandID] = r
		return nil
	})
	if err != nil {
		t.Fatalf("Search: %v", err)
	}
	if diff := cmp.Diff(map[string]*Record{"old-done": want("old-done", "w0"), "new-done": want("new-done", "w1")}, found); diff != "" {
		t.Errorf("Search (-want +got):\n%s", diff)
	}
	peeked, err := tbl.Peek(ctx, []Claim{at("old-done"), at("new-done"), at("old-dead")})
	if err != nil {
		t.Fatalf("Peek: %v", err)
	}
	if got := []Seen{peeked[0].Seen, peeked[1].Seen, peeked[2].Seen}; !cmp.Equal(got, []Seen{SeenDone, SeenDone, SeenDone}) {
		t.Errorf("Peek = %v, want all seen_done", got)
	}

	// The older dead letter, replayed from elsewhere: taken over, and left
	// with no observer attribute to contradict its searchDay.
	clk.Add(time.Second)
	replay := at("old-dead")
	replay.Shard, replay.Sequence = "shardId-2", "seq-replay"
	if err := tbl.Claim(ctx, replay); err != nil {
		t.Fatalf("Claim of the replayed older dead letter: %v", err)
	}
	if err := tbl.Finish(ctx, replay.Identity(), Final{Verdict: verdict.Executed}); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if _, ok := e.rawItem(t, "old-dead")[attrObserver]; ok {
		t.Errorf("taken-over item kept its observer attribute")
	}
	rec, err := tbl.Get(ctx, "old-dead")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if rec.Observer != "obs" || rec.Attempts != 2 || rec.Verdict != verdict.Executed || !rec.FirstAttempt.Equal(first) ||
		!rec.LastAttempt.Equal(clk.Now()) || rec.Sequence != "seq-replay" || rec.Owner != "w1" {
		t.Errorf("replayed older dead letter: %+v", rec)
	}
	var dup *DuplicateError
	if err := tbl.Claim(ctx, at("old-done")); !errors.As(err, &dup) || dup.Record.Observer != "obs" {
		t.Errorf("Claim of an older done item = %v, want a duplicate of observer obs", err)
	}
}
