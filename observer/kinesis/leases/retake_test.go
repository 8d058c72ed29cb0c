package leases

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	par "github.com/vmware/vmware-go-kcl-v2/clientlibrary/partition"
)

func TestRetakeDelay(t *testing.T) {
	base, ceiling := 2*time.Second, time.Minute
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{
		{1, 2 * time.Second},
		{2, 4 * time.Second},
		{3, 8 * time.Second},
		{5, 32 * time.Second},
		{6, time.Minute},
		{7, time.Minute},
		{1000, time.Minute},
	} {
		if got := retakeDelay(tc.n, base, ceiling); got != tc.want {
			t.Errorf("retakeDelay(%d) = %s, want %s", tc.n, got, tc.want)
		}
	}
	// New raises a max below the first wait to it.
	tbl := New(nil, nil, Config{TableName: "obs", RetakeBackoff: 5 * time.Minute})
	if tbl.cfg.RetakeBackoffMax != 5*time.Minute {
		t.Errorf("max %s under a first wait of 5m, want 5m", tbl.cfg.RetakeBackoffMax)
	}
}

func TestPassed(t *testing.T) {
	for _, tc := range []struct {
		cp, at string
		want   bool
	}{
		{"9", "10", false},
		{"10", "10", true}, // the record itself is settled
		{"11", "10", true},
		{"100", "99", true}, // numbers, not strings
		{"", "10", false},
		{checkpoint.ShardEnd, "10", true},
		{"TRIM_HORIZON", "10", false},
		{"LATEST", "10", false},
	} {
		if got := passed(tc.cp, tc.at); got != tc.want {
			t.Errorf("passed(%q, %q) = %v, want %v", tc.cp, tc.at, got, tc.want)
		}
	}
}

// retakeFixture holds shard0 at checkpoint 8 and counts what the
// shard-sync passes cost: wakes, reads and writes.
type retakeFixture struct {
	*fixture
	shard                *par.ShardStatus
	st                   *store
	wakes, reads, writes atomic.Int64
}

func newRetakeFixture(t *testing.T) *retakeFixture {
	t.Helper()
	f, shard, st := held(t, "8")
	r := &retakeFixture{fixture: f, shard: shard, st: st}
	f.tbl.cfg.OnAvailable = func() { r.wakes.Add(1) }
	f.db.OnGetItem = func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
		r.reads.Add(1)
		return st.get(in)
	}
	f.db.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		r.writes.Add(1)
		return st.update(in)
	}
	return r
}

// release abandons the lease after the record at stopped, and ends its
// consumer as the KCL does.
func (r *retakeFixture) release(t *testing.T, at string) time.Duration {
	t.Helper()
	d, err := r.tbl.Abandon(shard0, at)
	if err != nil {
		t.Fatalf("abandon: %v", err)
	}
	r.shard.SetLeaseOwner("")
	if err := r.tbl.RemoveLeaseOwner(shard0); err != nil {
		t.Fatalf("end of the consumer: %v", err)
	}
	return d
}

// pass is the KCL's shard-sync pass over the shard: FetchCheckpoint, then
// GetLease unless it is held (an error is a refusal). It reports whether
// the pass woke the pacer and what it cost.
func (r *retakeFixture) pass(t *testing.T) (err error, woke bool, reads, writes int64) {
	t.Helper()
	w0, r0, u0 := r.wakes.Load(), r.reads.Load(), r.writes.Load()
	if ferr := r.tbl.FetchCheckpoint(r.shard); ferr != nil {
		t.Fatalf("fetch: %v", ferr)
	}
	err = r.tbl.GetLease(r.shard, "me")
	return err, r.wakes.Load() > w0, r.reads.Load() - r0, r.writes.Load() - u0
}

