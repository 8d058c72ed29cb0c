package leases

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// scanFixture is a table whose worker "me" holds both shards of its stream
// and is alone in the census: a settled worker. Items can be changed under
// it; Scan counts its calls.
type scanFixture struct {
	*fixture
	mu    sync.Mutex
	store items
	scans atomic.Int64
}

func newScanFixture(t *testing.T, base, ceiling time.Duration) *scanFixture {
	t.Helper()
	f := &scanFixture{fixture: newFixture(t)}
	cfg := f.tbl.cfg
	cfg.Balance, cfg.BalanceInterval, cfg.BalanceMaxInterval = true, base, ceiling
	tbl := New(f.db, f.kin, cfg)
	tbl.now = f.clock.Now
	f.tbl = tbl
	live := formatTimeout(fakeNow.Add(time.Hour))
	f.store = items{
		"shardId-0":           {attrShardID: "shardId-0", attrOwner: "me", attrTimeout: live, attrCheckpoint: "1"},
		"shardId-1":           {attrShardID: "shardId-1", attrOwner: "me", attrTimeout: live, attrCheckpoint: "1"},
		CensusPrefix + "me":   {attrShardID: CensusPrefix + "me", attrWorker: "me", attrExpires: live},
		"sauna#stream":        {attrShardID: "sauna#stream", attrStream: "stream-a"},
		"shardId-finished-99": {attrShardID: "shardId-finished-99", attrCheckpoint: "SHARD_END"},
	}
	f.kin.listShards = shardList("shardId-0", "shardId-1", "shardId-finished-99")
	f.db.OnScan = func(*dynamodb.ScanInput) (*dynamodb.ScanOutput, error) {
		f.scans.Add(1)
		f.mu.Lock()
		defer f.mu.Unlock()
		out := &dynamodb.ScanOutput{}
		for _, it := range f.store {
			out.Items = append(out.Items, toItem(it))
		}
		return out, nil
	}
	f.db.OnPutItem = func(*dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) { return &dynamodb.PutItemOutput{}, nil }
	f.db.OnGetItem = func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.store.get(in)
	}
	return f
}

func (f *scanFixture) set(id string, item map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.store[id] = item
}

func kicked(tbl *Table) bool {
	select {
	case <-tbl.scans.kick:
		return true
	default:
		return false
	}
}

func TestNextScanInterval(t *testing.T) {
	base, ceiling := time.Second, 10*time.Second
	tests := []struct {
		cur     time.Duration
		settled bool
		want    time.Duration
	}{
		{base, false, base},
		{8 * time.Second, false, base},
		{base, true, 2 * time.Second},
		{4 * time.Second, true, 8 * time.Second},
		{8 * time.Second, true, ceiling},
		{ceiling, true, ceiling},
		{0, true, base},
	}
	for _, tc := range tests {
		if got := nextScanInterval(tc.cur, tc.settled, base, ceiling); got != tc.want {
			t.Errorf("nextScanInterval(%s, %v) = %s, want %s", tc.cur, tc.settled, got, tc.want)
		}
	}
}

// A scan is settled only when the one before found the same table and the
// worker had nothing to do; a new peer in the census unsettles it.
func TestBalanceOnceSettled(t *testing.T) {
	f := newScanFixture(t, time.Second, 10*time.Second)
	steps := []struct {
		name   string
		change func()
		want   bool
	}{
		{"first scan", nil, false},
		{"same table", nil, true},
		{"same table again", nil, true},
		{"a peer joins", func() {
			f.set(CensusPrefix+"peer", map[string]string{attrShardID: CensusPrefix + "peer", attrWorker: "peer",
				attrExpires: formatTimeout(fakeNow.Add(time.Hour))})
		}, false},
		{"nothing more changes", nil, true},
		{"a lease comes free", func() {
			f.set("shardId-1", map[string]string{attrShardID: "shardId-1", attrCheckpoint: "1"})
		}, false},
	}
	for _, st := range steps {
		if st.change != nil {
			st.change()
		}
		settled, err := f.tbl.balanceOnce(t.Context(), func() {})
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if settled != st.want {
			t.Errorf("%s: settled = %v, want %v (view %+v)", st.name, settled, st.want, f.tbl.Snapshot())
		}
	}
}

// Alone is what the observer's shard-sync pacing asks before it runs the
// next pass at once: false before any scan, and false as soon as the scan
// finds a peer in the census or holding a live lease.
func TestAlone(t *testing.T) {
	f := newScanFixture(t, time.Second, 10*time.Second)
	if f.tbl.Alone() {
		t.Fatal("Alone before any scan")
	}
	steps := []struct {
		name   string
		change func()
		want   bool
	}{
		{"only this worker", nil, true},
		{"a peer holds a live lease", func() {
			f.set("shardId-1", map[string]string{attrShardID: "shardId-1", attrOwner: "peer", attrTimeout: formatTimeout(fakeNow.Add(time.Hour))})
		}, false},
		{"the peer's lease expired", func() {
			f.set("shardId-1", map[string]string{attrShardID: "shardId-1", attrOwner: "peer", attrTimeout: formatTimeout(fakeNow.Add(-time.Second))})
		}, true},
		{"a peer joins the census", func() {
			f.set(CensusPrefix+"peer", map[string]string{attrShardID: CensusPrefix + "peer", attrWorker: "peer",
				attrExpires: formatTimeout(fakeNow.Add(time.Hour))})
		}, false},
		{"its census item expired", func() {
			f.set(CensusPrefix+"peer", map[string]string{attrShardID: CensusPrefix + "peer", attrWorker: "peer",
				attrExpires: formatTimeout(fakeNow.Add(-time.Second))})
		}, true},
	}
	for _, st := range steps {
		if st.change != nil {
			st.change()
		}
		if err := f.tbl.Refresh(t.Context()); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got := f.tbl.Alone(); got != st.want {
			t.Errorf("%s: Alone() = %v, want %v (view %+v)", st.name, got, st.want, f.tbl.Snapshot())
		}
	}
}

