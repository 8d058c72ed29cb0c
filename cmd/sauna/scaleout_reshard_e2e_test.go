package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
)

// TestScaleOutReshard splits a shard and then merges two adjacent ones
// while two `sauna run` processes share a 4-shard stream with balancing on
// and idempotency off, under a steady producer. Nothing is lost, nothing
// runs twice, each key keeps its order, every child starts only after its
// parents (both parents of the merge) finished, and the two processes hold
// two of the four open shards each at the end.
func TestScaleOutReshard(t *testing.T) {
	parallel(t)
	env := emulator.Require(t)
	const shards = 4
	stream := emulator.UniqueName(t, "scale-reshard")
	id := "com.acme." + emulator.UniqueName(t, "obs-scale-reshard")
	env.CreateStream(t, stream, shards)
	kin := env.Kinesis(t)
	sink := newDGSink(t)
	cfg := scaleConfig(id, stream)
	prod := startScaleProducer(t, env, stream)

	a := dgStartWorker(t, env, sink.URL, "a", cfg)
	b := dgStartWorker(t, env, sink.URL, "b", cfg)
	workers := []*dgWorker{a, b}
	waitShares(t, env, id, shards, workers, 60*time.Second)
	waitArrivals := func(what string) {
		t.Helper()
		from := sink.distinct()
		waitFor(t, giveUp, func() bool { return sink.distinct() >= from+40 },
			func() string { return fmt.Sprintf("40 more commands %s (from %d)", what, from) })
	}
	waitArrivals("before the split")

	open, _ := dlvShards(t, kin, stream)
	parent := open[0]
	dlvSplit(t, kin, stream, parent)
	dlvWaitActive(t, kin, stream)
	dlvWaitShardEnd(t, env, id, aws.ToString(parent.ShardId))
	waitArrivals("after the split")

	open, _ = dlvShards(t, kin, stream)
	x, y := dlvMergeLastPair(t, kin, stream, open)
	dlvWaitActive(t, kin, stream)
	dlvWaitShardEnd(t, env, id, aws.ToString(x.ShardId), aws.ToString(y.ShardId))
	waitArrivals("after the merge")

	open, closed := dlvShards(t, kin, stream)
	if len(open) != shards || len(closed) != 3 {
		t.Fatalf("after the split and the merge: %d open and %d closed shards, want %d and 3", len(open), len(closed), shards)
	}
	waitShares(t, env, id, shards, workers, 60*time.Second)

	ids, keys, land := prod.finish(t)
	sink.waitAll(t, ids, 60*time.Second)
	hits := sink.snapshot()
	dgCheckKeyOrder(t, ids, keys, land, hits)
	checkParentsFirst(t, append(open, closed...), ids, land, hits)
	if dups := ranTwice(ids, hits, time.Now()); len(dups) > 0 {
		t.Errorf("%d commands ran twice (idempotency off): %s", len(dups), strings.Join(dups[:min(len(dups), 10)], "; "))
	}
	handoffs := 0
	for _, w := range workers {
		handoffs += len(w.p.logsMatching(msgIs("shard handed over")))
	}
	t.Logf("%d commands; split %s, merged %s and %s; %d graceful handoffs", len(ids), aws.ToString(parent.ShardId),
		aws.ToString(x.ShardId), aws.ToString(y.ShardId), handoffs)
}

// checkParentsFirst asserts that no record of a child shard reached the
// receiver before the last record of each of its parents (the adjacent
// parent of a merge included) first did.
func checkParentsFirst(t *testing.T, all []types.Shard, ids []string, land []dgLanding, hits map[string][]dgHit) {
	t.Helper()
	first, last := map[string]time.Time{}, map[string]time.Time{}
	for i, cid := range ids {
		h := hits[cid]
		if len(h) == 0 {
			continue
		}
		at, sh := h[0].at, land[i].shard
		if f, ok := first[sh]; !ok || at.Before(f) {
			first[sh] = at
		}
		if at.After(last[sh]) {
			last[sh] = at
		}
	}
	checked := 0
	for _, c := range all {
		child := aws.ToString(c.ShardId)
		start, ok := first[child]
		if !ok {
			continue
		}
		for _, p := range []string{aws.ToString(c.ParentShardId), aws.ToString(c.AdjacentParentShardId)} {
			end, ok := last[p]
			if p == "" || !ok {
				continue
			}
			checked++
			if start.Before(end) {
				t.Errorf("child %s delivered its first command at %s, before its parent %s delivered its last at %s",
					child, start.Format(time.StampMicro), p, end.Format(time.StampMicro))
			}
		}
	}
	// The split gives two children of one parent, the merge one child of two.
	if checked < 4 {
		t.Errorf("only %d parent-child pairs had deliveries on both sides, want at least 4", checked)
	}
}