// A shard released after a record stopped is not taken back by this
// worker before its backoff ends, which doubles with every release until
// the shard is checkpointed at or past the record that stopped. While it
// waits, a pass over the shard reads its row (FetchCheckpoint, as for any
// shard not held) and nothing more: no wake, no write, no second read.
func TestAbandonBacksOffTheRetake(t *testing.T) {
	r := newRetakeFixture(t)
	retake := func(step string, wait time.Duration) {
		t.Helper()
		r.clock.Add(wait - time.Millisecond)
		err, woke, reads, writes := r.pass(t)
		if !errors.Is(err, ErrNotAcquired) || woke || reads != 1 || writes != 0 {
			t.Fatalf("%s, %s before the backoff ends: err %v, woke %v, %d reads, %d writes; want refused, no wake, 1 read, no write",
				step, time.Millisecond, err, woke, reads, writes)
		}
		r.clock.Add(time.Millisecond)
		err, woke, _, _ = r.pass(t)
		if err != nil || !woke {
			t.Fatalf("%s, once the backoff ended: err %v, woke %v; want taken, after a wake", step, err, woke)
		}
	}

	if d := r.release(t, "10"); d != DefaultRetakeBackoff {
		t.Fatalf("first release: retake in %s, want %s", d, DefaultRetakeBackoff)
	}
	if _, ok := r.st.item(shard0)[attrOwner]; ok {
		t.Fatal("owner still stored after the release")
	}
	retake("first release", DefaultRetakeBackoff)

	// Stopped again at the same record: twice the wait, then four times.
	if d := r.release(t, "10"); d != 2*DefaultRetakeBackoff {
		t.Fatalf("second release: retake in %s, want %s", d, 2*DefaultRetakeBackoff)
	}
	retake("second release", 2*DefaultRetakeBackoff)
	if d := r.release(t, "10"); d != 4*DefaultRetakeBackoff {
		t.Fatalf("third release: retake in %s, want %s", d, 4*DefaultRetakeBackoff)
	}
	retake("third release", 4*DefaultRetakeBackoff)

	// A checkpoint below the record is no progress; one at it is.
	r.shard.SetCheckpoint("9")
	if err := r.tbl.CheckpointSequence(r.shard); err != nil {
		t.Fatal(err)
	}
	if d := r.release(t, "10"); d != 8*DefaultRetakeBackoff {
		t.Fatalf("release after a checkpoint below the record: retake in %s, want %s", d, 8*DefaultRetakeBackoff)
	}
	retake("fourth release", 8*DefaultRetakeBackoff)
	r.shard.SetCheckpoint("10")
	if err := r.tbl.CheckpointSequence(r.shard); err != nil {
		t.Fatal(err)
	}
	if d := r.release(t, "12"); d != DefaultRetakeBackoff {
		t.Fatalf("release after a checkpoint past the record that stopped: retake in %s, want %s again", d, DefaultRetakeBackoff)
	}
}

// Another worker that settles the record resets the backoff as well: this
// worker sees the checkpoint at its next pass over the shard (or scan), and
// takes the shard as any other once it is free.
func TestRetakeBackoffEndsWhenAnotherWorkerPassesTheRecord(t *testing.T) {
	r := newRetakeFixture(t)
	r.release(t, "10")
	r.st.set(shard0, attrCheckpoint, "11")
	err, woke, _, _ := r.pass(t)
	if err != nil || !woke {
		t.Fatalf("pass after the record was settled elsewhere: err %v, woke %v; want taken at once", err, woke)
	}
	if d := r.release(t, "20"); d != DefaultRetakeBackoff {
		t.Errorf("next release: retake in %s, want the first wait again", d)
	}
}

// A lease already gone at the release backs off all the same; a release
// that could not be written leaves the lease held, with no backoff.
func TestAbandonFailures(t *testing.T) {
	r := newRetakeFixture(t)
	r.st.fail = errors.New("dynamodb down")
	d, err := r.tbl.Abandon(shard0, "10")
	if err == nil || errors.Is(err, ErrLeaseLost) || d != 0 {
		t.Fatalf("failed release: %s, %v; want no backoff and the error", d, err)
	}
	if isClosed(r.tbl.Lost(shard0)) {
		t.Fatal("a failed release ended the lease")
	}
	r.st.set(shard0, attrOwner, "other")
	d, err = r.tbl.Abandon(shard0, "10")
	if !errors.Is(err, ErrLeaseLost) || d != DefaultRetakeBackoff {
		t.Fatalf("release of a lease taken over: %s, %v; want ErrLeaseLost and the first wait", d, err)
	}
}

