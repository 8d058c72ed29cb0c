package leases

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/google/go-cmp/cmp"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	par "github.com/vmware/vmware-go-kcl-v2/clientlibrary/partition"
)

// sharedWorker returns a fixture for worker id over the shared store st.
func sharedWorker(t *testing.T, st *store, id string, listed ...string) *fixture {
	t.Helper()
	f := newFixture(t)
	f.tbl.cfg.WorkerID = id
	f.db.OnGetItem, f.db.OnUpdateItem = st.get, st.update
	if len(listed) == 0 {
		listed = []string{shard0}
	}
	f.kin.listShards = shardList(listed...)
	return f
}

// heldWithMark is held with an AdmittedTo stored before the acquisition.
func heldWithMark(t *testing.T, mark string) (*fixture, *par.ShardStatus, *store) {
	t.Helper()
	st := &store{items: items{shard0: {attrShardID: shard0}}}
	if mark != "" {
		st.set(shard0, attrAdmitted, mark)
	}
	f := sharedWorker(t, st, "me")
	shard := newShard(shard0, "")
	if err := take(f.tbl, shard); err != nil {
		t.Fatalf("acquire: %v", err)
	}
	return f, shard, st
}

func TestAdmit(t *testing.T) {
	f, _, st := heldWithMark(t, "50")
	if got := f.tbl.Admitted(shard0); got != "50" {
		t.Fatalf("Admitted = %q, want the stored 50", got)
	}
	var got []update
	f.db.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		got = append(got, reduce(in))
		return st.update(in)
	}
	for _, tc := range []struct {
		seq    string
		write  bool   // an UpdateItem is sent
		stored string // AdmittedTo afterwards
	}{
		{"40", false, "50"}, // below the inherited mark
		{"50", false, "50"}, // equal
		{"60", true, "60"},
		{"60", false, "60"}, // repeated
		{"55", false, "60"}, // below what this lease wrote
		{"100", true, "100"},
		{"99", false, "100"}, // shorter number, lexically greater
		{"49590338271490256608559692538361571095921575989136588898", true, "49590338271490256608559692538361571095921575989136588898"},
		{"9", false, "49590338271490256608559692538361571095921575989136588898"},
	} {
		got = nil
		if err := f.tbl.Admit(shard0, tc.seq); err != nil {
			t.Fatalf("Admit(%q): %v", tc.seq, err)
		}
		if (len(got) == 1) != tc.write || len(got) > 1 {
			t.Errorf("Admit(%q) wrote %v, want a write: %v", tc.seq, got, tc.write)
		}
		if s := st.item(shard0)[attrAdmitted]; s != tc.stored {
			t.Errorf("after Admit(%q): stored %q, want %q", tc.seq, s, tc.stored)
		}
		if tc.seq == "60" && tc.write {
			want := update{
				Key:       shard0,
				Update:    "SET #AdmittedTo = :admitted",
				Condition: "#AssignedTo = :me AND #LeaseTimeout = :mine",
				Names:     names(attrOwner, attrTimeout, attrAdmitted),
				Values:    map[string]string{":me": "me", ":mine": newTimeout, ":admitted": "60"},
			}
			if diff := cmp.Diff(want, got[0]); diff != "" {
				t.Errorf("admit write (-want +got):\n%s", diff)
			}
		}
	}
	// What this lease admits does not change what it inherited.
	if got := f.tbl.Admitted(shard0); got != "50" {
		t.Errorf("Admitted = %q after admitting, want the inherited 50", got)
	}
	got = nil
	for _, bad := range []string{"", "12a", "-5", checkpoint.ShardEnd} {
		err := f.tbl.Admit(shard0, bad)
		if err == nil || errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "not a sequence number") {
			t.Errorf("Admit(%q): %v, want a refusal of the value", bad, err)
		}
	}
	if len(got) != 0 {
		t.Errorf("invalid values written: %v", got)
	}
	if isClosed(f.tbl.Lost(shard0)) {
		t.Error("Lost closed")
	}
}

func TestAdmitFenced(t *testing.T) {
	f, _, st := heldWithMark(t, "50")
	assertFencedOut(t, f, st, func() error { return f.tbl.Admit(shard0, "200") }, attrAdmitted, "300")
	f.db.Reset()
	if err := f.tbl.Admit(shard0, "400"); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("second Admit: %v, want ErrLeaseLost", err)
	}
	if ops := f.db.Ops(); len(ops) != 0 {
		t.Errorf("calls after the loss: %v", ops)
	}
}

