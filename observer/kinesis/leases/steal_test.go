package leases

import (
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	par "github.com/vmware/vmware-go-kcl-v2/clientlibrary/partition"
)

func TestListActiveWorkers(t *testing.T) {
	f := newFixture(t)
	pages := []*dynamodb.ScanOutput{
		{
			Items: []map[string]types.AttributeValue{
				toItem(map[string]string{attrShardID: MetadataKey, attrStream: "stream-a", attrStarted: "2026-11-22T09:00:00Z"}),
				toItem(map[string]string{attrShardID: "s0", attrOwner: "a", attrCheckpoint: "1"}),
			},
			LastEvaluatedKey: toItem(map[string]string{attrShardID: "s0"}),
		},
		{
			Items: []map[string]types.AttributeValue{
				toItem(map[string]string{attrShardID: "s1", attrOwner: "b", attrCheckpoint: "2"}),
				toItem(map[string]string{attrShardID: "s2", attrOwner: "me", attrCheckpoint: "3"}),
				toItem(map[string]string{attrShardID: "s3", attrOwner: "a", attrCheckpoint: checkpoint.ShardEnd}),
				toItem(map[string]string{attrShardID: "s4", attrOwner: "a"}), // no checkpoint: skipped, as by the KCL
			},
		},
	}
	var scans []*dynamodb.ScanInput
	f.db.OnScan = func(in *dynamodb.ScanInput) (*dynamodb.ScanOutput, error) {
		cp := *in
		scans = append(scans, &cp)
		return pages[len(scans)-1], nil
	}
	status := map[string]*par.ShardStatus{}
	for _, id := range []string{"s0", "s1", "s3", "s4"} {
		status[id] = newShard(id, "")
	}
	status["s4"].AssignedTo = "c"

	got, err := f.tbl.ListActiveWorkers(status)
	if err != nil {
		t.Fatalf("ListActiveWorkers: %v", err)
	}
	if diff := cmp.Diff(map[string][]string{"a": {"s0"}, "b": {"s1"}, "c": {"s4"}}, workerShards(got)); diff != "" {
		t.Errorf("workers (-want +got):\n%s", diff)
	}
	if len(scans) != 2 {
		t.Fatalf("%d scans, want 2 pages", len(scans))
	}
	if got := aws.ToString(scans[0].ProjectionExpression); got != "#ShardID, #AssignedTo, #Checkpoint" {
		t.Errorf("projection %q", got)
	}
	if id, _ := str(scans[1].ExclusiveStartKey, attrShardID); id != "s0" {
		t.Errorf("second page starts at %q", id)
	}

	// Within LeaseSyncInterval the table is not scanned again; a shard
	// nobody owns makes the census fail, as the KCL's does.
	status["s2"] = newShard("s2", "")
	if _, err := f.tbl.ListActiveWorkers(status); err != checkpoint.ErrShardNotAssigned {
		t.Errorf("with an unowned shard: %v, want ErrShardNotAssigned", err)
	}
	if len(scans) != 2 {
		t.Errorf("rescanned within the interval")
	}
}

func workerShards(w map[string][]*par.ShardStatus) map[string][]string {
	out := map[string][]string{}
	for owner, shards := range w {
		for _, s := range shards {
			out[owner] = append(out[owner], s.ID)
		}
		sort.Strings(out[owner])
	}
	return out
}

func TestListActiveWorkersKeepsHeldShards(t *testing.T) {
	f, shard, _ := held(t, "")
	f.db.OnScan = func(*dynamodb.ScanInput) (*dynamodb.ScanOutput, error) {
		return &dynamodb.ScanOutput{Items: []map[string]types.AttributeValue{
			toItem(map[string]string{attrShardID: shard0, attrOwner: "other", attrCheckpoint: "1"}),
		}}, nil
	}
	got, err := f.tbl.ListActiveWorkers(map[string]*par.ShardStatus{shard0: shard})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string][]string{"me": {shard0}}, workerShards(got)); diff != "" {
		t.Errorf("workers (-want +got):\n%s", diff)
	}
}

