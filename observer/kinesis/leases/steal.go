package leases

import (
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	par "github.com/vmware/vmware-go-kcl-v2/clientlibrary/partition"
)

// maxScanPages bounds one lease sync; each page is up to 1 MB of items.
const maxScanPages = 10000

// ListActiveWorkers is the KCL's lease-stealing census: it refreshes owners
// and checkpoints of shardStatus from a table scan (at most once per
// LeaseSyncInterval) and groups the unfinished shards by owner. Like the
// KCL's, it fails with checkpoint.ErrShardNotAssigned while any unfinished
// shard has no owner. Shards this Table holds keep their in-memory state.
func (t *Table) ListActiveWorkers(shardStatus map[string]*par.ShardStatus) (map[string][]*par.ShardStatus, error) {
	if err := t.syncLeases(shardStatus); err != nil {
		return nil, err
	}
	workers := map[string][]*par.ShardStatus{}
	for _, shard := range shardStatus {
		if shard.GetCheckpoint() == checkpoint.ShardEnd {
			continue
		}
		owner := shard.GetLeaseOwner()
		if owner == "" {
			return nil, checkpoint.ErrShardNotAssigned
		}
		workers[owner] = append(workers[owner], shard)
	}
	return workers, nil
}

func (t *Table) syncLeases(shardStatus map[string]*par.ShardStatus) error {
	t.mu.Lock()
	due := t.lastLeaseSync.IsZero() || t.now().Sub(t.lastLeaseSync) >= t.cfg.LeaseSyncInterval
	t.mu.Unlock()
	if !due {
		return nil
	}
	var e expr
	in := &dynamodb.ScanInput{
		TableName:                aws.String(t.cfg.TableName),
		ProjectionExpression:     aws.String(strings.Join([]string{e.name(attrShardID), e.name(attrOwner), e.name(attrCheckpoint)}, ", ")),
		ExpressionAttributeNames: e.Names,
	}
	me := t.cfg.WorkerID
	for page := 0; ; page++ {
		if page == maxScanPages {
			return fmt.Errorf("lease table %q: scan: more than %d pages", t.cfg.TableName, maxScanPages)
		}
		ctx, cancel := t.callCtx()
		out, err := t.db.Scan(ctx, in)
		cancel()
		if err != nil {
			return fmt.Errorf("lease table %q: scan: %w", t.cfg.TableName, err)
		}
		for _, item := range out.Items {
			id, _ := str(item, attrShardID)
			owner, hasOwner := str(item, attrOwner)
			cp, hasCP := str(item, attrCheckpoint)
			if !IsLeaseKey(id) || !hasOwner || !hasCP {
				continue
			}
			shard, ok := shardStatus[id]
			if !ok || t.holds(shard) {
				continue
			}
			if owner == me {
				// Not held here: see FetchCheckpoint.
				owner = ""
			}
			shard.SetLeaseOwner(owner)
			shard.SetCheckpoint(cp)
		}
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
	t.mu.Lock()
	t.lastLeaseSync = t.now()
	t.mu.Unlock()
	return nil
}

func (t *Table) holds(shard *par.ShardStatus) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	sl := t.slots[shard.ID]
	return sl != nil && sl.cur != nil && sl.cur.shard == shard
}

// ClaimShard asks the owner of shard to hand it over to claimID (lease
// stealing): it re-reads the item into shard and sets ClaimRequest, on the
// condition that the item is unchanged since that read and carries no claim
// yet. The owner's next renewal then fails, its consumer releases the shard,
// and claimID acquires it.
func (t *Table) ClaimShard(shard *par.ShardStatus, claimID string) error {
	r, err := t.getRow(shard.ID)
	if err != nil {
		return fmt.Errorf("lease table %q: read lease of shard %s: %w", t.cfg.TableName, shard.ID, err)
	}
	if !r.exists {
		return fmt.Errorf("lease table %q: claim shard %s: no lease item", t.cfg.TableName, shard.ID)
	}
	held := t.holds(shard)
	setShard(shard, func(sh *par.ShardStatus) {
		sh.Checkpoint = r.checkpoint
		sh.ClaimRequest = r.claim
		if !held {
			sh.AssignedTo = r.owner
			sh.LeaseTimeout, _ = r.leaseTimeout()
		}
	})
	if r.checkpoint == checkpoint.ShardEnd {
		return fmt.Errorf("lease table %q: claim shard %s: shard is finished", t.cfg.TableName, shard.ID)
	}
	var e expr
	conds := []string{"attribute_exists(" + e.name(attrShardID) + ")", "attribute_not_exists(" + e.name(attrClaim) + ")"}
	eq := func(present bool, attr, key, v string) {
		if present {
			conds = append(conds, e.name(attr)+" = "+e.value(key, v))
		} else {
			conds = append(conds, "attribute_not_exists("+e.name(attr)+")")
		}
	}
	eq(r.hasTimeout, attrTimeout, "timeout", r.timeout)
	eq(r.hasOwner, attrOwner, "owner", r.owner)
	eq(r.hasCheckpt, attrCheckpoint, "checkpoint", r.checkpoint)
	eq(r.parent != "", attrParent, "parent", r.parent)
	_, err = t.update(&dynamodb.UpdateItemInput{
		Key:                       map[string]types.AttributeValue{attrShardID: s(shard.ID)},
		UpdateExpression:          aws.String("SET " + e.name(attrClaim) + " = " + e.value("claim", claimID)),
		ConditionExpression:       aws.String(strings.Join(conds, " AND ")),
		ExpressionAttributeNames:  e.Names,
		ExpressionAttributeValues: e.Values,
	})
	if err != nil {
		if isConditionFailed(err) {
			return fmt.Errorf("lease table %q: claim shard %s: %w", t.cfg.TableName, shard.ID, errClaimRaced)
		}
		return fmt.Errorf("lease table %q: claim shard %s: %w", t.cfg.TableName, shard.ID, err)
	}
	setShard(shard, func(sh *par.ShardStatus) { sh.ClaimRequest = claimID })
	t.shardLog(shard.ID).Info("shard claimed", "claim", claimID, "owner", r.owner)
	return nil
}

var errClaimRaced = errors.New("the lease changed, or another claim came first")
