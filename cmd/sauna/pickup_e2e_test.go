package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
)

// dgPickup is what TestDeliveryPickupAndFailover measures; every duration
// is in seconds.
type dgPickup struct {
	Shards int `json:"shards"`
	// One worker alone on the stream.
	SoloFromProcessStart  float64 `json:"solo_all_owned_from_process_start_s"`
	SoloFromObserverStart float64 `json:"solo_all_owned_from_observer_started_s"`
	SoloFirstLease        float64 `json:"solo_first_lease_from_observer_started_s"`
	SoloStartup           float64 `json:"solo_sauna_starting_to_observer_started_s"`
	// Steady state of the solo worker, per shard and second.
	SteadyWindow          float64        `json:"steady_window_s"`
	SteadyOps             map[string]int `json:"steady_dynamodb_ops"`
	SteadyReadsPerShardS  float64        `json:"steady_reads_per_shard_per_s"`
	SteadyWritesPerShardS float64        `json:"steady_writes_per_shard_per_s"`
	SoloStop              float64        `json:"solo_sigterm_exit_s"`
	// Two workers started together.
	PairAllOwned float64        `json:"pair_all_owned_from_process_start_s"`
	PairSplit    map[string]int `json:"pair_split"`
	// After kill -9 of the one holding more.
	VictimShards          int     `json:"victim_shards"`
	FailoverFirstTakeover float64 `json:"failover_first_takeover_s"`
	FailoverAllOwned      float64 `json:"failover_survivor_owns_all_s"`
}

// dgLeaseAcquired returns the times of a process's "lease acquired" logs, by
// shard (the first of each), optionally only those taken from prev.
func dgLeaseAcquired(t *testing.T, p *process, prev string) map[string]time.Time {
	t.Helper()
	out := map[string]time.Time{}
	for _, m := range p.logsMatching(msgIs("lease acquired")) {
		if prev != "" && m["previous_owner"] != prev {
			continue
		}
		shard := fmt.Sprint(m["shard"])
		if _, ok := out[shard]; !ok {
			out[shard] = logAt(t, m)
		}
	}
	return out
}

