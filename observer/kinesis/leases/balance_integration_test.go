package leases

import (
	"errors"
	"strings"
	"testing"
	"time"

	par "github.com/vmware/vmware-go-kcl-v2/clientlibrary/partition"

	"github.com/sauna-io/sauna/observer/internal/testlog"
)

// balancedTable is a worker in the census. Nothing in these tests waits for
// a lease or a census entry to expire, so both last a minute: a test slowed
// by a busy machine past a shorter one would find a worker it just saw gone
// from the census, or a lease it expects live expired.
func (e itEnv) balancedTable(t *testing.T, name, stream, worker string) *Table {
	t.Helper()
	tbl := New(e.db, e.kin, Config{
		TableName:     name,
		StreamName:    stream,
		WorkerID:      worker,
		LeaseDuration: time.Minute,
		CallTimeout:   5 * time.Second,
		Logger:        testlog.Logger(t).With("worker", worker),
		Balance:       true,
	})
	if err := tbl.Init(); err != nil {
		t.Fatalf("Init: %v", err)
	}
	if err := tbl.Heartbeat(); err != nil {
		t.Fatal(err)
	}
	return tbl
}

// A graceful handoff: B, holding nothing, asks A (holding both shards) for
// one; A sees the request at its next renewal, hands the lease over at its
// checkpoint, and only B may take it, from there. A stopping A then
// releases its other lease to B, its only live peer.
func TestIntegrationHandoff(t *testing.T) {
	e := newITEnv(t)
	stream, name := e.streamAndTable(t, 2)
	e.dropOnCleanup(t, name)
	a := e.balancedTable(t, name, stream, "worker-a")
	if err := a.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	ids := []string{"shardId-000000000000", "shardId-000000000001"}
	held := map[string]*par.ShardStatus{}
	for _, id := range ids {
		held[id] = newShard(id, "")
		if err := take(a, held[id]); err != nil {
			t.Fatalf("A alone takes %s: %v", id, err)
		}
		held[id].SetCheckpoint("100")
		if err := a.CheckpointSequence(held[id]); err != nil {
			t.Fatal(err)
		}
	}

	b := e.balancedTable(t, name, stream, "worker-b")
	c := e.newTable(t, name, stream, "worker-c", 10*time.Second)
	if _, err := b.balanceOnce(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if v := b.Snapshot(); len(v.Workers) != 2 || v.Workable != 2 || v.Ceil != 1 {
		t.Errorf("B's view: %+v", v)
	}
	var asked string
	for _, id := range ids {
		if e.item(t, name, id)[attrHandoffTo] == "worker-b" {
			asked = id
		}
	}
	if asked == "" {
		t.Fatal("B asked for no lease")
	}
	kept := ids[0]
	if asked == kept {
		kept = ids[1]
	}
	if _, err := b.balanceOnce(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if got := e.item(t, name, kept)[attrHandoffTo]; got != "" {
		t.Errorf("B asked for a second lease while one is pending: %q", got)
	}

	handoff := a.HandoffRequested(asked)
	if isClosed(handoff) {
		t.Fatal("handoff seen before any renewal")
	}
	// A honours requests only from workers its last scan found live.
	if err := a.GetLease(held[asked], "worker-a"); err != nil {
		t.Fatal(err)
	}
	if isClosed(handoff) {
		t.Fatal("A honoured a request from a worker it has not seen in the census")
	}
	if err := a.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := a.GetLease(held[asked], "worker-a"); err != nil {
		t.Fatalf("A's renewal with a pending request: %v", err)
	}
	if !isClosed(handoff) {
		t.Fatal("A's renewal did not see the request")
	}
	assertRefusedIT(t, take(c, newShard(asked, "")), "held by")
	lost := a.Lost(asked)
	if err := a.HandOver(asked); err != nil {
		t.Fatal(err)
	}
	if !isClosed(lost) {
		t.Error("Lost still open after the handover")
	}
	assertRefusedIT(t, take(c, newShard(asked, "")), `handed over to worker "worker-b"`)
	shardB := newShard(asked, "")
	if err := take(b, shardB); err != nil {
		t.Fatalf("B takes the lease handed to it: %v", err)
	}
	if shardB.GetCheckpoint() != "100" {
		t.Errorf("B resumes at %q, want A's final checkpoint 100", shardB.GetCheckpoint())
	}
	if b.PreviousLeaseEnd(asked).IsZero() {
		t.Error("B does not know when A's lease of the shard handed to it ended")
	}
	if item := e.item(t, name, asked); item[attrOwner] != "worker-b" || item[attrHandoffTo] != "" {
		t.Errorf("item after the handoff: %v", item)
	}
	if err := a.GetLease(held[asked], "worker-a"); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("A's renewal after the handover: %v", err)
	}

	// Shutdown: A leaves the census and its release goes to B.
	if err := a.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	a.Leave()
	held[kept].SetLeaseOwner("")
	if err := a.RemoveLeaseOwner(kept); err != nil {
		t.Fatal(err)
	}
	if item := e.item(t, name, kept); item[attrOwner] != "" || item[attrHandoffTo] != "worker-b" || item[attrCheckpoint] != "100" {
		t.Errorf("item after A's release at shutdown: %v", item)
	}
	if err := take(b, newShard(kept, "")); err != nil {
		t.Fatalf("B takes the lease A released to it: %v", err)
	}
	if b.PreviousLeaseEnd(kept).IsZero() {
		t.Error("B does not know when A's lease of the shard released to it ended")
	}

	leases, workers, err := ReadTable(t.Context(), e.db, name)
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 2 || strings.Join(workers, ",") != "worker-b" {
		t.Errorf("ReadTable: %+v, workers %v", leases, workers)
	}
	for _, l := range leases {
		if l.Owner != "worker-b" || !l.Live {
			t.Errorf("lease %+v", l)
		}
	}
}

func assertRefusedIT(t *testing.T, err error, want string) {
	t.Helper()
	if !errors.Is(err, ErrNotAcquired) || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want a refusal containing %q", err, want)
	}
}

func TestShare(t *testing.T) {
	for _, c := range []struct{ n, w, max, floor, ceil int }{
		{8, 3, 0, 2, 3}, {8, 1, 0, 8, 8}, {2, 3, 0, 0, 1}, {0, 2, 0, 0, 0}, {8, 1, 5, 5, 5}, {9, 0, 0, 9, 9},
	} {
		if f, c2 := share(c.n, c.w, c.max); f != c.floor || c2 != c.ceil {
			t.Errorf("share(%d, %d, %d) = %d, %d; want %d, %d", c.n, c.w, c.max, f, c2, c.floor, c.ceil)
		}
	}
	for id, want := range map[string]bool{"shardId-000000000001": true, MetadataKey: false, CensusPrefix + "h:1": false, "": false} {
		if IsLeaseKey(id) != want {
			t.Errorf("IsLeaseKey(%q) = %v", id, !want)
		}
	}
}
