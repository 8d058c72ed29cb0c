package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
)

// scaleConfig is a KinesisObserverConfig 1-0-0 observer with fast polling, balancing on
// (the default) and idempotency off: only the lease protocol keeps a
// command from running twice. Its 15 s lease is long enough that a worker
// stalled by a busy machine keeps it (with a 3 s lease a renewal a couple
// of seconds late let a peer take the shard and run again what the stalled
// worker had run but not checkpointed, which these tests count as running
// twice), and short enough for a killed worker's leases to lapse within
// the test.
func scaleConfig(id, stream string) string {
	return fmt.Sprintf(`{"schema":"iglu:io.sauna.observers/KinesisObserverConfig/avro/1-0-0",
 "data":{"enabled":true,"id":%q,"parameters":{
   "aws":{"accessKeyId":"","secretAccessKey":""},
   "kinesis":{"region":"us-east-1","streamName":%q,"maxRecords":100,
              "initialPosition":"TRIM_HORIZON","initialPositionModifiers":null,
              "shardSyncIntervalMillis":2000,"idleTimeBetweenReadsMillis":250,
              "failoverTimeMillis":15000,"leaseRefreshMillis":1000,"parentShardPollMillis":500},
   "delivery":{"maxInFlightPerShard":16,"retryBudgetMillis":300000,"deadLetterStream":null,
               "idempotency":{"enabled":false,"tableName":null,"retentionDays":1,"claimTimeoutMillis":5000}},
   "cloudwatch":{"enabled":false,"namespace":null,"flushIntervalMillis":10000}}}}`, id, stream)
}

// scaleProducer writes a few commands every 100 ms on 16 keys until
// stopped, and remembers where each landed.
type scaleProducer struct {
	mu   sync.Mutex
	ids  []string
	keys []string
	land []dgLanding
	err  error
	stop context.CancelFunc
	done chan struct{}
}

func startScaleProducer(t *testing.T, env emulator.Env, stream string) *scaleProducer {
	kin := env.Kinesis(t)
	ctx, cancel := context.WithCancel(context.Background())
	p := &scaleProducer{stop: cancel, done: make(chan struct{})}
	pool := dgIDs(100000)
	go func() {
		defer close(p.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		n := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			var keys []string
			var data [][]byte
			var ids []string
			for range 4 {
				ids = append(ids, pool[n])
				keys = append(keys, fmt.Sprintf("key-%d", n%16))
				data = append(data, dgCommand(pool[n], n))
				n++
			}
			land, err := dgPut(context.Background(), kin, stream, keys, data)
			p.mu.Lock()
			if err != nil {
				p.err = err
				p.mu.Unlock()
				return
			}
			p.ids, p.keys, p.land = append(p.ids, ids...), append(p.keys, keys...), append(p.land, land...)
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-p.done })
	return p
}

func (p *scaleProducer) finish(t *testing.T) (ids, keys []string, land []dgLanding) {
	t.Helper()
	p.stop()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		t.Fatalf("producer: %v", p.err)
	}
	return p.ids, p.keys, p.land
}

// waitShares waits until every shard's lease is held by one of workers and
// the counts differ by at most one.
func waitShares(t *testing.T, env emulator.Env, table string, shards int, workers []*dgWorker, timeout time.Duration) {
	t.Helper()
	var last string
	waitFor(t, timeout, func() bool {
		rows := dgMustLeases(t, env, table)
		counts := map[string]int{}
		total := 0
		for _, w := range workers {
			counts[w.label] = len(dgHeldBy(rows, w.id))
			total += counts[w.label]
		}
		lo, hi := shards/len(workers), (shards+len(workers)-1)/len(workers)
		ok := total == shards
		for _, n := range counts {
			ok = ok && n >= lo && n <= hi
		}
		last = fmt.Sprint(counts)
		return ok
	}, func() string {
		return fmt.Sprintf("%d shards shared evenly by %d workers; last seen %s", shards, len(workers), last)
	})
}