func dgEarliest(ts map[string]time.Time) time.Time {
	var first time.Time
	for _, at := range ts {
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	return first
}

func dgSecs(d time.Duration) float64 { return d.Round(time.Millisecond).Seconds() }

// TestDeliveryPickupAndFailover measures, on a 16-shard stream, how long one
// worker takes to own every shard, its steady-state DynamoDB traffic, and how
// long a survivor takes to own everything after its peer is killed with
// SIGKILL. These are measurements, logged and written to the artifact
// directory (pickup.json); only a generous bound is asserted so that the
// test cannot hang. Targets: pickup under 5 s, failover under 15 s, a few
// DynamoDB reads per shard and second. It runs beside the other parallel
// tests, so a whole-package run measures a busy machine; run it alone
// (-run TestDeliveryPickupAndFailover) for figures worth quoting.
func TestDeliveryPickupAndFailover(t *testing.T) {
	parallel(t)
	env := emulator.Require(t)
	started := time.Now()
	const shards = 16
	const bound = giveUp
	stream := emulator.UniqueName(t, "pickup")
	env.CreateStream(t, stream, shards)
	sink := newDGSink(t)
	m := dgPickup{Shards: shards}

	// One worker alone; its DynamoDB calls go through the counter.
	id := "com.acme." + emulator.UniqueName(t, "obs")
	counted, counter := dgShielded(t, env)
	processStart := time.Now()
	solo := dgStartWorker(t, counted, sink.URL, "solo", dgObserverConfig(id, stream, dgTuning{}))
	observerStart := logAt(t, solo.p.waitLogs(t, 1, giveUp, msgIs("observer started"))[0])
	m.SoloStartup = dgSecs(observerStart.Sub(logAt(t, solo.p.waitLogs(t, 1, giveUp, msgIs("sauna starting"))[0])))
	var rows map[string]dgLease
	waitFor(t, bound, func() bool {
		rows = dgMustLeases(t, env, id)
		return len(rows) == shards && len(dgHeldBy(rows, solo.id)) == shards
	}, func() string { return fmt.Sprintf("one worker to own all %d shards: %v", shards, rows) })
	allOwned := time.Now()
	m.SoloFromProcessStart = dgSecs(allOwned.Sub(processStart))
	m.SoloFromObserverStart = dgSecs(allOwned.Sub(observerStart))
	if acq := dgLeaseAcquired(t, solo.p, ""); len(acq) > 0 {
		m.SoloFirstLease = dgSecs(dgEarliest(acq).Sub(observerStart))
	}
	t.Logf("pickup: one worker owned all %d shards %.3fs after its process started (%.3fs after \"observer started\", which came %.3fs after \"sauna starting\"; first lease at %.3fs)",
		shards, m.SoloFromProcessStart, m.SoloFromObserverStart, m.SoloStartup, m.SoloFirstLease)

	// A fixed window is the measurement itself here, not a wait for a
	// condition.
	const window = 5 * time.Second
	before := counter.snapshot(t)
	time.Sleep(window)
	after := counter.snapshot(t)
	m.SteadyWindow = window.Seconds()
	m.SteadyOps = map[string]int{}
	reads, writes := 0, 0
	for op, n := range after {
		d := n - before[op]
		if d == 0 {
			continue
		}
		m.SteadyOps[op] = d
		switch op {
		case "GetItem", "Scan", "Query", "BatchGetItem", "DescribeTable":
			reads += d
		case "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem":
			writes += d
		}
	}
	perShardS := func(n int) float64 { return float64(n) / shards / window.Seconds() }
	m.SteadyReadsPerShardS, m.SteadyWritesPerShardS = perShardS(reads), perShardS(writes)
	t.Logf("steady state over %s: DynamoDB %v = %.2f reads and %.2f writes per shard per second",
		window, m.SteadyOps, m.SteadyReadsPerShardS, m.SteadyWritesPerShardS)
	took, err := solo.p.stop(t)
	m.SoloStop = dgSecs(took)
	t.Logf("the solo worker stopped %s after SIGTERM (%v)", took.Round(time.Millisecond), err)

	// Two workers started together on a fresh lease table share the shards.
	id = "com.acme." + emulator.UniqueName(t, "obs")
	cfg := dgObserverConfig(id, stream, dgTuning{})
	shielded, _ := dgShielded(t, env)
	processStart = time.Now()
	pair := []*dgWorker{
		{label: "a", p: dgStartProcess(t, shielded, sink.URL, "a", cfg)},
		{label: "b", p: dgStartProcess(t, shielded, sink.URL, "b", cfg)},
	}
	for _, w := range pair {
		w.id = dgWorkerID(t, w.p)
	}
	waitFor(t, bound, func() bool {
		rows = dgMustLeases(t, env, id)
		return len(rows) == shards && len(dgHeldBy(rows, pair[0].id))+len(dgHeldBy(rows, pair[1].id)) == shards
	}, func() string { return fmt.Sprintf("two workers to own all %d shards: %v", shards, rows) })
	m.PairAllOwned = dgSecs(time.Since(processStart))
	m.PairSplit = map[string]int{"a": len(dgHeldBy(rows, pair[0].id)), "b": len(dgHeldBy(rows, pair[1].id))}
	t.Logf("two workers owned all %d shards %.3fs after their processes started, split %v", shards, m.PairAllOwned, m.PairSplit)

	victim, survivor := pair[0], pair[1]
	if m.PairSplit["b"] > m.PairSplit["a"] {
		victim, survivor = pair[1], pair[0]
	}
	m.VictimShards = len(dgHeldBy(rows, victim.id))
	killedAt := time.Now()
	dgKill9(t, victim.p)
	waitFor(t, bound, func() bool {
		rows = dgMustLeases(t, env, id)
		return len(dgHeldBy(rows, survivor.id)) == shards
	}, func() string { return fmt.Sprintf("the survivor to own all %d shards: %v", shards, rows) })
	m.FailoverAllOwned = dgSecs(time.Since(killedAt))
	if acq := dgLeaseAcquired(t, survivor.p, victim.id); len(acq) > 0 {
		m.FailoverFirstTakeover = dgSecs(dgEarliest(acq).Sub(killedAt))
	}
	t.Logf("failover: after kill -9 of worker %s (%d shards), worker %s owned all %d shards in %.3fs (first takeover at %.3fs; lease duration 3s)",
		victim.label, m.VictimShards, survivor.label, shards, m.FailoverAllOwned, m.FailoverFirstTakeover)
	took, err = survivor.p.stop(t)
	t.Logf("the survivor stopped %s after SIGTERM (%v)", took.Round(time.Millisecond), err)

	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.ArtifactDir(), "pickup.json")
	if err := os.WriteFile(file, append(out, '\n'), 0o644); err != nil {
		t.Errorf("writing %s: %v", file, err)
	}
	t.Logf("measurements (%s):\n%s", file, out)
	t.Logf("took %s", time.Since(started).Round(time.Millisecond))
}
