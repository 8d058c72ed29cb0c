package leases

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	par "github.com/vmware/vmware-go-kcl-v2/clientlibrary/partition"
)

const shard0 = "shardId-000000000000"

var (
	past   = formatTimeout(fakeNow.Add(-time.Second))
	future = formatTimeout(fakeNow.Add(time.Second))
	// newTimeout is what a lease written at fakeNow expires at.
	newTimeout = formatTimeout(fakeNow.Add(fakeLease))
)

// applyUpdate answers UpdateItem as if it succeeded: the stored item with the
// SET values applied (enough for ReturnValues ALL_NEW).
func applyUpdate(stored map[string]string, in *dynamodb.UpdateItemInput) *dynamodb.UpdateItemOutput {
	next := map[string]string{attrShardID: shard0}
	for k, v := range stored {
		next[k] = v
	}
	u := reduce(in)
	set, remove := u.Update, ""
	if r, ok := strings.CutPrefix(u.Update, "REMOVE "); ok {
		set, remove = "", r
	} else {
		set, remove, _ = strings.Cut(strings.TrimPrefix(set, "SET "), " REMOVE ")
	}
	for _, a := range strings.Split(set, ", ") {
		name, val, ok := strings.Cut(a, " = ")
		if ok {
			next[u.Names[name]] = u.Values[val]
		}
	}
	if remove != "" {
		for _, r := range strings.Split(remove, ", ") {
			delete(next, u.Names[r])
		}
	}
	return &dynamodb.UpdateItemOutput{Attributes: toItem(next)}
}

