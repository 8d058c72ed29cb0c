package outcomes

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/internal/testclock"
	"github.com/sauna-io/sauna/observer/internal/testlog"
	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/verdict"
)

// These tests run against dynalite (scripts/test.sh, or emulators.sh start +
// env) and skip without it. Clock-dependent cases give each worker its own
// settable clock instead of waiting for claims to expire.

type itEnv struct {
	db   *dynamodb.Client
	name string
}

// newIT creates (through Init) a fresh table, deleted when the test ends.
func newIT(t *testing.T) itEnv {
	t.Helper()
	env := emulator.Require(t)
	e := itEnv{db: env.DynamoDB(t), name: emulator.UniqueName(t, "outcomes")}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = e.db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(e.name)})
	})
	if err := e.worker(t, "setup", newClock()).Init(t.Context()); err != nil {
		t.Fatalf("Init: %v", err)
	}
	return e
}

func (e itEnv) worker(t *testing.T, id string, clk *testclock.Clock) *Table {
	return New(e.db, Config{
		TableName:    e.name,
		Observer:     "obs",
		WorkerID:     id,
		Retention:    72 * time.Hour,
		ClaimTimeout: 30 * time.Second,
		CallTimeout:  5 * time.Second,
		Logger:       testlog.Logger(t).With("worker", id),
		Now:          clk.Now,
	})
}

func TestITInit(t *testing.T) {
	env := emulator.Require(t)
	db := env.DynamoDB(t)
	name := emulator.UniqueName(t, "outcomes")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)})
	})
	// Concurrent starters all succeed, and so does a later one.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			tbl := New(db, Config{TableName: name, WorkerID: fmt.Sprint("w", i), Logger: testlog.Logger(t), CallTimeout: 5 * time.Second})
			errs[i] = tbl.Init(t.Context())
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("starter %d: Init: %v", i, err)
		}
	}
	if err := New(db, Config{TableName: name, Logger: testlog.Logger(t)}).Init(t.Context()); err != nil {
		t.Errorf("Init on the existing table: %v", err)
	}
	out, err := db.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	if bm := out.Table.BillingModeSummary; bm == nil || bm.BillingMode != types.BillingModePayPerRequest {
		t.Errorf("billing mode %+v, want PAY_PER_REQUEST", bm)
	}
	if out.Table.TableStatus != types.TableStatusActive {
		t.Errorf("status %s, want ACTIVE", out.Table.TableStatus)
	}
}

func TestITFirstClaimWins(t *testing.T) {
	e := newIT(t)
	clk := newClock()
	workers := make([]*Table, 4)
	for i := range workers {
		workers[i] = e.worker(t, fmt.Sprint("worker-", i), clk)
	}
	for round := range 10 {
		id := fmt.Sprintf("cmd-%d", round)
		errs := make([]error, len(workers))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, w := range workers {
			wg.Go(func() {
				<-start
				errs[i] = w.Claim(t.Context(), Claim{CommandID: id, Digest: testDigest, Shard: "shardId-000000000000", Sequence: fmt.Sprint(round)})
			})
		}
		close(start)
		wg.Wait()
		winners := 0
		for i, err := range errs {
			switch {
			case err == nil:
				winners++
			case errors.Is(err, ErrClaimedElsewhere):
			default:
				t.Errorf("round %d, worker %d: Claim = %v", round, i, err)
			}
		}
		if winners != 1 {
			t.Errorf("round %d: %d claims won, want exactly 1 (%v)", round, winners, errs)
		}
	}
}

func TestITDoneIsDuplicate(t *testing.T) {
	e := newIT(t)
	clk := newClock()
	a, b := e.worker(t, "worker-a", clk), e.worker(t, "worker-b", clk)
	c := Claim{CommandID: "cmd-1", Digest: testDigest, Shard: "shardId-000000000001", Sequence: "4959", Responder: "slack"}
	start := clk.Now()
	if err := a.Claim(t.Context(), c); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	clk.Add(2 * time.Second)
	if err := a.Extend(t.Context(), c.Identity()); err != nil {
		t.Fatalf("Extend: %v", err)
	}
	clk.Add(time.Second)
	if err := a.Finish(t.Context(), c.Identity(), Final{Verdict: verdict.Executed}); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	want := &Record{
		CommandID: "cmd-1", Observer: "obs", Shard: "shardId-000000000001", Sequence: "4959", Responder: "slack", Digest: testDigest,
		Status: StatusDone, Verdict: verdict.Executed, Owner: "worker-a", Attempts: 2,
		FirstAttempt: start, LastAttempt: start.Add(2 * time.Second),
		ExpiresAt: clk.Now().Add(72 * time.Hour).Truncate(time.Second),
	}
	// Redelivered, to another worker and to the same one.
	for _, w := range []*Table{b, a} {
		err := w.Claim(t.Context(), c)
		var dup *DuplicateError
		if !errors.As(err, &dup) || !errors.Is(err, ErrDuplicate) {
			t.Fatalf("Claim of a done command = %v, want a *DuplicateError", err)
		}
		if diff := cmp.Diff(want, dup.Record); diff != "" {
			t.Errorf("duplicate's record (-want +got):\n%s", diff)
		}
	}
	got, err := b.Get(t.Context(), c.CommandID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Get (-want +got):\n%s", diff)
	}
	if _, err := b.Get(t.Context(), "never-seen"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an unknown command = %v, want ErrNotFound", err)
	}
}