// The balancer does not count a lease this worker backs off from as one it
// could take: no wake, and the scans settle, so that neither the
// shard-sync passes nor the scans speed up for a shard this worker will
// not take. Once the backoff ended, the free lease wakes the passes again.
func TestBalanceSkipsABackedOffLease(t *testing.T) {
	f := newScanFixture(t, time.Second, 10*time.Second)
	f.set("shardId-1", map[string]string{attrShardID: "shardId-1", attrTimeout: formatTimeout(fakeNow), attrCheckpoint: "4"})
	f.tbl.backOff("shardId-1", "5")
	var wakes int
	wake := func() { wakes++ }
	for i, want := range []bool{false, true, true} {
		settled, err := f.tbl.balanceOnce(t.Context(), wake)
		if err != nil {
			t.Fatal(err)
		}
		if wakes != 0 || settled != want {
			t.Fatalf("scan %d during the backoff: %d wakes, settled %v; want no wake, settled %v", i+1, wakes, settled, want)
		}
	}
	f.clock.Add(DefaultRetakeBackoff)
	if _, err := f.tbl.balanceOnce(t.Context(), wake); err != nil {
		t.Fatal(err)
	}
	if wakes != 1 {
		t.Errorf("%d wakes once the backoff ended, want 1", wakes)
	}
}

// A lease reserved for this worker (a stopping peer's successor) is not
// taken while this worker backs off from the shard, and does not count as
// its own: the reservation lapses and any worker takes it then.
func TestBackedOffLeaseReservedForThisWorker(t *testing.T) {
	f := newScanFixture(t, time.Second, 10*time.Second)
	reserved := map[string]string{attrShardID: "shardId-1", attrHandoffTo: "me",
		attrTimeout: formatTimeout(fakeNow.Add(time.Hour)), attrCheckpoint: "4"}
	f.set("shardId-1", reserved)
	f.tbl.backOff("shardId-1", "5")
	wakes := 0
	if _, err := f.tbl.balanceOnce(t.Context(), func() { wakes++ }); err != nil {
		t.Fatal(err)
	}
	if wakes != 0 {
		t.Errorf("%d wakes for a reservation this worker backs off from, want none", wakes)
	}
	err := f.tbl.GetLease(newShard("shardId-1", ""), "me")
	if !errors.Is(err, ErrNotAcquired) {
		t.Errorf("GetLease of a reserved lease during the backoff: %v, want refused", err)
	}
}

// A worker short of its share asks the most loaded peer for a lease, never
// one it backs off from: that would take it back before its backoff ends.
func TestHandoffRequestSkipsABackedOffLease(t *testing.T) {
	f := newScanFixture(t, time.Second, 10*time.Second)
	live := formatTimeout(fakeNow.Add(time.Hour))
	shards := []string{"shardId-0", "shardId-1", "shardId-2", "shardId-3"}
	f.kin.listShards = shardList(shards...)
	for _, id := range shards {
		f.set(id, map[string]string{attrShardID: id, attrOwner: "peer", attrTimeout: live, attrCheckpoint: "4"})
		if id != "shardId-3" {
			f.tbl.backOff(id, "5")
		}
	}
	f.set(CensusPrefix+"peer", map[string]string{attrShardID: CensusPrefix + "peer", attrWorker: "peer", attrExpires: live})
	var asked []string
	f.db.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		asked = append(asked, reduce(in).Key)
		return &dynamodb.UpdateItemOutput{}, nil
	}
	// The pick is random among the candidates: with three of four backed
	// off, twenty passes that all ask for the fourth leave no doubt.
	for range 20 {
		if _, err := f.tbl.balanceOnce(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(asked) != 20 {
		t.Fatalf("%d handoff requests in 20 passes, want 20: %v", len(asked), asked)
	}
	for _, id := range asked {
		if id != "shardId-3" {
			t.Fatalf("asked the peer for %s, which this worker backs off from (requests %v)", id, asked)
		}
	}
}