func TestGetLeaseAcquire(t *testing.T) {
	longAgo := formatTimeout(fakeNow.Add(-DefaultClaimTimeout - time.Second))
	acquireSet := "SET #AssignedTo = :me, #LeaseTimeout = :timeout REMOVE #ClaimRequest, #HandoffTo, #HandoffAt"
	tests := []struct {
		name    string
		stored  map[string]string // nil: no item
		parent  string            // shard.ParentShardId
		ccf     bool              // UpdateItem fails its condition
		want    *update           // nil: no write
		refusal string            // substring of the NotAcquiredError
		wantCP  string            // shard.Checkpoint after success
	}{
		{
			name: "no item",
			want: &update{
				Update:    acquireSet,
				Condition: "attribute_not_exists(#AssignedTo) AND attribute_not_exists(#HandoffTo)",
				Names:     names(attrOwner, attrTimeout, attrClaim, attrHandoffTo, attrHandoffAt),
				Values:    map[string]string{":me": "me", ":timeout": newTimeout},
			},
		},
		{
			name:   "released item keeps its checkpoint",
			stored: map[string]string{attrTimeout: past, attrCheckpoint: "17"},
			want: &update{
				Update:    acquireSet,
				Condition: "attribute_not_exists(#AssignedTo) AND attribute_not_exists(#HandoffTo)",
				Names:     names(attrOwner, attrTimeout, attrClaim, attrHandoffTo, attrHandoffAt),
				Values:    map[string]string{":me": "me", ":timeout": newTimeout},
			},
			wantCP: "17",
		},
		{
			name:   "expired lease of another worker is taken over, fenced on what was read",
			stored: map[string]string{attrOwner: "other", attrTimeout: past, attrCheckpoint: "5"},
			want: &update{
				Update:    acquireSet,
				Condition: "#AssignedTo = :prev_owner AND #LeaseTimeout = :prev_timeout",
				Names:     names(attrOwner, attrTimeout, attrClaim, attrHandoffTo, attrHandoffAt),
				Values:    map[string]string{":me": "me", ":timeout": newTimeout, ":prev_owner": "other", ":prev_timeout": past},
			},
			wantCP: "5",
		},
		{
			name:    "live lease of another worker",
			stored:  map[string]string{attrOwner: "other", attrTimeout: future},
			refusal: `held by worker "other" until ` + future,
		},
		{
			// Possibly another Table of this process that still renews it.
			name:    "live lease under our own id that this Table does not hold",
			stored:  map[string]string{attrOwner: "me", attrTimeout: future},
			refusal: `held by worker "me" until ` + future,
		},
		{
			name:   "expired lease under our own id (a failed release)",
			stored: map[string]string{attrOwner: "me", attrTimeout: past},
			want: &update{
				Update:    acquireSet,
				Condition: "#AssignedTo = :prev_owner AND #LeaseTimeout = :prev_timeout",
				Names:     names(attrOwner, attrTimeout, attrClaim, attrHandoffTo, attrHandoffAt),
				Values:    map[string]string{":me": "me", ":timeout": newTimeout, ":prev_owner": "me", ":prev_timeout": past},
			},
		},
		{
			name:   "owner without a timeout",
			stored: map[string]string{attrOwner: "other"},
			want: &update{
				Update:    acquireSet,
				Condition: "#AssignedTo = :prev_owner AND attribute_not_exists(#LeaseTimeout)",
				Names:     names(attrOwner, attrTimeout, attrClaim, attrHandoffTo, attrHandoffAt),
				Values:    map[string]string{":me": "me", ":timeout": newTimeout, ":prev_owner": "other"},
			},
		},
		{
			name:   "unreadable timeout counts as expired",
			stored: map[string]string{attrOwner: "other", attrTimeout: "soon"},
			want: &update{
				Update:    acquireSet,
				Condition: "#AssignedTo = :prev_owner AND #LeaseTimeout = :prev_timeout",
				Names:     names(attrOwner, attrTimeout, attrClaim, attrHandoffTo, attrHandoffAt),
				Values:    map[string]string{":me": "me", ":timeout": newTimeout, ":prev_owner": "other", ":prev_timeout": "soon"},
			},
		},
		{
			name:    "finished shard",
			stored:  map[string]string{attrCheckpoint: checkpoint.ShardEnd},
			refusal: "SHARD_END",
		},
		{
			name:    "claimed by another worker",
			stored:  map[string]string{attrOwner: "other", attrTimeout: past, attrClaim: "thief"},
			refusal: `claimed by worker "thief"`,
		},
		{
			name:   "a lapsed claim of another worker is ignored",
			stored: map[string]string{attrOwner: "other", attrTimeout: longAgo, attrClaim: "thief"},
			want: &update{
				Update:    acquireSet,
				Condition: "#AssignedTo = :prev_owner AND #LeaseTimeout = :prev_timeout",
				Names:     names(attrOwner, attrTimeout, attrClaim, attrHandoffTo, attrHandoffAt),
				Values:    map[string]string{":me": "me", ":timeout": newTimeout, ":prev_owner": "other", ":prev_timeout": longAgo},
			},
		},
		{
			name:   "our own claim completes the steal",
			stored: map[string]string{attrTimeout: past, attrClaim: "me"},
			want: &update{
				Update:    acquireSet,
				Condition: "attribute_not_exists(#AssignedTo) AND attribute_not_exists(#HandoffTo) AND #ClaimRequest = :me",
				Names:     names(attrOwner, attrTimeout, attrClaim, attrHandoffTo, attrHandoffAt),
				Values:    map[string]string{":me": "me", ":timeout": newTimeout},
			},
		},
		{
			name:   "child records its parent",
			parent: "shardId-parent",
			want: &update{
				Update:    "SET #AssignedTo = :me, #LeaseTimeout = :timeout, #ParentShardId = :parent REMOVE #ClaimRequest, #HandoffTo, #HandoffAt",
				Condition: "attribute_not_exists(#AssignedTo) AND attribute_not_exists(#HandoffTo)",
				Names:     names(attrOwner, attrTimeout, attrParent, attrClaim, attrHandoffTo, attrHandoffAt),
				Values:    map[string]string{":me": "me", ":timeout": newTimeout, ":parent": "shardId-parent"},
			},
		},
		{
			name:    "lost race",
			ccf:     true,
			want:    &update{Update: acquireSet, Condition: "attribute_not_exists(#AssignedTo) AND attribute_not_exists(#HandoffTo)", Names: names(attrOwner, attrTimeout, attrClaim, attrHandoffTo, attrHandoffAt), Values: map[string]string{":me": "me", ":timeout": newTimeout}},
			refusal: "changed since it was read",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			acquired := 0
			f.tbl.cfg.OnAcquired = func() { acquired++ }
			stored := items{}
			if tc.stored != nil {
				stored[shard0] = tc.stored
			}
			// The parent, if any, is gone from Kinesis: lineage does not block.
			f.kin.listShards = shardList(shard0)
			f.db.OnGetItem = stored.get
			var got *update
			f.db.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
				u := reduce(in)
				u.ReturnValues = ""
				got = &u
				if in.ReturnValues != types.ReturnValueAllNew {
					t.Errorf("ReturnValues %q, want ALL_NEW", in.ReturnValues)
				}
				if tc.ccf {
					return nil, ccf()
				}
				return applyUpdate(tc.stored, in), nil
			}
			shard := newShard(shard0, tc.parent)
			shard.Checkpoint = "stale"
			err := f.tbl.GetLease(shard, "me")

			if tc.want != nil {
				tc.want.Key = shard0
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("UpdateItem (-want +got):\n%s", diff)
			}
			if tc.refusal != "" {
				assertRefused(t, err, tc.refusal)
				if shard.AssignedTo != "" || shard.Checkpoint != "stale" {
					t.Errorf("refusal changed the shard: %+v", shard)
				}
				if !isClosed(f.tbl.Lost(shard0)) {
					t.Error("Lost open without a lease")
				}
				if acquired != 0 {
					t.Errorf("OnAcquired called %d times for a refusal", acquired)
				}
				return
			}
			if err != nil {
				t.Fatalf("GetLease: %v", err)
			}
			if acquired != 1 {
				t.Errorf("OnAcquired called %d times for one acquisition, want 1", acquired)
			}
			if shard.AssignedTo != "me" || formatTimeout(shard.LeaseTimeout) != newTimeout || shard.Checkpoint != tc.wantCP {
				t.Errorf("shard after acquisition: owner %q timeout %s checkpoint %q; want me, %s, %q",
					shard.AssignedTo, formatTimeout(shard.LeaseTimeout), shard.Checkpoint, newTimeout, tc.wantCP)
			}
			if isClosed(f.tbl.Lost(shard0)) {
				t.Error("Lost closed right after acquisition")
			}
		})
	}
}

