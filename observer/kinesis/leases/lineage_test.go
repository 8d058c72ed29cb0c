package leases

import (
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kintypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/google/go-cmp/cmp"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
)

func TestLineage(t *testing.T) {
	end := checkpoint.ShardEnd
	tests := []struct {
		name    string
		listed  []string // shardList specs
		stored  items
		parent  string // what the KCL put in ShardStatus.ParentShardId
		refusal string // "" means acquired
		listErr error
	}{
		{name: "no parents", listed: []string{"c"}},
		{name: "parent finished", listed: []string{"p", "c<p"}, stored: items{"p": {attrCheckpoint: end}}, parent: "p"},
		{name: "parent still being read", listed: []string{"p", "c<p"}, stored: items{"p": {attrCheckpoint: "5"}}, parent: "p",
			refusal: "parent shard p is not finished (5)"},
		{name: "parent never leased", listed: []string{"p", "c<p"}, parent: "p",
			refusal: "parent shard p is not finished (no lease item)"},
		{name: "parent leased, no checkpoint yet", listed: []string{"p", "c<p"}, stored: items{"p": {attrOwner: "x"}}, parent: "p",
			refusal: "parent shard p is not finished (no checkpoint)"},
		{name: "parent trimmed from the stream", listed: []string{"c<p"}, parent: "p"},
		{name: "adjacent parent unfinished", listed: []string{"p", "q", "c<p+q"}, stored: items{"p": {attrCheckpoint: end}, "q": {attrCheckpoint: "7"}}, parent: "p",
			refusal: "parent shard q is not finished (7)"},
		{name: "parent unfinished, adjacent finished", listed: []string{"p", "q", "c<p+q"}, stored: items{"p": {attrCheckpoint: "7"}, "q": {attrCheckpoint: end}}, parent: "p",
			refusal: "parent shard p is not finished (7)"},
		{name: "both parents finished", listed: []string{"p", "q", "c<p+q"}, stored: items{"p": {attrCheckpoint: end}, "q": {attrCheckpoint: end}}, parent: "p"},
		{name: "adjacent parent trimmed", listed: []string{"p", "c<p+q"}, stored: items{"p": {attrCheckpoint: end}}, parent: "p"},
		{name: "parent known only from the KCL", listed: []string{"p", "c"}, stored: items{"p": {attrCheckpoint: "1"}}, parent: "p",
			refusal: "parent shard p is not finished"},
		{name: "shard unknown to Kinesis", listed: []string{"p"}, refusal: "not listed"},
		{name: "ListShards fails", listErr: errors.New("LimitExceededException")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.listErr != nil {
				f.kin.listShards = func(*kinesis.ListShardsInput) (*kinesis.ListShardsOutput, error) { return nil, tc.listErr }
			} else {
				f.kin.listShards = shardList(tc.listed...)
			}
			if tc.stored == nil {
				tc.stored = items{}
			}
			f.db.OnGetItem = tc.stored.get
			f.db.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
				return applyUpdate(nil, in), nil
			}
			err := f.tbl.GetLease(newShard("c", tc.parent), "me")
			switch {
			case tc.listErr != nil:
				if err == nil || errors.Is(err, ErrNotAcquired) || !errors.Is(err, tc.listErr) {
					t.Errorf("GetLease: %v, want the ListShards error", err)
				}
			case tc.refusal != "":
				assertRefused(t, err, tc.refusal)
			case err != nil:
				t.Errorf("GetLease: %v", err)
			}
		})
	}
}

func TestListShardsPages(t *testing.T) {
	f := newFixture(t)
	var inputs []*kinesis.ListShardsInput
	f.kin.listShards = func(in *kinesis.ListShardsInput) (*kinesis.ListShardsOutput, error) {
		inputs = append(inputs, in)
		if in.NextToken == nil {
			return &kinesis.ListShardsOutput{Shards: []kintypes.Shard{parseShardSpec("p")}, NextToken: aws.String("page-2")}, nil
		}
		return &kinesis.ListShardsOutput{Shards: []kintypes.Shard{parseShardSpec("c<p")}}, nil
	}
	f.db.OnGetItem = items{"p": {attrCheckpoint: "3"}}.get
	assertRefused(t, f.tbl.GetLease(newShard("c", "p"), "me"), "parent shard p is not finished")
	want := []*kinesis.ListShardsInput{
		{StreamName: aws.String("stream-a")},
		{NextToken: aws.String("page-2")}, // a stream name with a token is refused
	}
	if diff := cmp.Diff(want, inputs, cmp.Comparer(func(a, b *kinesis.ListShardsInput) bool {
		return aws.ToString(a.StreamName) == aws.ToString(b.StreamName) && aws.ToString(a.NextToken) == aws.ToString(b.NextToken) &&
			a.ShardFilter == nil && b.ShardFilter == nil && a.ExclusiveStartShardId == nil && b.ExclusiveStartShardId == nil
	})); diff != "" {
		t.Errorf("ListShards inputs (-want +got):\n%s", diff)
	}
}