func TestAdmitWithoutLease(t *testing.T) {
	f := newFixture(t)
	if err := f.tbl.Admit(shard0, "5"); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("Admit without a lease: %v, want ErrLeaseLost", err)
	}
	if got := f.tbl.Admitted(shard0); got != "" {
		t.Errorf("Admitted without a lease = %q", got)
	}
	if ops := f.db.Ops(); len(ops) != 0 {
		t.Errorf("calls %v", ops)
	}
}

// A write whose outcome is unknown may have stored its mark: a later, lower
// Admit must not bring the mark back down.
func TestAdmitTransientError(t *testing.T) {
	f, _, st := heldWithMark(t, "50")
	timeout := errors.New("context deadline exceeded")
	st.fail, st.apply = timeout, true
	err := f.tbl.Admit(shard0, "200")
	if !errors.Is(err, timeout) || errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), shard0) {
		t.Fatalf("Admit with a failing write: %v, want the failure wrapped", err)
	}
	if isClosed(f.tbl.Lost(shard0)) {
		t.Error("Lost closed by a transient error")
	}
	if got := st.item(shard0)[attrAdmitted]; got != "200" {
		t.Fatalf("stored %q (the failed write landed)", got)
	}
	if err := f.tbl.Admit(shard0, "150"); err != nil {
		t.Fatalf("Admit after the failure: %v", err)
	}
	if got := st.item(shard0)[attrAdmitted]; got != "200" {
		t.Errorf("stored %q after a lower Admit, want 200 kept", got)
	}
	f.db.Reset()
	if err := f.tbl.Admit(shard0, "200"); err != nil {
		t.Fatal(err)
	}
	if ops := f.db.Ops(); len(ops) != 0 {
		t.Errorf("Admit of a stored mark wrote: %v", ops)
	}
}

// The acquisition reads the mark from the item as written, so a mark the
// previous owner stored after this worker's read is inherited too.
func TestAdmittedIncludesMarkWrittenDuringAcquire(t *testing.T) {
	st := &store{items: items{shard0: {attrShardID: shard0, attrOwner: "other", attrTimeout: past, attrAdmitted: "10"}}}
	f := sharedWorker(t, st, "me")
	reads := 0
	f.db.OnGetItem = func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
		out, err := st.get(in)
		if reads++; reads == 2 {
			// The acquire's own read: the previous owner's last Admit lands
			// right after it (fenced on its lease, which is still stored).
			st.set(shard0, attrAdmitted, "90")
		}
		return out, err
	}
	if err := take(f.tbl, newShard(shard0, "")); err != nil {
		t.Fatal(err)
	}
	if reads != 2 {
		t.Fatalf("%d reads, want FetchCheckpoint's and the acquire's", reads)
	}
	if got := f.tbl.Admitted(shard0); got != "90" {
		t.Errorf("Admitted = %q, want 90", got)
	}
}