func assertRefused(t *testing.T, err error, reason string) {
	t.Helper()
	if !errors.Is(err, ErrNotAcquired) {
		t.Fatalf("err = %v, want ErrNotAcquired", err)
	}
	// What the KCL's event loop checks to stay quiet about a refusal.
	if !errors.As(err, &checkpoint.ErrLeaseNotAcquired{}) {
		t.Errorf("%v does not match checkpoint.ErrLeaseNotAcquired", err)
	}
	if !strings.Contains(err.Error(), reason) {
		t.Errorf("err = %v, want reason %q", err, reason)
	}
}

func TestGetLeaseErrors(t *testing.T) {
	f := newFixture(t)
	if err := f.tbl.GetLease(newShard(shard0, ""), "someone-else"); err == nil || errors.Is(err, ErrNotAcquired) {
		t.Errorf("GetLease for another worker id: %v, want a configuration error", err)
	}
	f.db.OnGetItem = func(*dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) { return nil, errors.New("throttled") }
	err := f.tbl.GetLease(newShard(shard0, ""), "me")
	if err == nil || errors.Is(err, ErrNotAcquired) || errors.As(err, &checkpoint.ErrLeaseNotAcquired{}) {
		t.Errorf("GetLease with a failing read: %v, want a real error", err)
	}
	f.db.OnGetItem = items{}.get
	f.kin.listShards = shardList(shard0)
	f.db.OnUpdateItem = func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) { return nil, errors.New("timeout") }
	err = f.tbl.GetLease(newShard(shard0, ""), "me")
	if err == nil || errors.Is(err, ErrNotAcquired) {
		t.Errorf("GetLease with a failing write: %v, want a real error", err)
	}
}

// held returns a fixture holding the lease on shard0 with stored checkpoint
// cp, and a function-field store that evaluates the fenced conditions.
func held(t *testing.T, cp string) (*fixture, *par.ShardStatus, *store) {
	t.Helper()
	f := newFixture(t)
	st := &store{items: items{}}
	if cp != "" {
		st.items[shard0] = map[string]string{attrCheckpoint: cp}
	}
	f.db.OnGetItem = st.get
	f.db.OnUpdateItem = st.update
	f.kin.listShards = shardList(shard0)
	shard := newShard(shard0, "")
	if err := f.tbl.GetLease(shard, "me"); err != nil {
		t.Fatalf("acquire: %v", err)
	}
	return f, shard, st
}

// store is a small DynamoDB item store that understands exactly the update
// and condition expressions this package writes, so that sequences of calls
// (acquire, renew, checkpoint, a rival's takeover) can be exercised.
type store struct {
	mu    sync.Mutex
	items items
	fail  error // returned (once) by the next UpdateItem instead of applying it
	apply bool  // with fail: apply the update anyway (an ambiguous failure)
}

func (st *store) get(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.items.get(in)
}

