package outcomes

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sauna-io/sauna/observer/verdict"
)

const (
	schemaSlack     = "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0"
	schemaPagerDuty = "iglu:com.pagerduty.sauna.commands/create_event/jsonschema/1-0-0"
	schemaSendGrid  = "iglu:com.sendgrid.sauna.commands/send_email/jsonschema/1-0-0"
)

// conflicts records what a Table reports to OnConflict.
type conflicts struct {
	mu  sync.Mutex
	got []Conflict
}

func (c *conflicts) on(tbl *Table) *Table {
	tbl.cfg.OnConflict = func(x Conflict) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.got = append(c.got, x)
	}
	return tbl
}

func (c *conflicts) list() []Conflict {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

func finish(t *testing.T, tbl *Table, c Claim, v verdict.Outcome) {
	t.Helper()
	if err := tbl.Finish(t.Context(), c.Identity(), Final{Verdict: v}); err != nil {
		t.Fatalf("Finish %s/%s: %v", c.CommandID, c.Digest, err)
	}
}

// One commandId, three different commands (as Sauna's own test commands
// are): each runs once, each redelivery is a duplicate, and Lookup lists
// them all.
func TestITSameIDDifferentCommands(t *testing.T) {
	e := newIT(t)
	clk := newClock()
	var seen conflicts
	a, b := seen.on(e.worker(t, "worker-a", clk)), seen.on(e.worker(t, "worker-b", clk))
	slack := Claim{CommandID: "cmd-1", Digest: "d-slack", Schema: schemaSlack, Shard: "shardId-000000000000", Sequence: "1", Responder: "slack"}
	pd := Claim{CommandID: "cmd-1", Digest: "d-pd", Schema: schemaPagerDuty, Shard: "shardId-000000000000", Sequence: "2", Responder: "pagerduty"}
	sg := Claim{CommandID: "cmd-1", Digest: "d-sg", Schema: schemaSendGrid, Shard: "shardId-000000000000", Sequence: "3", Responder: "sendgrid"}

	if err := a.Claim(t.Context(), slack); err != nil {
		t.Fatalf("first command: %v", err)
	}
	// A different command under the id runs even while the first is in
	// progress, from the same worker too.
	if err := a.Claim(t.Context(), pd); err != nil {
		t.Fatalf("second command under the id, first in progress: %v", err)
	}
	finish(t, a, slack, verdict.Executed)
	finish(t, a, pd, verdict.Executed)
	if err := b.Claim(t.Context(), sg); err != nil {
		t.Fatalf("third command under the id: %v", err)
	}
	finish(t, b, sg, verdict.DeadLettered)

	got := seen.list()
	if len(got) != 2 {
		t.Fatalf("%d conflicts reported, want 2: %+v", len(got), got)
	}
	for i, want := range []Claim{pd, sg} {
		if got[i].Claim != want || got[i].Other == nil || got[i].Other.Schema != schemaSlack || got[i].Other.Digest != "d-slack" {
			t.Errorf("conflict %d: %+v (other %+v), want %s against the slack command", i, got[i].Claim, got[i].Other, want.Schema)
		}
	}

	// Redeliveries, elsewhere and by either worker: duplicates of their own
	// command, and no new conflict.
	for _, c := range []Claim{slack, pd, sg} {
		for _, w := range []*Table{a, b} {
			err := w.Claim(t.Context(), c)
			var dup *DuplicateError
			if !errors.As(err, &dup) {
				t.Fatalf("redelivery of %s = %v, want a duplicate", c.Schema, err)
			}
			if dup.Record.Digest != c.Digest || dup.Record.CommandID != "cmd-1" || dup.Record.Schema != c.Schema {
				t.Errorf("redelivery of %s is a duplicate of %+v", c.Schema, dup.Record)
			}
		}
	}
	if n := len(seen.list()); n != 2 {
		t.Errorf("%d conflicts after redeliveries, want still 2", n)
	}

	recs, err := b.Lookup(t.Context(), "cmd-1")
	if err != nil {
		t.Fatal(err)
	}
	var digests, verdicts []string
	for _, r := range recs {
		digests = append(digests, r.Digest)
		verdicts = append(verdicts, string(r.Verdict))
		if r.CommandID != "cmd-1" {
			t.Errorf("record of %s has command id %q", r.Digest, r.CommandID)
		}
	}
	if !slices.Equal(digests, []string{"d-slack", "d-pd", "d-sg"}) || !slices.Equal(verdicts, []string{"executed", "executed", "dead_lettered"}) {
		t.Errorf("Lookup: digests %v verdicts %v", digests, verdicts)
	}
	if len(recs) == 3 && (recs[0].Conflict || !recs[1].Conflict || !recs[2].Conflict || !slices.Equal(recs[0].Conflicts, []string{"d-pd", "d-sg"})) {
		t.Errorf("Lookup: conflict marks %v %v %v, first lists %v", recs[0].Conflict, recs[1].Conflict, recs[2].Conflict, recs[0].Conflicts)
	}

	// The dead-lettered one, replayed from elsewhere, runs again as itself.
	replay := sg
	replay.Shard, replay.Sequence = "shardId-000000000001", "900"
	if err := a.Claim(t.Context(), replay); err != nil {
		t.Fatalf("replay of the dead-lettered conflicting command: %v", err)
	}
	finish(t, a, replay, verdict.Executed)
	rec, err := a.Get(t.Context(), "cmd-1")
	if err != nil || rec.Digest != "d-slack" || rec.Verdict != verdict.Executed {
		t.Errorf("first command's record after the replay: %+v, %v", rec, err)
	}
	if n := len(seen.list()); n != 2 {
		t.Errorf("%d conflicts after the replay, want still 2", n)
	}
}

// A dead-lettered first command is not reopened by a different command
// under its id: that one runs as a conflict.
func TestITConflictDoesNotReopenDeadLetter(t *testing.T) {
	e := newIT(t)
	clk := newClock()
	var seen conflicts
	a := seen.on(e.worker(t, "worker-a", clk))
	first := Claim{CommandID: "cmd-1", Digest: "d1", Schema: schemaSlack, Shard: "shardId-000000000000", Sequence: "1"}
	if err := a.Claim(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	finish(t, a, first, verdict.DeadLettered)
	other := Claim{CommandID: "cmd-1", Digest: "d2", Schema: schemaPagerDuty, Shard: "shardId-000000000001", Sequence: "5"}
	if err := a.Claim(t.Context(), other); err != nil {
		t.Fatal(err)
	}
	rec, err := a.Get(t.Context(), "cmd-1")
	if err != nil || rec.Status != StatusDone || rec.Verdict != verdict.DeadLettered || rec.Digest != "d1" {
		t.Errorf("the dead-lettered first command was changed: %+v, %v", rec, err)
	}
	if n := len(seen.list()); n != 1 {
		t.Errorf("%d conflicts, want 1", n)
	}
}

// putLegacy writes an item the way the version before digests did.
func putLegacy(t *testing.T, e itEnv, id, status, verdict, shard, seq string, claimedUntil time.Time) {
	t.Helper()
	item := map[string]types.AttributeValue{
		AttrCommandID: s(id), attrStatus: s(status), attrOwner: s("old-worker"), attrToken: s("old-token"),
		attrAttempts: n(1), attrObserver: s("obs"), attrShard: s(shard), attrSequence: s(seq), attrResponder: s("slack"),
		AttrExpiresAt: n(time.Now().Add(time.Hour).Unix()),
	}
	if verdict != "" {
		item[attrVerdict] = s(verdict)
	}
	if !claimedUntil.IsZero() {
		item[attrClaimedUntil] = millis(claimedUntil)
	}
	if _, err := e.db.PutItem(t.Context(), &dynamodb.PutItemInput{TableName: aws.String(e.name), Item: item}); err != nil {
		t.Fatal(err)
	}
}

// Items of the previous version carry no digest: whatever arrives under
// their id is taken for the same command, so an upgrade runs nothing twice.
func TestITLegacyItemWithoutDigest(t *testing.T) {
	e := newIT(t)
	clk := newClock()
	var seen conflicts
	a := seen.on(e.worker(t, "worker-a", clk))

	putLegacy(t, e, "done-1", StatusDone, string(verdict.Executed), "shardId-000000000000", "1", time.Time{})
	for _, d := range []string{"d1", "d2"} {
		err := a.Claim(t.Context(), Claim{CommandID: "done-1", Digest: d, Schema: schemaSlack, Shard: "shardId-000000000000", Sequence: "1"})
		if !errors.Is(err, ErrDuplicate) {
			t.Errorf("claim %s of a legacy done item = %v, want ErrDuplicate", d, err)
		}
	}
	recs, err := a.Lookup(t.Context(), "done-1")
	if err != nil || len(recs) != 1 || recs[0].Digest != "" || recs[0].Verdict != verdict.Executed {
		t.Errorf("Lookup of a legacy item: %+v, %v", recs, err)
	}

	// A legacy claim in progress holds off every command under its id.
	putLegacy(t, e, "live-1", StatusInProgress, "", "shardId-000000000000", "2", clk.Now().Add(time.Minute))
	if err := a.Claim(t.Context(), Claim{CommandID: "live-1", Digest: "d9", Schema: schemaSlack}); !errors.Is(err, ErrClaimedElsewhere) {
		t.Errorf("claim under a live legacy claim = %v, want ErrClaimedElsewhere", err)
	}

	// A legacy dead letter replayed: claimed again, and from then on it has
	// the replayed command's digest, so another command is a conflict.
	putLegacy(t, e, "dead-1", StatusDone, string(verdict.DeadLettered), "shardId-000000000000", "3", time.Time{})
	replay := Claim{CommandID: "dead-1", Digest: "d1", Schema: schemaSlack, Shard: "shardId-000000000001", Sequence: "900"}
	if err := a.Claim(t.Context(), replay); err != nil {
		t.Fatalf("replay of a legacy dead letter: %v", err)
	}
	finish(t, a, replay, verdict.Executed)
	rec, err := a.Get(t.Context(), "dead-1")
	if err != nil || rec.Digest != "d1" || rec.Schema != schemaSlack || rec.Attempts != 2 {
		t.Errorf("legacy item after the replay: %+v, %v", rec, err)
	}
	if err := a.Claim(t.Context(), Claim{CommandID: "dead-1", Digest: "d2", Schema: schemaPagerDuty}); err != nil {
		t.Fatalf("a different command after the replay: %v", err)
	}
	if got := seen.list(); len(got) != 1 || got[0].Claim.Digest != "d2" {
		t.Errorf("conflicts %+v, want the one of d2", got)
	}
}
