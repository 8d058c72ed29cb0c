package outcomes

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/verdict"
)

func TestObserverOf(t *testing.T) {
	for day, want := range map[string]string{
		"obs#2026-05-04":      "obs",
		"a#b#2026-05-04":      "a#b", // an id may hold "#": the day is the fixed-width end
		"#2026-05-04":         "",
		"obs-2026-05-04":      "",
		"obs#2026-5-4":        "",
		"obs#notadayatall":    "",
		"2026-05-04":          "",
		"":                    "",
		"orders#2026-13-01":   "",
		"orders##2026-05-04":  "orders#",
		"orders#2026-05-04x":  "",
		"orders #2026-05-04":  "orders ",
		"obs#2026-05-04T00:0": "",
	} {
		if got := observerOf(day); got != want {
			t.Errorf("observerOf(%q) = %q, want %q", day, got, want)
		}
	}
}

// The items this version writes leave out what can be derived: the observer
// (in searchDay) and a last attempt equal to the first. They read back whole.
func TestItemsLeaveOutDerivable(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	f := newFake(t)
	m := newStore(f)
	tbl := newBatchTable(t, f, clk)
	first := now.Add(-3 * time.Second)
	claim := func(id string) Claim {
		return Claim{CommandID: id, Digest: testDigest, Schema: "iglu:a/b/jsonschema/1-0-0", Shard: "shardId-1", Sequence: "42", Responder: "slack"}
	}
	done := []Done{
		// One attempt, over within its first millisecond.
		{Claim: claim("same"), Final: Final{Verdict: verdict.Executed, Attempts: 1, FirstAttempt: first, LastAttempt: first.Add(400 * time.Microsecond)}},
		// One that took a while.
		{Claim: claim("later"), Final: Final{Verdict: verdict.Failed, Attempts: 3, FirstAttempt: first, LastAttempt: now, Reason: "failed_permanently: 400"}},
	}
	if err := tbl.RecordDone(t.Context(), done); err != nil {
		t.Fatalf("RecordDone: %v", err)
	}
	for _, id := range []string{"same", "later"} {
		if _, ok := m.items[id][attrObserver]; ok {
			t.Errorf("%s: item has %s", id, attrObserver)
		}
	}
	if _, ok := m.items["same"][attrLastAttempt]; ok {
		t.Errorf("item has %s equal to %s", attrLastAttempt, attrFirstAttempt)
	}
	if got, _ := str(m.items["later"], attrLastAttempt); got != formatTime(now) {
		t.Errorf("%s = %q, want %q", attrLastAttempt, got, formatTime(now))
	}
	base := Record{
		Observer: "obs", Shard: "shardId-1", Sequence: "42", Responder: "slack", Digest: testDigest, Schema: "iglu:a/b/jsonschema/1-0-0",
		Status: StatusDone, Owner: "worker-a", FirstAttempt: first, ExpiresAt: now.Add(48 * time.Hour).Truncate(time.Second),
	}
	wantSame, wantLater := base, base
	wantSame.CommandID, wantSame.Verdict, wantSame.Attempts, wantSame.LastAttempt = "same", verdict.Executed, 1, first
	wantLater.CommandID, wantLater.Verdict, wantLater.Attempts, wantLater.LastAttempt = "later", verdict.Failed, 3, now
	wantLater.Reason = "failed_permanently: 400"
	for _, want := range []Record{wantSame, wantLater} {
		got, err := tbl.Get(t.Context(), want.CommandID)
		if err != nil {
			t.Fatalf("Get %s: %v", want.CommandID, err)
		}
		if diff := cmp.Diff(&want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", want.CommandID, diff)
		}
	}
}

// Items written by older versions (every attribute written out, an observer
// beside searchDay, or no searchDay at all) read as they always did.
func TestOlderItemsRead(t *testing.T) {
	now := newClock().Now()
	first := now.Add(-time.Minute)
	old := map[string]types.AttributeValue{
		AttrCommandID: s("c1"), attrDigest: s(testDigest), attrOwner: s("worker-b"),
		attrFirstAttempt: s(formatTime(first)), attrLastAttempt: s(formatTime(first)),
		AttrSearchDay: s("obs#" + first.UTC().Format(time.DateOnly)), attrObserver: s("obs"),
		attrShard: s("shardId-1"), attrSequence: s("42"), attrResponder: s("slack"), attrSchema: s("iglu:a/b/jsonschema/1-0-0"),
		attrStatus: s(StatusDone), attrVerdict: s(string(verdict.Executed)), attrAttempts: n(1),
		AttrExpiresAt: n(now.Add(time.Hour).Unix()),
	}
	want := &Record{
		CommandID: "c1", Observer: "obs", Shard: "shardId-1", Sequence: "42", Responder: "slack",
		Digest: testDigest, Schema: "iglu:a/b/jsonschema/1-0-0", Status: StatusDone, Verdict: verdict.Executed,
		Owner: "worker-b", Attempts: 1, FirstAttempt: first, LastAttempt: first, ExpiresAt: now.Add(time.Hour).Truncate(time.Second),
	}
	if diff := cmp.Diff(want, parseRecord(old)); diff != "" {
		t.Errorf("older item (-want +got):\n%s", diff)
	}
	// The observer attribute wins over searchDay: a rejection records the
	// observer that rejected it, and keeps the searchDay it found.
	other := cloneItem(old)
	other[attrObserver] = s("orders")
	if got := parseRecord(other).Observer; got != "orders" {
		t.Errorf("observer = %q, want the attribute's orders", got)
	}
	// Written before the index existed: no searchDay, the observer alone.
	noDay := cloneItem(old)
	delete(noDay, AttrSearchDay)
	if got := parseRecord(noDay).Observer; got != "obs" {
		t.Errorf("item without searchDay: observer = %q, want obs", got)
	}
	// Neither time (never written by any version, but possible by hand): both zero.
	noTimes := cloneItem(old)
	delete(noTimes, attrFirstAttempt)
	delete(noTimes, attrLastAttempt)
	if got := parseRecord(noTimes); !got.FirstAttempt.IsZero() || !got.LastAttempt.IsZero() {
		t.Errorf("item without times: first %v, last %v; want zero", got.FirstAttempt, got.LastAttempt)
	}
}

func cloneItem(item map[string]types.AttributeValue) map[string]types.AttributeValue {
	out := make(map[string]types.AttributeValue, len(item))
	for k, v := range item {
		out[k] = v
	}
	return out
}