func (st *store) set(id string, kv ...string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	it := st.items[id]
	if it == nil {
		it = map[string]string{}
		st.items[id] = it
	}
	for i := 0; i < len(kv); i += 2 {
		it[kv[i]] = kv[i+1]
	}
}

func (st *store) item(id string) map[string]string {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := map[string]string{}
	for k, v := range st.items[id] {
		out[k] = v
	}
	return out
}

func (st *store) update(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	u := reduce(in)
	cur := st.items[u.Key]
	if fail := st.fail; fail != nil {
		st.fail = nil
		if !st.apply {
			return nil, fail
		}
		defer func() { st.apply = false }()
		if _, err := st.applyLocked(u, cur, in); err != nil {
			return nil, err
		}
		return nil, fail
	}
	return st.applyLocked(u, cur, in)
}

func (st *store) applyLocked(u update, cur map[string]string, in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
	for _, c := range strings.Split(u.Condition, " AND ") {
		if !holds(c, cur, u) {
			return nil, ccf()
		}
	}
	out := applyUpdate(cur, in)
	next := flatten(out.Attributes)
	next[attrShardID] = u.Key
	st.items[u.Key] = next
	return out, nil
}

// holds evaluates one conjunct of the package's conditions.
func holds(c string, item map[string]string, u update) bool {
	c = strings.TrimSuffix(strings.TrimPrefix(c, "("), ")")
	if a, b, ok := strings.Cut(c, " OR "); ok {
		return holds(a, item, u) || holds(b, item, u)
	}
	if attr, ok := strings.CutPrefix(c, "attribute_not_exists("); ok {
		_, present := item[u.Names[strings.TrimSuffix(attr, ")")]]
		return !present
	}
	if attr, ok := strings.CutPrefix(c, "attribute_exists("); ok {
		_, present := item[u.Names[strings.TrimSuffix(attr, ")")]]
		return present
	}
	if name, val, ok := strings.Cut(c, " = "); ok {
		v, present := item[u.Names[name]]
		return present && v == u.Values[val]
	}
	panic(fmt.Sprintf("unknown condition %q", c))
}

func TestRenewal(t *testing.T) {
	f, shard, st := held(t, "9")
	var got update
	f.db.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		got = reduce(in)
		return st.update(in)
	}
	f.clock.Add(time.Second)
	// Memory lags the table: renewal must not write it back.
	shard.SetCheckpoint("1")
	if err := f.tbl.GetLease(shard, "me"); err != nil {
		t.Fatalf("renew: %v", err)
	}
	renewed := formatTimeout(fakeNow.Add(time.Second + fakeLease))
	want := update{
		Key:          shard0,
		Update:       "SET #LeaseTimeout = :timeout",
		Condition:    "#AssignedTo = :me AND #LeaseTimeout = :mine AND (attribute_not_exists(#ClaimRequest) OR #ClaimRequest = :me)",
		Names:        names(attrOwner, attrTimeout, attrClaim),
		Values:       map[string]string{":me": "me", ":mine": newTimeout, ":timeout": renewed},
		ReturnValues: "ALL_NEW",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("renewal (-want +got):\n%s", diff)
	}
	if item := st.item(shard0); item[attrCheckpoint] != "9" || item[attrTimeout] != renewed {
		t.Errorf("item after renewal %v", item)
	}
	if formatTimeout(shard.GetLeaseTimeout()) != renewed {
		t.Errorf("shard.LeaseTimeout = %s, want %s", formatTimeout(shard.GetLeaseTimeout()), renewed)
	}
}

func TestRenewalLost(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rival  []string // attributes a rival writes before the renewal
		reason string
	}{
		{"taken over", []string{attrOwner, "other", attrTimeout, future}, `owned by worker "other"`},
		{"claimed", []string{attrClaim, "thief"}, `claimed by worker "thief"`},
		{"owner cleared", []string{attrOwner, ""}, "no owner"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, shard, st := held(t, "")
			lost := f.tbl.Lost(shard0)
			st.set(shard0, tc.rival...)
			before := st.item(shard0)
			err := f.tbl.GetLease(shard, "me")
			if !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("renew: %v, want ErrLeaseLost (%s)", err, tc.reason)
			}
			if errors.As(err, &checkpoint.ErrLeaseNotAcquired{}) {
				t.Error("a lost renewal must end the consumer, not look like a refused acquisition")
			}
			if !isClosed(lost) {
				t.Error("Lost open")
			}
			if diff := cmp.Diff(before, st.item(shard0)); diff != "" {
				t.Errorf("item changed (-before +after):\n%s", diff)
			}
			// Nothing is written for a lost lease any more.
			f.db.Reset()
			if err := f.tbl.GetLease(shard, "me"); !errors.Is(err, ErrLeaseLost) {
				t.Errorf("second renewal: %v", err)
			}
			if err := checkpointAt(f.tbl, shard, "10"); !errors.Is(err, ErrLeaseLost) {
				t.Errorf("checkpoint: %v", err)
			}
			if ops := f.db.Ops(); len(ops) != 0 {
				t.Errorf("calls after loss: %v", ops)
			}
		})
	}
}