func TestClaimShard(t *testing.T) {
	tests := []struct {
		name    string
		stored  map[string]string
		ccf     bool
		want    *update
		wantErr string
	}{
		{
			name:   "owned, checkpointed child",
			stored: map[string]string{attrOwner: "a", attrTimeout: future, attrCheckpoint: "5", attrParent: "p"},
			want: &update{
				Update: "SET #ClaimRequest = :claim",
				Condition: "attribute_exists(#ShardID) AND attribute_not_exists(#ClaimRequest) AND #LeaseTimeout = :timeout" +
					" AND #AssignedTo = :owner AND #Checkpoint = :checkpoint AND #ParentShardId = :parent",
				Names:  names(attrShardID, attrClaim, attrTimeout, attrOwner, attrCheckpoint, attrParent),
				Values: map[string]string{":claim": "me", ":timeout": future, ":owner": "a", ":checkpoint": "5", ":parent": "p"},
			},
		},
		{
			name:   "no checkpoint, no parent",
			stored: map[string]string{attrOwner: "a", attrTimeout: future},
			want: &update{
				Update: "SET #ClaimRequest = :claim",
				Condition: "attribute_exists(#ShardID) AND attribute_not_exists(#ClaimRequest) AND #LeaseTimeout = :timeout" +
					" AND #AssignedTo = :owner AND attribute_not_exists(#Checkpoint) AND attribute_not_exists(#ParentShardId)",
				Names:  names(attrShardID, attrClaim, attrTimeout, attrOwner, attrCheckpoint, attrParent),
				Values: map[string]string{":claim": "me", ":timeout": future, ":owner": "a"},
			},
		},
		{name: "finished shard", stored: map[string]string{attrOwner: "a", attrCheckpoint: checkpoint.ShardEnd}, wantErr: "finished"},
		{name: "no item", wantErr: "no lease item"},
		{
			name:    "raced",
			stored:  map[string]string{attrOwner: "a", attrTimeout: future},
			ccf:     true,
			want:    &update{},
			wantErr: "another claim came first",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			stored := items{}
			if tc.stored != nil {
				stored[shard0] = tc.stored
			}
			f.db.OnGetItem = stored.get
			var got *update
			f.db.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
				u := reduce(in)
				got = &u
				if tc.ccf {
					return nil, ccf()
				}
				return &dynamodb.UpdateItemOutput{}, nil
			}
			shard := newShard(shard0, "")
			err := f.tbl.ClaimShard(shard, "me")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("ClaimShard: %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("ClaimShard: %v", err)
			}
			if tc.ccf {
				return
			}
			if tc.want != nil {
				tc.want.Key = shard0
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("UpdateItem (-want +got):\n%s", diff)
			}
			if tc.wantErr == "" && shard.ClaimRequest != "me" {
				t.Errorf("shard.ClaimRequest = %q", shard.ClaimRequest)
			}
		})
	}
}

// A whole steal between two workers sharing one table: the claim makes the
// owner's renewal fail, the owner releases, and the claimer takes the shard.
func TestStealHandOver(t *testing.T) {
	st := &store{items: items{shard0: {attrShardID: shard0, attrCheckpoint: "10"}}}
	worker := func(id string) *fixture {
		f := newFixture(t)
		f.tbl.cfg.WorkerID = id
		f.db.OnGetItem, f.db.OnUpdateItem = st.get, st.update
		f.kin.listShards = shardList(shard0)
		return f
	}
	a, b := worker("a"), worker("b")
	shardA, shardB := newShard(shard0, ""), newShard(shard0, "")
	if err := take(a.tbl, shardA); err != nil {
		t.Fatal(err)
	}
	if err := b.tbl.ClaimShard(shardB, "b"); err != nil {
		t.Fatalf("claim: %v", err)
	}
	assertRefused(t, take(b.tbl, shardB), `held by worker "a"`)

	if err := a.tbl.GetLease(shardA, "a"); !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), checkpoint.ErrShardClaimed) {
		t.Fatalf("A's renewal after the claim: %v", err)
	}
	shardA.SetLeaseOwner("")
	if err := a.tbl.RemoveLeaseOwner(shard0); err != nil {
		t.Fatal(err)
	}
	if err := take(b.tbl, shardB); err != nil {
		t.Fatalf("B takes the released, claimed shard: %v", err)
	}
	item := st.item(shard0)
	if item[attrOwner] != "b" || item[attrCheckpoint] != "10" {
		t.Errorf("item after the steal: %v", item)
	}
	if _, ok := item[attrClaim]; ok {
		t.Error("claim not consumed")
	}
	if shardB.GetCheckpoint() != "10" {
		t.Errorf("B resumes at %q", shardB.GetCheckpoint())
	}
}
