package leases

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	kintypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	par "github.com/vmware/vmware-go-kcl-v2/clientlibrary/partition"
)

// maxListShardsPages bounds one refresh; a stream never has this many pages.
const maxListShardsPages = 10000

// shardCache is the stream's shard list, used to find a shard's parents. The
// KCL stores only ParentShardId, so after a merge a child would wait for one
// parent; ListShards also gives AdjacentParentShardId.
type shardCache struct {
	mu       sync.Mutex
	shards   map[string]kintypes.Shard
	fetched  time.Time
	finished map[string]bool // parents seen at SHARD_END, which is final
}

// lineageBlocks returns why shard may not be acquired yet, or "" when its
// parent and adjacent parent are both finished: at SHARD_END in the table,
// or no longer listed by Kinesis (trimmed past retention; see
// retireTrimmed). A parent that is listed but has no item has not been read
// yet, so it blocks too (the KCL would treat it as finished and read the
// child first).
func (t *Table) lineageBlocks(shard *par.ShardStatus) (string, error) {
	// Called by the KCL, which passes no context; each call is bounded.
	listed, err := t.listedShards(context.Background(), shard.ID)
	if err != nil {
		return "", err
	}
	self, ok := listed[shard.ID]
	if !ok {
		return "shard not listed by Kinesis", nil
	}
	for _, p := range uniqueNonEmpty(shard.ParentShardId, aws.ToString(self.ParentShardId), aws.ToString(self.AdjacentParentShardId)) {
		if t.parentFinished(p) {
			continue
		}
		if _, ok := listed[p]; !ok {
			if reason, err := t.retireTrimmed(p); reason != "" || err != nil {
				return reason, err
			}
			continue
		}
		r, err := t.getRow(p)
		if err != nil {
			return "", fmt.Errorf("read parent shard %s: %w", p, err)
		}
		if r.checkpoint != checkpoint.ShardEnd {
			cp := r.checkpoint
			if !r.exists {
				cp = "no lease item"
			} else if cp == "" {
				cp = "no checkpoint"
			}
			return fmt.Sprintf("parent shard %s is not finished (%s)", p, cp), nil
		}
		t.setParentFinished(p)
	}
	return "", nil
}

// retireTrimmed marks a parent that Kinesis no longer lists as finished in
// the table. Its data is gone, but an item left at a mid-stream checkpoint
// (say, the application was down for longer than the retention period)
// would hold the child's consumer in the KCL's waitOnParentShard for ever: it
// polls the parent's item until SHARD_END and ignores Shutdown meanwhile.
func (t *Table) retireTrimmed(p string) (string, error) {
	r, err := t.getRow(p)
	if err != nil {
		return "", fmt.Errorf("read parent shard %s: %w", p, err)
	}
	if !r.hasCheckpt || r.checkpoint == checkpoint.ShardEnd {
		// Without a checkpoint the KCL treats the parent as finished.
		t.setParentFinished(p)
		return "", nil
	}
	var e expr
	_, err = t.update(&dynamodb.UpdateItemInput{
		Key:                       map[string]types.AttributeValue{attrShardID: s(p)},
		UpdateExpression:          aws.String("SET " + e.name(attrCheckpoint) + " = " + e.value("end", checkpoint.ShardEnd)),
		ConditionExpression:       aws.String(e.name(attrCheckpoint) + " = " + e.value("read", r.checkpoint)),
		ExpressionAttributeNames:  e.Names,
		ExpressionAttributeValues: e.Values,
	})
	switch {
	case err == nil:
		t.shardLog(p).Warn("parent shard is no longer in the stream; marked finished", "checkpoint", r.checkpoint)
		t.setParentFinished(p)
		return "", nil
	case isConditionFailed(err):
		return fmt.Sprintf("parent shard %s changed while being marked finished", p), nil
	default:
		return "", fmt.Errorf("mark trimmed parent shard %s finished: %w", p, err)
	}
}

// listedShards returns the cached shard list, refreshed when older than
// ShardListTTL or, at most once per unknownShardRefreshGap, when it lacks
// want (a shard created since).
func (t *Table) listedShards(ctx context.Context, want string) (map[string]kintypes.Shard, error) {
	c := &t.shards
	c.mu.Lock()
	defer c.mu.Unlock()
	age := t.now().Sub(c.fetched)
	_, known := c.shards[want]
	if c.shards != nil && age < t.cfg.ShardListTTL && (known || age < unknownShardRefreshGap) {
		return c.shards, nil
	}
	shards, err := t.listShards(ctx)
	if err != nil {
		return nil, err
	}
	c.shards, c.fetched = shards, t.now()
	for id := range c.finished {
		if _, ok := shards[id]; !ok {
			delete(c.finished, id)
		}
	}
	return c.shards, nil
}

// listShards pages through ListShards: the stream name on the first call,
// the token alone after (the API refuses both together).
func (t *Table) listShards(ctx context.Context) (map[string]kintypes.Shard, error) {
	shards := make(map[string]kintypes.Shard)
	in := &kinesis.ListShardsInput{StreamName: aws.String(t.cfg.StreamName)}
	for page := 0; page < maxListShardsPages; page++ {
		cctx, cancel := context.WithTimeout(ctx, t.cfg.CallTimeout)
		out, err := t.kin.ListShards(cctx, in)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("list shards of stream %q: %w", t.cfg.StreamName, err)
		}
		for _, sh := range out.Shards {
			shards[aws.ToString(sh.ShardId)] = sh
		}
		if aws.ToString(out.NextToken) == "" {
			return shards, nil
		}
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
	return nil, fmt.Errorf("list shards of stream %q: more than %d pages", t.cfg.StreamName, maxListShardsPages)
}

func (t *Table) parentFinished(id string) bool {
	t.shards.mu.Lock()
	defer t.shards.mu.Unlock()
	return t.shards.finished[id]
}

func (t *Table) setParentFinished(id string) {
	t.shards.mu.Lock()
	defer t.shards.mu.Unlock()
	if t.shards.finished == nil {
		t.shards.finished = make(map[string]bool)
	}
	t.shards.finished[id] = true
}

func uniqueNonEmpty(ids ...string) []string {
	var out []string
	for _, id := range ids {
		if id == "" {
			continue
		}
		dup := false
		for _, o := range out {
			dup = dup || o == id
		}
		if !dup {
			out = append(out, id)
		}
	}
	return out
}