// A renewal whose outcome is unknown (a timeout after the write landed) must
// not make the next fenced write (a checkpoint) report a false loss.
func TestAmbiguousRenewal(t *testing.T) {
	for _, tc := range []struct {
		attr  string
		write func(*Table, *par.ShardStatus) error
	}{
		{attrCheckpoint, func(tbl *Table, shard *par.ShardStatus) error { return checkpointAt(tbl, shard, "20") }},
	} {
		t.Run(tc.attr, func(t *testing.T) {
			f, shard, st := held(t, "")
			st.fail, st.apply = errors.New("context deadline exceeded"), true
			f.clock.Add(time.Second)
			if err := f.tbl.GetLease(shard, "me"); err == nil || errors.Is(err, ErrLeaseLost) {
				t.Fatalf("ambiguous renewal: %v, want a plain error", err)
			}
			if err := tc.write(f.tbl, shard); err != nil {
				t.Fatalf("write after ambiguous renewal: %v", err)
			}
			if isClosed(f.tbl.Lost(shard0)) {
				t.Error("Lost closed")
			}
			if got := st.item(shard0)[tc.attr]; got != "20" {
				t.Errorf("stored %s %q", tc.attr, got)
			}
			if err := f.tbl.GetLease(shard, "me"); err != nil {
				t.Errorf("renewal after adoption: %v", err)
			}
		})
	}
}

// A renewal that fails once the lease ran out by this worker's clock (a
// worker waking from a freeze, its renewal's deadline long past) loses the
// lease: another worker may hold it by now, so nothing may run under it.
func TestRenewalFailingAfterTheLeaseRanOut(t *testing.T) {
	f, shard, st := held(t, "")
	lost := f.tbl.Lost(shard0)
	f.tbl.mu.Lock()
	f.tbl.slots[shard0].cur.until = time.Now().Add(-time.Millisecond)
	f.tbl.mu.Unlock()
	st.fail = errors.New("context deadline exceeded")
	err := f.tbl.GetLease(shard, "me")
	if !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "context deadline exceeded") {
		t.Fatalf("renewal: %v, want ErrLeaseLost naming the failure", err)
	}
	if !isClosed(lost) {
		t.Error("Lost open")
	}
	if err := checkpointAt(f.tbl, shard, "10"); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("checkpoint after the loss: %v", err)
	}
}