func TestITLiveClaimRefusedExpiredTakenOver(t *testing.T) {
	e := newIT(t)
	clkA, clkB := newClock(), newClock()
	a, b := e.worker(t, "worker-a", clkA), e.worker(t, "worker-b", clkB)
	c := Claim{CommandID: "cmd-1", Digest: testDigest, Shard: "shardId-000000000000", Sequence: "1", Responder: "webhook"}
	first := clkA.Now()
	if err := a.Claim(t.Context(), c); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	clkB.Add(29 * time.Second)
	if err := b.Claim(t.Context(), c); !errors.Is(err, ErrClaimedElsewhere) {
		t.Fatalf("Claim of a live claim = %v, want ErrClaimedElsewhere", err)
	}
	// a crashes mid-call; once its claim has run out, b takes over and the
	// attempts go on counting from a's.
	clkB.Add(time.Second)
	if err := b.Claim(t.Context(), c); err != nil {
		t.Fatalf("Claim of an expired claim: %v", err)
	}
	rec, err := b.Get(t.Context(), c.CommandID)
	if err != nil {
		t.Fatal(err)
	}
	want := &Record{
		CommandID: "cmd-1", Observer: "obs", Shard: "shardId-000000000000", Sequence: "1", Responder: "webhook", Digest: testDigest,
		Status: StatusInProgress, Owner: "worker-b", Attempts: 2,
		FirstAttempt: first, LastAttempt: clkB.Now(), ClaimedUntil: clkB.Now().Add(30 * time.Second),
		ExpiresAt: clkB.Now().Add(72 * time.Hour).Truncate(time.Second),
	}
	if diff := cmp.Diff(want, rec); diff != "" {
		t.Errorf("record after takeover (-want +got):\n%s", diff)
	}
}

func TestITFinishFenced(t *testing.T) {
	e := newIT(t)
	clkA, clkB := newClock(), newClock()
	// Same worker id: a restarted process must not be able to pass for its
	// earlier self.
	a, b := e.worker(t, "worker-x", clkA), e.worker(t, "worker-x", clkB)
	c := Claim{CommandID: "cmd-1", Digest: testDigest, Shard: "shardId-000000000000", Sequence: "1"}
	if err := a.Claim(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	clkB.Add(31 * time.Second)
	if err := b.Claim(t.Context(), c); err != nil {
		t.Fatalf("takeover: %v", err)
	}
	// a wakes up: its claim is gone.
	if err := a.Extend(t.Context(), c.Identity()); !errors.Is(err, ErrClaimedElsewhere) {
		t.Errorf("Extend by the old owner = %v, want ErrClaimedElsewhere", err)
	}
	if err := b.Finish(t.Context(), c.Identity(), Final{Verdict: verdict.Executed}); err != nil {
		t.Fatalf("Finish by the new owner: %v", err)
	}
	a2 := e.worker(t, "worker-x", clkA)
	if err := a2.Claim(t.Context(), c); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("Claim after Finish = %v", err)
	}
	// The old owner's outcome, written late, must not replace the new one.
	old := e.worker(t, "worker-x", clkA)
	if err := old.Claim(t.Context(), Claim{CommandID: "cmd-2", Digest: testDigest}); err != nil {
		t.Fatal(err)
	}
	clkB.Add(time.Minute)
	if err := b.Claim(t.Context(), Claim{CommandID: "cmd-2", Digest: testDigest}); err != nil {
		t.Fatalf("takeover of cmd-2: %v", err)
	}
	if err := b.Finish(t.Context(), ident("cmd-2"), Final{Verdict: verdict.Executed}); err != nil {
		t.Fatal(err)
	}
	if err := old.Finish(t.Context(), ident("cmd-2"), Final{Verdict: verdict.DeadLettered, Reason: "failed_permanently"}); !errors.Is(err, ErrClaimedElsewhere) {
		t.Errorf("Finish by the old owner = %v, want ErrClaimedElsewhere", err)
	}
	rec, err := b.Get(t.Context(), "cmd-2")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Verdict != verdict.Executed || rec.Reason != "" || rec.Status != StatusDone {
		t.Errorf("record after a fenced Finish: %+v", rec)
	}
	// Nor can the old owner's Release expire the new owner's claim.
	if err := old.Claim(t.Context(), Claim{CommandID: "cmd-3", Digest: testDigest}); err != nil {
		t.Fatal(err)
	}
	if err := b.Claim(t.Context(), Claim{CommandID: "cmd-3", Digest: testDigest}); err != nil {
		t.Fatalf("takeover of cmd-3: %v", err)
	}
	if err := old.Release(t.Context(), ident("cmd-3")); err != nil {
		t.Fatalf("Release by the old owner: %v", err)
	}
	if err := e.worker(t, "worker-z", clkB).Claim(t.Context(), Claim{CommandID: "cmd-3", Digest: testDigest}); !errors.Is(err, ErrClaimedElsewhere) {
		t.Errorf("Claim after a stale Release = %v, want ErrClaimedElsewhere", err)
	}
}