// TestScaleOut runs three `sauna run` processes on an 8-shard stream with
// balancing on and idempotency off, under a steady producer: A alone takes
// every shard; B and C join and all three converge to 2-3 shards each; a
// rolling restart of all three (SIGTERM, start again) hands every shard
// over at its final checkpoint; a kill -9 leaves the victim's shards to
// the others once its leases expire. Nothing is lost, nothing runs twice,
// and each key keeps its order.
func TestScaleOut(t *testing.T) {
	env := emulator.Require(t)
	const shards = 8
	stream := emulator.UniqueName(t, "scale")
	id := "com.acme." + emulator.UniqueName(t, "obs-scale")
	env.CreateStream(t, stream, shards)
	sink := newDGSink(t)
	cfg := scaleConfig(id, stream)
	prod := startScaleProducer(t, env, stream)

	a := dgStartWorker(t, env, sink.URL, "a", cfg)
	waitShares(t, env, id, shards, []*dgWorker{a}, 60*time.Second)

	b := dgStartWorker(t, env, sink.URL, "b", cfg)
	c := dgStartWorker(t, env, sink.URL, "c", cfg)
	joined := time.Now()
	live := []*dgWorker{a, b, c}
	waitShares(t, env, id, shards, live, 60*time.Second)
	t.Logf("balanced %s after B and C joined", time.Since(joined).Round(time.Millisecond))

	// Rolling restart: each worker in turn stops (its shards go to the
	// others at once) and comes back as a new worker.
	for i := range live {
		old := live[i]
		if _, err := old.p.stop(t); err != nil {
			t.Fatalf("worker %s exited with %v", old.label, err)
		}
		if n := len(old.p.logsMatching(msgIs("lease released to a peer"))); n == 0 {
			t.Errorf("worker %s released no lease to a peer on SIGTERM", old.label)
		}
		rest := append(append([]*dgWorker{}, live[:i]...), live[i+1:]...)
		waitShares(t, env, id, shards, rest, 30*time.Second)
		live[i] = dgStartWorker(t, env, sink.URL, old.label+"2", cfg)
		waitShares(t, env, id, shards, live, 60*time.Second)
	}
	handoffs := 0
	for _, w := range live {
		handoffs += len(w.p.logsMatching(msgIs("shard handed over")))
	}
	if handoffs == 0 {
		t.Error("no graceful handoff happened while rebalancing")
	}

	checkScaleVisibility(t, env, id, stream, cfg, live, shards)

	// kill -9: the victim's leases and census entry expire (15 s) and the
	// others take its shards.
	victim := live[0]
	killed := time.Now()
	dgKill9(t, victim.p)
	waitShares(t, env, id, shards, live[1:], 90*time.Second)

	ids, keys, land := prod.finish(t)
	sink.waitAll(t, ids, 60*time.Second)
	hits := sink.snapshot()
	dgCheckKeyOrder(t, ids, keys, land, hits)
	// A kill -9 may leave commands executed but not checkpointed: those
	// run again, by design, without idempotency. Everything before it must
	// have run exactly once.
	if dups := ranTwice(ids, hits, killed); len(dups) > 0 {
		t.Errorf("%d commands ran twice before the kill -9 (idempotency off): %s", len(dups), strings.Join(dups[:min(len(dups), 10)], "; "))
	}
	t.Logf("%d commands, %d graceful handoffs while rebalancing", len(ids), handoffs)
}

// ranTwice describes, sorted, the commands whose second arrival came before
// cut.
func ranTwice(ids []string, hits map[string][]dgHit, cut time.Time) []string {
	var dups []string
	for _, id := range ids {
		if h := hits[id]; len(h) > 1 && h[1].at.Before(cut) {
			dups = append(dups, fmt.Sprintf("%s×%d via %s", id, len(h), paths(h)))
		}
	}
	sort.Strings(dups)
	return dups
}

func paths(h []dgHit) string {
	var out []string
	for _, x := range h {
		out = append(out, x.path)
	}
	return strings.Join(out, ",")
}

// checkScaleVisibility checks what operators see of a balanced cluster:
// /status lists every shard's lease and the worker count, /metrics has the
// worker gauge and the graceful handoffs, and `sauna leases` prints the
// table.
func checkScaleVisibility(t *testing.T, env emulator.Env, id, stream, cfg string, live []*dgWorker, shards int) {
	t.Helper()
	type lease struct {
		Shard, Owner, Checkpoint, HandoffTo string
	}
	var last string
	base := live[0].p.adminURL(t)
	waitFor(t, 30*time.Second, func() bool {
		code, body := httpDo(t, "GET", base+"/status")
		if code != http.StatusOK {
			t.Fatalf("/status: %d %s", code, body)
		}
		var st struct {
			Observers []struct {
				Workers int     `json:"workers"`
				Leases  []lease `json:"leases"`
			} `json:"observers"`
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil || len(st.Observers) != 1 {
			t.Fatalf("/status: %v %s", err, body)
		}
		last = body
		o := st.Observers[0]
		owned := 0
		for _, l := range o.Leases {
			if l.Owner != "" && l.Checkpoint != "" {
				owned++
			}
		}
		return o.Workers == len(live) && owned == shards
	}, func() string {
		return fmt.Sprintf("/status to show %d workers and %d owned leases; last %s", len(live), shards, last)
	})

	graceful := 0.0
	for _, w := range live {
		_, body := httpDo(t, "GET", w.p.adminURL(t)+"/metrics")
		if v, ok := promValue(body, "sauna_kinesis_workers", map[string]string{"observer": id, "stream": stream}); !ok || v != float64(len(live)) {
			t.Errorf("worker %s: sauna_kinesis_workers = %v (%v), want %d", w.label, v, ok, len(live))
		}
		v, _ := promValue(body, "sauna_kinesis_lease_handoffs_total", map[string]string{"observer": id, "stream": stream, "kind": "graceful"})
		graceful += v
	}
	if graceful == 0 {
		t.Error("sauna_kinesis_lease_handoffs_total{kind=\"graceful\"} is 0 on every live worker")
	}

	file := writeFile(t, t.TempDir(), "observer.json", cfg)
	code, out, errOut := runCLI(t, env, "", "leases", "--observer-config", file)
	if code != 0 {
		t.Fatalf("sauna leases: exit %d: %s", code, errOut)
	}
	if n := strings.Count(out, "shardId-"); n != shards || !strings.Contains(out, fmt.Sprintf("%d live worker", len(live))) {
		t.Errorf("sauna leases printed %d shards, want %d, and %d live workers:\n%s", n, shards, len(live), out)
	}
	for _, w := range live {
		if !strings.Contains(out, w.id) {
			t.Errorf("sauna leases does not name worker %s:\n%s", w.id, out)
		}
	}
}