func TestCheckpointSequence(t *testing.T) {
	f, shard, st := held(t, "100")
	var got update
	f.db.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		got = reduce(in)
		return st.update(in)
	}
	if err := checkpointAt(f.tbl, shard, "150"); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	want := update{
		Key:       shard0,
		Update:    "SET #Checkpoint = :checkpoint",
		Condition: "#AssignedTo = :me AND #LeaseTimeout = :mine",
		Names:     names(attrOwner, attrTimeout, attrCheckpoint),
		Values:    map[string]string{":me": "me", ":mine": newTimeout, ":checkpoint": "150"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("checkpoint write (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		seq     string
		wantErr error
		stored  string
	}{
		{"150", nil, "150"},                             // repeated
		{"99", ErrCheckpointRegression, "150"},          // backwards
		{"1000", nil, "1000"},                           // longer number
		{"abc", nil, "abc"},                             // not judged
		{"", errors.New("empty"), "abc"},                // nothing to write
		{checkpoint.ShardEnd, nil, checkpoint.ShardEnd}, // finished
		{checkpoint.ShardEnd, nil, checkpoint.ShardEnd}, // retried
		{"2000", ErrCheckpointRegression, checkpoint.ShardEnd},
	} {
		err := checkpointAt(f.tbl, shard, tc.seq)
		switch {
		case tc.wantErr == nil && err != nil:
			t.Errorf("checkpoint %q: %v", tc.seq, err)
		case tc.wantErr != nil && err == nil:
			t.Errorf("checkpoint %q succeeded, want %v", tc.seq, tc.wantErr)
		case errors.Is(tc.wantErr, ErrCheckpointRegression) && !errors.Is(err, ErrCheckpointRegression):
			t.Errorf("checkpoint %q: %v, want ErrCheckpointRegression", tc.seq, err)
		}
		if errors.Is(err, ErrLeaseLost) {
			t.Errorf("checkpoint %q: %v is not a loss", tc.seq, err)
		}
		if got := st.item(shard0)[attrCheckpoint]; got != tc.stored {
			t.Errorf("after %q: stored %q, want %q", tc.seq, got, tc.stored)
		}
		if got := shard.GetCheckpoint(); got != tc.stored {
			t.Errorf("after %q: in memory %q, want %q", tc.seq, got, tc.stored)
		}
	}
	if isClosed(f.tbl.Lost(shard0)) {
		t.Error("Lost closed")
	}
}

func TestCheckpointFenced(t *testing.T) {
	f, shard, st := held(t, "100")
	assertFencedOut(t, f, st, func() error { return checkpointAt(f.tbl, shard, "200") }, attrCheckpoint, "300")
	if got := shard.GetCheckpoint(); got != "100" {
		t.Errorf("in-memory checkpoint %q, want the last stored 100", got)
	}
}

// assertFencedOut has another worker take the shard over from f's lease
// (our lease expired) and write the attribute-value pairs rival, then checks
// that write is refused as a lost lease: the error says whose lease it is
// now, Lost is closed, and the item is left as the rival wrote it.
func assertFencedOut(t *testing.T, f *fixture, st *store, write func() error, rival ...string) {
	t.Helper()
	lost := f.tbl.Lost(shard0)
	st.set(shard0, append([]string{attrOwner, "other", attrTimeout, future}, rival...)...)
	before := st.item(shard0)
	err := write()
	if !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("write after a takeover: %v, want ErrLeaseLost", err)
	}
	for _, want := range []string{`"obs"`, shard0, `worker "me"`, `owned by worker "other"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %s", err, want)
		}
	}
	if !isClosed(lost) {
		t.Error("Lost open")
	}
	if diff := cmp.Diff(before, st.item(shard0)); diff != "" {
		t.Errorf("item changed (-before +after):\n%s", diff)
	}
}

func TestCheckpointTransientError(t *testing.T) {
	f, shard, st := held(t, "100")
	st.fail = errors.New("InternalServerError")
	err := checkpointAt(f.tbl, shard, "200")
	if err == nil || errors.Is(err, ErrLeaseLost) {
		t.Fatalf("checkpoint: %v, want a plain error", err)
	}
	if isClosed(f.tbl.Lost(shard0)) {
		t.Error("Lost closed by a transient error")
	}
	if got := shard.GetCheckpoint(); got != "100" {
		t.Errorf("in-memory checkpoint %q, want 100", got)
	}
	if err := checkpointAt(f.tbl, shard, "200"); err != nil {
		t.Errorf("retry: %v", err)
	}
}

func TestCheckpointWithoutLease(t *testing.T) {
	f := newFixture(t)
	err := checkpointAt(f.tbl, newShard(shard0, ""), "5")
	if !errors.Is(err, ErrLeaseLost) {
		t.Errorf("checkpoint without a lease: %v, want ErrLeaseLost", err)
	}
	if ops := f.db.Ops(); len(ops) != 0 {
		t.Errorf("calls %v", ops)
	}
}

// Renewals and checkpoints of one shard run on different goroutines in the
// KCL; a checkpoint fenced on a timeout that a renewal just replaced must not
// be reported as a loss.
func TestRenewalAndCheckpointConcurrently(t *testing.T) {
	f, shard, _ := held(t, "")
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range 100 {
			f.clock.Add(time.Millisecond)
			errs <- f.tbl.GetLease(shard, "me")
		}
	}()
	go func() {
		defer wg.Done()
		for i := range 100 {
			errs <- checkpointAt(f.tbl, shard, fmt.Sprint(i+1))
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestFetchCheckpoint(t *testing.T) {
	ts := fakeNow.Add(3 * time.Second)
	tests := []struct {
		name    string
		stored  map[string]string
		getErr  error
		want    par.ShardStatus
		wantErr error // checkpoint.ErrSequenceIDNotFound, nil, or any other
	}{
		{
			name:    "no item",
			want:    par.ShardStatus{},
			wantErr: checkpoint.ErrSequenceIDNotFound,
		},
		{
			name:    "item without checkpoint",
			stored:  map[string]string{attrOwner: "other", attrTimeout: formatTimeout(ts)},
			want:    par.ShardStatus{AssignedTo: "other", LeaseTimeout: ts},
			wantErr: checkpoint.ErrSequenceIDNotFound,
		},
		{
			name:   "item with checkpoint",
			stored: map[string]string{attrOwner: "other", attrTimeout: formatTimeout(ts), attrCheckpoint: "77", attrClaim: "thief"},
			want:   par.ShardStatus{AssignedTo: "other", LeaseTimeout: ts, Checkpoint: "77", ClaimRequest: "thief"},
		},
		{
			name:   "finished",
			stored: map[string]string{attrCheckpoint: checkpoint.ShardEnd},
			want:   par.ShardStatus{Checkpoint: checkpoint.ShardEnd},
		},
		{
			name:   "our id without a held lease reads as unowned",
			stored: map[string]string{attrOwner: "me", attrTimeout: formatTimeout(ts), attrCheckpoint: "3"},
			want:   par.ShardStatus{LeaseTimeout: ts, Checkpoint: "3"},
		},
		{
			name:   "unreadable timeout",
			stored: map[string]string{attrOwner: "other", attrTimeout: "later", attrCheckpoint: "3"},
			want:   par.ShardStatus{AssignedTo: "other", Checkpoint: "3"},
		},
		{
			name:    "read failure",
			getErr:  errors.New("ProvisionedThroughputExceededException"),
			want:    par.ShardStatus{AssignedTo: "x", Checkpoint: "stale", ClaimRequest: "y"},
			wantErr: errors.New("any"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.db.OnGetItem = func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
				if tc.getErr != nil {
					return nil, tc.getErr
				}
				return items{shard0: tc.stored}.get(in)
			}
			shard := &par.ShardStatus{ID: shard0, Mux: &sync.RWMutex{}, AssignedTo: "x", Checkpoint: "stale", ClaimRequest: "y"}
			err := f.tbl.FetchCheckpoint(shard)
			switch {
			case tc.wantErr == checkpoint.ErrSequenceIDNotFound || tc.wantErr == nil:
				if err != tc.wantErr {
					t.Errorf("err = %v, want %v", err, tc.wantErr)
				}
			default:
				if err == nil || err == checkpoint.ErrSequenceIDNotFound || errors.Is(err, checkpoint.ErrSequenceIDNotFound) {
					t.Errorf("err = %v, want a real error", err)
				}
			}
			tc.want.ID, tc.want.Mux = shard0, shard.Mux
			if diff := cmp.Diff(tc.want, *shard, cmp.Comparer(func(a, b *sync.RWMutex) bool { return a == b })); diff != "" {
				t.Errorf("shard (-want +got):\n%s", diff)
			}
		})
	}
}

// The KCL's release clears the in-memory owner, then calls RemoveLeaseOwner;
// the consumer's renewal goroutine may fire in between or after. Such a late
// renewal must not take the lease again: nobody would consume it, and the
// event loop would skip the shard as ours for ever.
func TestReleaseAndLateRenewal(t *testing.T) {
	f, shard, st := held(t, "8")
	first := f.tbl.Lost(shard0)

	shard.SetLeaseOwner("")
	assertRefused(t, f.tbl.GetLease(shard, "me"), "releasing it")

	var got update
	f.db.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		got = reduce(in)
		return st.update(in)
	}
	if err := f.tbl.RemoveLeaseOwner(shard0); err != nil {
		t.Fatalf("release: %v", err)
	}
	want := update{
		Key:       shard0,
		Update:    "REMOVE #AssignedTo",
		Condition: "#AssignedTo = :me",
		Names:     names(attrOwner),
		Values:    map[string]string{":me": "me"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("release (-want +got):\n%s", diff)
	}
	if !isClosed(first) {
		t.Error("Lost open after release")
	}
	if _, ok := st.item(shard0)[attrOwner]; ok {
		t.Error("owner still stored")
	}
	// The late renewal writes nothing and reports nothing: its consumer is
	// gone, and an error would only be logged as a failed renewal.
	f.db.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		t.Errorf("late renewal wrote: %+v", reduce(in))
		return st.update(in)
	}
	if err := f.tbl.GetLease(shard, "me"); err != nil {
		t.Errorf("late renewal: %v", err)
	}
	f.db.OnUpdateItem = st.update
	if shard.GetLeaseOwner() != "" {
		t.Error("late renewal set the owner")
	}

	// The event loop fetches, then acquires: a new lease with a new channel.
	if err := f.tbl.FetchCheckpoint(shard); err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if err := f.tbl.GetLease(shard, "me"); err != nil {
		t.Fatalf("re-acquire: %v", err)
	}
	second := f.tbl.Lost(shard0)
	if second == first || isClosed(second) {
		t.Error("re-acquisition did not get a fresh Lost channel")
	}
	if shard.GetCheckpoint() != "8" {
		t.Errorf("checkpoint after re-acquisition %q", shard.GetCheckpoint())
	}
}

func TestRemoveLeaseOwnerNotOurs(t *testing.T) {
	f := newFixture(t)
	f.db.OnUpdateItem = func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) { return nil, ccf() }
	if err := f.tbl.RemoveLeaseOwner(shard0); err != nil {
		t.Errorf("release of a lease already taken over: %v", err)
	}
	f.db.OnUpdateItem = func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) { return nil, errors.New("timeout") }
	if err := f.tbl.RemoveLeaseOwner(shard0); err == nil {
		t.Error("failed release reported success")
	}
}

func TestRemoveLeaseInfo(t *testing.T) {
	f := newFixture(t)
	var deleted []string
	f.db.OnDeleteItem = func(in *dynamodb.DeleteItemInput) (*dynamodb.DeleteItemOutput, error) {
		id, _ := str(in.Key, attrShardID)
		deleted = append(deleted, id)
		return &dynamodb.DeleteItemOutput{}, nil
	}
	if err := f.tbl.RemoveLeaseInfo(shard0); err != nil {
		t.Fatal(err)
	}
	if err := f.tbl.RemoveLeaseInfo(MetadataKey); err == nil {
		t.Error("deleted the stream binding")
	}
	if diff := cmp.Diff([]string{shard0}, deleted); diff != "" {
		t.Errorf("deleted (-want +got):\n%s", diff)
	}
}

func TestGetLeaseOwner(t *testing.T) {
	f := newFixture(t)
	f.db.OnGetItem = items{shard0: {attrOwner: "other"}}.get
	if got, err := f.tbl.GetLeaseOwner(shard0); err != nil || got != "other" {
		t.Errorf("GetLeaseOwner = %q, %v", got, err)
	}
	if _, err := f.tbl.GetLeaseOwner("shardId-000000000009"); err != checkpoint.NoLeaseOwnerErr {
		t.Errorf("GetLeaseOwner without owner: %v, want NoLeaseOwnerErr", err)
	}
}

// Numbers are compared by later (TestLater); regresses adds SHARD_END.
func TestRegresses(t *testing.T) {
	for _, tc := range []struct {
		stored, next string
		want         bool
	}{
		{"", "1", false},
		{"5", "5", false},
		{"10", "9", true},
		{"5", checkpoint.ShardEnd, false},
		{checkpoint.ShardEnd, checkpoint.ShardEnd, false},
		{checkpoint.ShardEnd, "5", true},
		{"x", "1", false},
	} {
		if got := regresses(tc.stored, tc.next); got != tc.want {
			t.Errorf("regresses(%q, %q) = %v, want %v", tc.stored, tc.next, got, tc.want)
		}
	}
}

// A lease taken over records when the previous one ended: the records
// that arrived before then may have been started by its owner.
func TestPreviousLeaseEnd(t *testing.T) {
	f, _, _ := held(t, "")
	if end := f.tbl.PreviousLeaseEnd(shard0); !end.IsZero() {
		t.Errorf("first lease of the shard: previous end %s, want none", end)
	}

	st := &store{items: items{shard0: {attrShardID: shard0, attrOwner: "other", attrTimeout: past, attrCheckpoint: "10"}}}
	g := newFixture(t)
	g.db.OnGetItem, g.db.OnUpdateItem = st.get, st.update
	g.kin.listShards = shardList(shard0)
	if err := g.tbl.GetLease(newShard(shard0, ""), "me"); err != nil {
		t.Fatalf("take over an expired lease: %v", err)
	}
	if got, want := g.tbl.PreviousLeaseEnd(shard0), fakeNow.Add(-time.Second); !got.Equal(want) {
		t.Errorf("previous end %s, want the expired lease's %s", got, want)
	}
	if err := g.tbl.RemoveLeaseOwner(shard0); err != nil {
		t.Fatal(err)
	}
	if end := g.tbl.PreviousLeaseEnd(shard0); !end.IsZero() {
		t.Errorf("after the release: %s, want none (no lease held)", end)
	}
}