func TestITRelease(t *testing.T) {
	e := newIT(t)
	clk := newClock()
	a, b := e.worker(t, "worker-a", clk), e.worker(t, "worker-b", clk)
	if err := a.Claim(t.Context(), Claim{CommandID: "cmd-1", Digest: testDigest}); err != nil {
		t.Fatal(err)
	}
	if err := a.Release(t.Context(), ident("cmd-1")); err != nil {
		t.Fatalf("Release: %v", err)
	}
	// No waiting for ClaimTimeout.
	if err := b.Claim(t.Context(), Claim{CommandID: "cmd-1", Digest: testDigest}); err != nil {
		t.Fatalf("Claim after Release: %v", err)
	}
	rec, err := b.Get(t.Context(), "cmd-1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Owner != "worker-b" || rec.Attempts != 2 {
		t.Errorf("after Release and Claim: owner %q, attempts %d; want worker-b, 2", rec.Owner, rec.Attempts)
	}
}

func TestITDeadLetteredReplay(t *testing.T) {
	e := newIT(t)
	clk := newClock()
	a, b := e.worker(t, "worker-a", clk), e.worker(t, "worker-b", clk)
	orig := Claim{CommandID: "cmd-1", Digest: testDigest, Shard: "shardId-000000000000", Sequence: "100", Responder: "slack"}
	if err := a.Claim(t.Context(), orig); err != nil {
		t.Fatal(err)
	}
	if err := a.Finish(t.Context(), ident("cmd-1"), Final{Verdict: verdict.DeadLettered, Reason: "failed_permanently: 400 invalid_payload"}); err != nil {
		t.Fatal(err)
	}
	// Redelivery of the same record: already handled.
	if err := b.Claim(t.Context(), orig); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("redelivery of a dead-lettered record = %v, want ErrDuplicate", err)
	}
	// The replayed record arrives elsewhere: it runs again.
	replay := Claim{CommandID: "cmd-1", Digest: testDigest, Shard: "shardId-000000000001", Sequence: "900", Responder: "slack"}
	if err := b.Claim(t.Context(), replay); err != nil {
		t.Fatalf("Claim of a replayed command: %v", err)
	}
	rec, err := b.Get(t.Context(), "cmd-1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != StatusInProgress || rec.Verdict != "" || rec.Reason != "" || rec.Attempts != 2 || rec.Sequence != "900" {
		t.Errorf("replayed command's record: %+v", rec)
	}
	if err := b.Finish(t.Context(), ident("cmd-1"), Final{Verdict: verdict.Executed}); err != nil {
		t.Fatal(err)
	}
	// Replaying it once more finds it done.
	if err := a.Claim(t.Context(), Claim{CommandID: "cmd-1", Digest: testDigest, Shard: "shardId-000000000002", Sequence: "950"}); !errors.Is(err, ErrDuplicate) {
		t.Errorf("second replay = %v, want ErrDuplicate", err)
	}
}

func TestITExpiresAt(t *testing.T) {
	e := newIT(t)
	clk := newClock()
	a := e.worker(t, "worker-a", clk)
	if err := a.Claim(t.Context(), Claim{CommandID: "cmd-1", Digest: testDigest}); err != nil {
		t.Fatal(err)
	}
	raw := func() string {
		out, err := e.db.GetItem(t.Context(), &dynamodb.GetItemInput{
			TableName: aws.String(e.name), Key: map[string]types.AttributeValue{AttrCommandID: s("cmd-1")}, ConsistentRead: aws.Bool(true),
		})
		if err != nil {
			t.Fatal(err)
		}
		v, ok := out.Item[AttrExpiresAt].(*types.AttributeValueMemberN)
		if !ok {
			t.Fatalf("expiresAt is not a number: %#v", out.Item[AttrExpiresAt])
		}
		return v.Value
	}
	if got, want := raw(), fmt.Sprint(clk.Now().Add(72*time.Hour).Unix()); got != want {
		t.Errorf("expiresAt after Claim = %s, want %s (now + retention, epoch seconds)", got, want)
	}
	// The window counts from the outcome.
	clk.Add(10 * time.Minute)
	if err := a.Finish(t.Context(), ident("cmd-1"), Final{Verdict: verdict.Executed}); err != nil {
		t.Fatal(err)
	}
	if got, want := raw(), fmt.Sprint(clk.Now().Add(72*time.Hour).Unix()); got != want {
		t.Errorf("expiresAt after Finish = %s, want %s", got, want)
	}
}
