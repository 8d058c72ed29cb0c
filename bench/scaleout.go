package main

import (
	"context"
	"fmt"
	"log"
	"slices"
	"sort"
	"sync"
	"time"
)

// ---- 10. rebalance and 11. rolling: several processes of one consumer ----

// Both scenarios run sauna with idempotency off, so that a duplicate is a
// command the lease protocol let run twice, and the KCL with lease
// stealing on (its only way to rebalance), as the baseline.

const scaleShards = 4

// scaleKCLShardSync is the KCL's shard-sync interval in these two scenarios:
// sauna's schema default (shardSyncIntervalMillis 2000), which sauna runs
// with here. The KCL's event loop takes at most one lease and places at
// most one steal claim per pass, so at its 60 s default (jittered 30-90 s)
// A alone needs about four minutes for four shards and a join takes several
// more: the scenario would time the library's idle loop, not its lease
// protocol. Its other lease timings already equal sauna's defaults (lease
// duration FailoverTimeMillis 10000, renewal LeaseRefreshWaitTime 2500) and
// stay as they are.
const scaleKCLShardSync = 2 * time.Second

// scaleKCLNote is what the method text says about the KCL's settings.
var scaleKCLNote = fmt.Sprintf("KCL: EnableLeaseStealing on and ShardSyncIntervalMillis %d instead of its default 60000, "+
	"so that its event loop (one lease taken and at most one steal claimed per pass) runs as often as sauna's shard sync "+
	"(schema default %d ms); every other KCL setting at its default, lease duration (FailoverTimeMillis 10000) and "+
	"renewal (LeaseRefreshWaitTime 2500) equal to sauna's defaults.",
	scaleKCLShardSync.Milliseconds(), scaleKCLShardSync.Milliseconds())

func scenarioRebalance(ctx context.Context, e *env) (*section, error) {
	l := e.limits()
	s := &section{name: "rebalance", title: "10. Rebalance: a second process joins",
		method: fmt.Sprintf("%d shards, a producer putting one command per shard every %s. Process A starts alone; once "+
			"every shard delivers from it (limit %s), process B of the same consumer starts, and the time until each "+
			"process delivers on its half of the shards (in the last second) is measured (limit %s). Intake stall: "+
			"the longest gap between two deliveries of one shard from B's start on. sauna: idempotency off, "+
			"balancing at its default (on). %s",
			scaleShards, l.failoverPeriod, secs(l.failoverWarmup), secs(l.failoverLimit), scaleKCLNote)}
	return scaleScenario(ctx, e, s, l, false)
}

func scenarioRolling(ctx context.Context, e *env) (*section, error) {
	l := e.limits()
	s := &section{name: "rolling", title: "11. Rolling restart of two processes",
		method: fmt.Sprintf("%d shards, a producer putting one command per shard every %s. Processes A and B share "+
			"the shards; then A gets SIGTERM and a new A' starts, once the shards are shared again B gets SIGTERM and "+
			"B' starts (each wait limited to %s). Intake stall: the longest gap between two deliveries of one shard "+
			"from the first SIGTERM on. sauna: idempotency off. %s",
			scaleShards, l.failoverPeriod, secs(l.failoverLimit), scaleKCLNote)}
	return scaleScenario(ctx, e, s, l, true)
}

// scaleKCLLabel names the KCL's column in these two scenarios: it does not
// run at its defaults there.
var scaleKCLLabel = fmt.Sprintf("kcl (lease stealing, shard sync %d ms)", scaleKCLShardSync.Milliseconds())

// scaleCols are the column names of e.kinds in these two scenarios.
func scaleCols(kinds []string) []string {
	cols := slices.Clone(kinds)
	if i := slices.Index(cols, kindKCL); i >= 0 {
		cols[i] = scaleKCLLabel
	}
	return cols
}

func scaleScenario(ctx context.Context, e *env, s *section, l limits, rolling bool) (*section, error) {
	t := &table{cols: scaleCols(e.kinds)}
	s.tables = []*table{t}
	get, err := perLeaseKind(ctx, e, s, s.name, []string{"balance", "stall", "dups", "unseen"}, func(kind string) (map[string]cell, error) {
		return scaleRun(ctx, e, kind, l, rolling)
	})
	if err != nil {
		return nil, err
	}
	what := "join to balanced (s)"
	if rolling {
		what = "whole rolling restart, back to balanced (s)"
	}
	rows := []struct {
		r     *row
		limit float64
		unit  string
	}{
		{&row{metric: what, cells: get("balance"), target: "<= 30 s"}, 30, "s"},
		{&row{metric: "longest intake stall of a shard (s)", cells: get("stall"), target: "<= 1 s"}, 1, "s"},
		{&row{metric: "duplicates", cells: get("dups"), noRatio: true, target: "0"}, 0, "duplicates"},
		{&row{metric: "commands put but never reported", cells: get("unseen"), noRatio: true, target: "0"}, 0, "commands"},
	}
	sauna := slices.Index(e.kinds, kindSauna)
	for _, x := range rows {
		if sauna >= 0 {
			x.r.verdict = atMost(x.r.cells[sauna], x.limit, x.unit)
		}
		t.add(x.r)
	}
	buildNotes(e, s)
	return s, nil
}

// producer puts one command per shard every period until stopped.
type producer struct {
	stop     context.CancelFunc
	wg       sync.WaitGroup
	produced int64
	err      error
}

