package leases

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The admitted mark against dynalite: written fenced and never lowered,
// kept by renewals, checkpoints and releases, inherited by the worker that
// takes the lease over, and by the same worker id taking it again.
func TestIntegrationAdmittedMark(t *testing.T) {
	e := newITEnv(t)
	name, a, b := e.rivals(t)
	const id = "shardId-000000000000"
	const big1 = "49590338271490256608559692538361571095921575989136588898"
	stored := func(want string) {
		t.Helper()
		if got := e.item(t, name, id)[attrAdmitted]; got != want {
			t.Fatalf("stored %s = %q, want %q", attrAdmitted, got, want)
		}
	}

	shardA := newShard(id, "")
	if err := take(a, shardA); err != nil {
		t.Fatalf("A acquires: %v", err)
	}
	if got := a.Admitted(id); got != "" {
		t.Errorf("first lease inherits %q", got)
	}
	lostA := a.Lost(id)
	if err := a.Admit(id, "100"); err != nil {
		t.Fatalf("A admits 100: %v", err)
	}
	stored("100")
	if err := a.Admit(id, "99"); err != nil {
		t.Fatalf("A admits 99: %v", err)
	}
	stored("100")
	if err := checkpointAt(a, shardA, "50"); err != nil {
		t.Fatal(err)
	}
	if err := a.GetLease(shardA, "worker-a"); err != nil {
		t.Fatalf("A renews: %v", err)
	}
	stored("100")

	// A stops renewing; B takes the expired lease over and inherits A's mark.
	shardB := newShard(id, "")
	takeWithin(t, b, shardB, 10*time.Second)
	if got := b.Admitted(id); got != "100" {
		t.Errorf("B inherits %q, want 100", got)
	}
	if err := b.Admit(id, big1); err != nil {
		t.Fatalf("B admits a 56-digit number: %v", err)
	}
	before := e.item(t, name, id)
	err := a.Admit(id, "200")
	if !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("A admits after the takeover: %v, want ErrLeaseLost", err)
	}
	if !isClosed(lostA) {
		t.Error("A's Lost channel is open after a refused Admit")
	}
	if diff := cmp.Diff(before, e.item(t, name, id)); diff != "" {
		t.Errorf("row changed by the refused Admit (-before +after):\n%s", diff)
	}
	if err := b.Admit(id, "200"); err != nil {
		t.Fatalf("B admits a lower number: %v", err)
	}
	stored(big1)
	if got := b.Admitted(id); got != "100" {
		t.Errorf("B's Admitted = %q after its own Admit, want the inherited 100", got)
	}

	// B releases, and takes the lease again under the same id: what it
	// admitted before counts.
	shardB.SetLeaseOwner("")
	if err := b.RemoveLeaseOwner(id); err != nil {
		t.Fatal(err)
	}
	stored(big1)
	if err := take(b, newShard(id, "")); err != nil {
		t.Fatalf("B takes the lease again: %v", err)
	}
	if got := b.Admitted(id); got != big1 {
		t.Errorf("B inherits %q, want %s", got, big1)
	}
	if isClosed(b.Lost(id)) {
		t.Error("B's Lost channel closed")
	}
}