// The mark is kept by every other write of the item, whatever moves the
// lease: renewal, checkpoint, claim, handoff, release, takeover, and
// re-acquisition by the same worker id. Each new owner inherits the mark
// stored when it took the lease.
func TestAdmittedAcrossOwners(t *testing.T) {
	st := &store{items: items{}}
	a, b := sharedWorker(t, st, "a"), sharedWorker(t, st, "b")
	mark := func(want string) {
		t.Helper()
		if got := st.item(shard0)[attrAdmitted]; got != want {
			t.Fatalf("stored mark %q, want %q (item %v)", got, want, st.item(shard0))
		}
	}
	inherits := func(f *fixture, want string) *par.ShardStatus {
		t.Helper()
		shard := newShard(shard0, "")
		if err := take(f.tbl, shard); err != nil {
			t.Fatalf("%s acquires: %v", f.tbl.cfg.WorkerID, err)
		}
		if got := f.tbl.Admitted(shard0); got != want {
			t.Fatalf("%s inherits %q, want %q", f.tbl.cfg.WorkerID, got, want)
		}
		return shard
	}

	// A first lease inherits nothing.
	shardA := inherits(a, "")
	if err := a.tbl.Admit(shard0, "10"); err != nil {
		t.Fatal(err)
	}
	a.clock.Add(time.Second)
	if err := a.tbl.GetLease(shardA, "a"); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if err := checkpointAt(a.tbl, shardA, "5"); err != nil {
		t.Fatal(err)
	}
	mark("10")

	// A claim by B ends A's lease at its renewal; A releases, B takes over.
	if err := b.tbl.ClaimShard(newShard(shard0, ""), "b"); err != nil {
		t.Fatalf("claim: %v", err)
	}
	mark("10")
	if err := a.tbl.GetLease(shardA, "a"); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("A's renewal after the claim: %v", err)
	}
	shardA.SetLeaseOwner("")
	if err := a.tbl.RemoveLeaseOwner(shard0); err != nil {
		t.Fatal(err)
	}
	mark("10")
	shardB := inherits(b, "10")
	if err := b.tbl.Admit(shard0, "20"); err != nil {
		t.Fatal(err)
	}

	// B hands the lease over to A at A's request.
	st.set(shard0, attrHandoffTo, "a")
	if err := b.tbl.GetLease(shardB, "b"); err != nil {
		t.Fatalf("B's renewal with a request: %v", err)
	}
	if err := b.tbl.HandOver(shard0); err != nil {
		t.Fatalf("hand over: %v", err)
	}
	// B's consumer ends and releases what is no longer its lease.
	shardB.SetLeaseOwner("")
	if err := b.tbl.RemoveLeaseOwner(shard0); err != nil {
		t.Fatal(err)
	}
	mark("20")
	inherits(a, "20")
	if err := a.tbl.Admit(shard0, "30"); err != nil {
		t.Fatal(err)
	}

	// A stops renewing; B takes the expired lease over.
	b.clock.Add(time.Hour)
	shardB = inherits(b, "30")
	if err := a.tbl.Admit(shard0, "40"); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("A admits after the takeover: %v, want ErrLeaseLost", err)
	}
	mark("30")
	if err := b.tbl.Admit(shard0, "50"); err != nil {
		t.Fatal(err)
	}

	// B releases and takes the lease again under the same id: what it
	// admitted in its earlier lease counts as possibly started.
	shardB.SetLeaseOwner("")
	if err := b.tbl.RemoveLeaseOwner(shard0); err != nil {
		t.Fatal(err)
	}
	if got := b.tbl.Admitted(shard0); got != "" {
		t.Errorf("Admitted after the release = %q", got)
	}
	mark("50")
	inherits(b, "50")
}

// A child shard's item is its own: it starts without a mark, whatever its
// parent's.
func TestChildStartsWithoutMark(t *testing.T) {
	st := &store{items: items{"p": {attrShardID: "p", attrCheckpoint: checkpoint.ShardEnd, attrAdmitted: "500"}}}
	f := sharedWorker(t, st, "me", "p", "c<p")
	if err := take(f.tbl, newShard("c", "p")); err != nil {
		t.Fatalf("acquire the child: %v", err)
	}
	if got := f.tbl.Admitted("c"); got != "" {
		t.Errorf("child inherits %q, want no mark", got)
	}
	if got := f.tbl.Admitted("p"); got != "" {
		t.Errorf("Admitted of a shard not held = %q", got)
	}
}

// A mark that is not a sequence number lets no record pass, and the first
// Admit replaces it.
func TestUnreadableMark(t *testing.T) {
	f, _, st := heldWithMark(t, "garbage")
	if got := f.tbl.Admitted(shard0); got != "garbage" || Later("1", got) {
		t.Fatalf("Admitted = %q; a record after it: %v", got, Later("1", got))
	}
	if err := f.tbl.Admit(shard0, "7"); err != nil {
		t.Fatal(err)
	}
	if got := st.item(shard0)[attrAdmitted]; got != "7" {
		t.Errorf("stored %q, want 7", got)
	}
}

func TestLater(t *testing.T) {
	const (
		big1 = "49590338271490256608559692538361571095921575989136588898"
		big2 = "49590338271490256608559692538361571095921575989136588899"
		big3 = "49590338271490256608559692538361571095921575989136589000"
	)
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"1", "", true},
		{"0", "", true},
		{"", "", false},
		{"", "1", false},
		{"5", "5", false},
		{"6", "5", true},
		{"5", "6", false},
		{"10", "9", true},
		{"9", "10", false},
		{"100", "99", true},
		{"007", "6", true},
		{"6", "007", false},
		{"007", "7", false},
		{big2, big1, true},
		{big1, big2, false},
		{big3, big2, true},
		{big1, big1, false},
		{big1, "999999999999999999999999999999999999999999999999999999", true},
		{"999999999999999999999999999999999999999999999999999999", big1, false},
		{big1, "5", true},
		{"5", big1, false},
		{"x", "1", false},
		{"1", "x", false},
		{"-1", "", false},
		{"2", "-1", false},
		{"+2", "1", false},
		{" 2", "1", false},
		{checkpoint.ShardEnd, "1", false},
		{"1", checkpoint.ShardEnd, false},
	} {
		if got := Later(tc.a, tc.b); got != tc.want {
			t.Errorf("Later(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