func startProducer(ctx context.Context, e *env, st *stream, prefix string, period time.Duration) *producer {
	perShard := st.keysPerShard(prefix, 8)
	ids := st.shardIDs()
	pctx, stop := context.WithCancel(ctx)
	p := &producer{stop: stop}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(period)
		defer tick.Stop()
		for i := int64(0); ; i++ {
			batch := make([]cmdRef, len(ids))
			for j, id := range ids {
				keys := perShard[id]
				batch[j] = cmdRef{key: keys[int(i)%len(keys)], n: i}
			}
			if err := e.putBatch(pctx, st, batch); err != nil {
				if pctx.Err() == nil {
					p.err = err
				}
				return
			}
			p.produced += int64(len(batch))
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// halt stops the producer and returns how many commands it put.
func (p *producer) halt() (int64, error) {
	p.stop()
	p.wg.Wait()
	return p.produced, p.err
}

// recentOwners maps each shard to the consumer of its latest delivery
// within the last second.
func recentOwners(r *recorder) map[string]string {
	cut := time.Now().Add(-time.Second).UnixNano()
	m := map[string]string{}
	for _, d := range r.snapshot() {
		if d.DoneNanos >= cut {
			m[d.shard] = d.Consumer
		}
	}
	return m
}

// shared reports whether every shard delivers and each of procs delivers on
// at least its floor share.
func shared(r *recorder, shards int, procs ...*proc) bool {
	own := recentOwners(r)
	if len(own) != shards {
		return false
	}
	count := map[string]int{}
	for _, c := range own {
		count[c]++
	}
	for _, p := range procs {
		if count[p.id] < shards/len(procs) {
			return false
		}
	}
	return true
}

// longestStall is the longest gap between consecutive deliveries of one
// shard after since.
func longestStall(ds []delivery, since time.Time) time.Duration {
	last := map[string]int64{}
	var worst int64
	for _, d := range ds {
		if d.DoneNanos < since.UnixNano() {
			last[d.shard] = d.DoneNanos
			continue
		}
		if prev, ok := last[d.shard]; ok {
			worst = max(worst, d.DoneNanos-prev)
		}
		last[d.shard] = max(last[d.shard], d.DoneNanos)
	}
	return time.Duration(worst)
}

func scaleRun(ctx context.Context, e *env, kind string, l limits, rolling bool) (map[string]cell, error) {
	st, err := e.createStream(ctx, scaleShards)
	if err != nil {
		return nil, err
	}
	prod := startProducer(ctx, e, st, "r", l.failoverPeriod)
	defer prod.halt()
	r := newRecorder(st)
	app := e.name("app")
	off := false
	n := 0
	start := func() (*proc, error) {
		n++
		return e.start(ctx, spec{kind: kind, id: e.name(fmt.Sprintf("%s-%d", kind, n)), app: app, streams: []string{st.name},
			idempotency: &off, steal: true, kclShardSync: scaleKCLShardSync}, r)
	}
	a, err := start()
	if err != nil {
		return nil, err
	}
	defer func() { a.stop() }()
	ok, err := waitFor(ctx, time.Now().Add(l.failoverWarmup), func() bool { return shared(r, scaleShards, a) }, a)
	if err != nil || !ok {
		return map[string]cell{"balance": text(fmt.Sprintf("not measured: A alone did not consume every shard within %s", secs(l.failoverWarmup)))}, err
	}
	// The KCL's second worker must not race the first to create the table
	// (see failoverStagger); A has been consuming, so the table exists.
	b, err := start()
	if err != nil {
		return nil, err
	}
	defer func() { b.stop() }()
	from := time.Now()
	balanced := func(procs ...*proc) (bool, error) {
		return waitFor(ctx, time.Now().Add(l.failoverLimit), func() bool { return shared(r, scaleShards, procs...) }, procs...)
	}
	if ok, err = balanced(a, b); err != nil {
		return nil, err
	}
	m := map[string]cell{}
	took := time.Since(from)
	if ok && rolling {
		from = time.Now()
		for _, old := range []**proc{&a, &b} {
			(*old).stop()
			next, err := start()
			if err != nil {
				return nil, err
			}
			*old = next
			if ok, err = balanced(a, b); err != nil || !ok {
				break
			}
		}
		took = time.Since(from)
	}
	if !ok {
		m["balance"] = text(fmt.Sprintf("> %s", secs(l.failoverLimit)))
	} else {
		m["balance"] = num(took.Seconds(), "%.1f")
	}
	m["stall"] = num(longestStall(r.snapshot(), from).Seconds(), "%.2f")
	produced, err := prod.halt()
	if err != nil {
		return nil, fmt.Errorf("producer: %w", err)
	}
	_, _ = waitFor(ctx, time.Now().Add(10*time.Second), func() bool {
		first, _ := dedupe(r.snapshot())
		return int64(len(first)) >= produced
	}, a, b)
	first, dups := dedupe(r.snapshot())
	m["dups"] = num(float64(dups), "%.0f")
	m["unseen"] = num(float64(produced-int64(len(first))), "%.0f")
	log.Printf("%s: %s: %d commands, owners at the end %v", map[bool]string{false: "rebalance", true: "rolling"}[rolling], kind, produced, sortedOwners(r))
	return m, nil
}

func sortedOwners(r *recorder) []string {
	var out []string
	for sh, c := range recentOwners(r) {
		out = append(out, sh+"="+c)
	}
	sort.Strings(out)
	return slices.Clip(out)
}