// What a settled worker must see soon kicks a scan: a lease it may take
// found by the shard-sync pass, and a handoff request from a worker it does
// not know yet.
func TestScanKicks(t *testing.T) {
	f := newScanFixture(t, time.Second, 10*time.Second)
	if _, err := f.tbl.balanceOnce(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if kicked(f.tbl) {
		t.Fatal("kicked before anything happened")
	}

	// A peer's live lease, being looked at: nothing to take.
	f.set("shardId-3", map[string]string{attrShardID: "shardId-3", attrOwner: "peer", attrTimeout: formatTimeout(fakeNow.Add(time.Hour)), attrCheckpoint: "5"})
	if err := f.tbl.FetchCheckpoint(newShard("shardId-3", "")); err != nil {
		t.Fatal(err)
	}
	if kicked(f.tbl) {
		t.Error("FetchCheckpoint of a live lease kicked a scan")
	}
	f.set("shardId-2", map[string]string{attrShardID: "shardId-2", attrOwner: "gone", attrTimeout: formatTimeout(fakeNow.Add(-time.Second)), attrCheckpoint: "5"})
	if err := f.tbl.FetchCheckpoint(newShard("shardId-2", "")); err != nil {
		t.Fatal(err)
	}
	if !kicked(f.tbl) {
		t.Error("FetchCheckpoint of an expired lease did not kick a scan")
	}

	if !f.tbl.mayHandTo("me") || kicked(f.tbl) {
		t.Error("a request from a known worker is refused or kicks a scan")
	}
	if f.tbl.mayHandTo("newcomer") {
		t.Error("a request from a worker unknown to the last scan is honoured")
	}
	if !kicked(f.tbl) {
		t.Error("a request from an unknown worker did not kick a scan")
	}
}

// A settled balancer stretches its period: over a run that a fixed period
// would fill with about 100 scans it makes only a handful. The clock is
// synctest's, so the run lasts 0.5 s of the balancer's time however slow
// the machine.
func TestBalancerBacksOffWhenSettled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newScanFixture(t, 5*time.Millisecond, 50*time.Millisecond)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			f.tbl.RunBalancer(ctx, func() {}, nil)
		}()
		time.Sleep(500 * time.Millisecond)
		cancel()
		<-done
		if n := f.scans.Load(); n < 1 || n > 30 {
			t.Errorf("%d scans in 0.5 s of a settled balancer (5 ms doubling to 50 ms), want 1 to 30 (a fixed 5 ms period makes about 100)", n)
		}
	})
}

// After it has stretched its period, a kick brings the next scan forward
// instead of leaving it for the stretched period. The clock is synctest's:
// a second after the kick is a second of the balancer's time.
func TestBalancerKickScansSoon(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newScanFixture(t, 5*time.Millisecond, time.Hour)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			f.tbl.RunBalancer(ctx, func() {}, nil)
		}()
		defer func() { cancel(); <-done }()
		// After 10 settled scans the period is 5 ms x 2^9 = 2.56 s at least.
		for start := time.Now(); f.scans.Load() < 10; time.Sleep(time.Millisecond) {
			if time.Since(start) > time.Hour {
				t.Fatalf("only %d scans in an hour", f.scans.Load())
			}
		}
		before := f.scans.Load()
		f.tbl.kickScan()
		time.Sleep(time.Second)
		if f.scans.Load() == before {
			t.Fatal("no scan within 1 s of a kick; the stretched period is at least 2.56 s")
		}
	})
}

// The KCL's pass calls FetchCheckpoint and then GetLease for every shard
// this worker does not hold: a lease the fetch found live in a peer's hands
// is refused without a second read.
func TestAcquireLiveForeignLeaseReadsOnce(t *testing.T) {
	f := newScanFixture(t, time.Second, 10*time.Second)
	f.set("shardId-3", map[string]string{attrShardID: "shardId-3", attrOwner: "peer", attrTimeout: formatTimeout(fakeNow.Add(time.Hour)), attrCheckpoint: "5"})
	sh := newShard("shardId-3", "")
	f.db.Reset()
	if err := f.tbl.FetchCheckpoint(sh); err != nil {
		t.Fatal(err)
	}
	err := f.tbl.GetLease(sh, "me")
	var na *NotAcquiredError
	if !errors.As(err, &na) {
		t.Fatalf("GetLease of a peer's live lease: %v, want a NotAcquiredError", err)
	}
	if got := f.db.Ops(); !slices.Equal(got, []string{"GetItem"}) {
		t.Errorf("DynamoDB calls %v, want one GetItem (the fetch)", got)
	}
}
