package leases

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// The local expiry must never come after the LeaseTimeout that other
// workers read, however long the calls take: it counts from before the read
// that precedes an acquisition and before a renewal's write.
func TestHeldUntilCountsFromBeforeTheWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t)
		st := &store{items: items{}}
		const slowRead, slowWrite = 400 * time.Millisecond, 700 * time.Millisecond
		f.db.OnGetItem = func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
			time.Sleep(slowRead)
			return st.get(in)
		}
		f.db.OnUpdateItem = func(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
			time.Sleep(slowWrite)
			return st.update(in)
		}
		f.kin.listShards = shardList(shard0)
		shard := newShard(shard0, "")
		if got := f.tbl.HeldUntil(shard0); !got.IsZero() {
			t.Fatalf("HeldUntil before any lease = %v, want zero", got)
		}

		start := time.Now()
		if err := f.tbl.GetLease(shard, "me"); err != nil {
			t.Fatalf("acquire: %v", err)
		}
		if got, want := f.tbl.HeldUntil(shard0), start.Add(fakeLease); !got.Equal(want) {
			t.Errorf("after acquiring: HeldUntil = start%+v, want start+%v", got.Sub(start), fakeLease)
		}

		time.Sleep(time.Second)
		f.clock.Add(time.Second)
		renewing := time.Now()
		if err := f.tbl.GetLease(shard, "me"); err != nil {
			t.Fatalf("renew: %v", err)
		}
		if got, want := f.tbl.HeldUntil(shard0), renewing.Add(fakeLease); !got.Equal(want) {
			t.Errorf("after renewing: HeldUntil = renewal%+v, want renewal+%v", got.Sub(renewing), fakeLease)
		}

		if err := f.tbl.RemoveLeaseOwner(shard0); err != nil {
			t.Fatal(err)
		}
		if got := f.tbl.HeldUntil(shard0); !got.IsZero() {
			t.Errorf("HeldUntil after release = %v, want zero", got)
		}
	})
}