func TestShardListCache(t *testing.T) {
	f := newFixture(t)
	listed := []string{"s0", "s1", "s2"}
	f.kin.listShards = func(in *kinesis.ListShardsInput) (*kinesis.ListShardsOutput, error) {
		return shardList(listed...)(in)
	}
	f.db.OnGetItem = items{}.get
	f.db.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		return applyUpdate(nil, in), nil
	}
	acquire := func(id string) error { return f.tbl.GetLease(newShard(id, ""), "me") }
	step := func(what string, err error, wantCalls int) {
		t.Helper()
		if got := f.kin.count(); got != wantCalls {
			t.Errorf("%s: %d ListShards calls, want %d", what, got, wantCalls)
		}
		if err != nil && !errors.Is(err, ErrNotAcquired) {
			t.Errorf("%s: %v", what, err)
		}
	}

	step("first acquisition lists", acquire("s0"), 1)
	step("known shard within the TTL uses the cache", acquire("s1"), 1)
	listed = append(listed, "s9")
	err := acquire("s9")
	step("unknown shard right after a refresh waits", err, 1)
	assertRefused(t, err, "not listed")
	f.clock.Add(unknownShardRefreshGap)
	step("unknown shard refreshes", acquire("s9"), 2)
	if isClosed(f.tbl.Lost("s9")) {
		t.Error("s9 not acquired after the refresh")
	}
	f.clock.Add(DefaultShardListTTL)
	step("stale cache refreshes", acquire("s2"), 3)
}

func TestFinishedParentIsRemembered(t *testing.T) {
	f := newFixture(t)
	f.kin.listShards = shardList("p", "c1<p", "c2<p")
	stored := items{"p": {attrCheckpoint: checkpoint.ShardEnd}}
	parentReads := 0
	f.db.OnGetItem = func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
		if id, _ := str(in.Key, attrShardID); id == "p" {
			parentReads++
		}
		return stored.get(in)
	}
	f.db.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
		return applyUpdate(nil, in), nil
	}
	for _, id := range []string{"c1", "c2"} {
		if err := f.tbl.GetLease(newShard(id, "p"), "me"); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	if parentReads != 1 {
		t.Errorf("parent read %d times, want once (SHARD_END is final)", parentReads)
	}
}

// A parent gone from the stream with its item left mid-stream would keep the
// KCL's waitOnParentShard polling for ever; it is marked finished first.
func TestTrimmedParentIsMarkedFinished(t *testing.T) {
	for _, tc := range []struct {
		name      string
		parent    map[string]string
		race      bool
		wantWrite bool
		wantCP    string
		refusal   string
	}{
		{name: "mid-stream checkpoint", parent: map[string]string{attrOwner: "x", attrCheckpoint: "42"}, wantWrite: true, wantCP: checkpoint.ShardEnd},
		{name: "already finished", parent: map[string]string{attrCheckpoint: checkpoint.ShardEnd}, wantCP: checkpoint.ShardEnd},
		{name: "no checkpoint", parent: map[string]string{attrOwner: "x"}},
		{name: "no item"},
		{name: "changed meanwhile", parent: map[string]string{attrCheckpoint: "42"}, race: true, wantWrite: true, wantCP: "43",
			refusal: "parent shard p changed while being marked finished"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.kin.listShards = shardList("c<p")
			st := &store{items: items{}}
			if tc.parent != nil {
				st.items["p"] = map[string]string{attrShardID: "p"}
				for k, v := range tc.parent {
					st.items["p"][k] = v
				}
			}
			f.db.OnGetItem = st.get
			var wrote []update
			f.db.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
				u := reduce(in)
				if u.Key == "p" {
					wrote = append(wrote, u)
					if tc.race {
						st.set("p", attrCheckpoint, "43")
					}
				}
				return st.update(in)
			}
			err := f.tbl.GetLease(newShard("c", "p"), "me")
			if tc.refusal != "" {
				assertRefused(t, err, tc.refusal)
			} else if err != nil {
				t.Fatalf("GetLease: %v", err)
			}
			if tc.wantWrite {
				want := []update{{
					Key:       "p",
					Update:    "SET #Checkpoint = :end",
					Condition: "#Checkpoint = :read",
					Names:     names(attrCheckpoint),
					Values:    map[string]string{":end": checkpoint.ShardEnd, ":read": "42"},
				}}
				if diff := cmp.Diff(want, wrote); diff != "" {
					t.Errorf("parent write (-want +got):\n%s", diff)
				}
			} else if len(wrote) != 0 {
				t.Errorf("unexpected parent writes %v", wrote)
			}
			if got := st.item("p")[attrCheckpoint]; got != tc.wantCP {
				t.Errorf("parent checkpoint %q, want %q", got, tc.wantCP)
			}
		})
	}
}
