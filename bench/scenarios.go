package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sauna-io/sauna/bench/sink"
)

// limits holds the counts and time limits of a full run, or of a -quick one.
type limits struct {
	startupShards  []int
	startupLimit   time.Duration
	warmupLimit    time.Duration // until every shard is consuming
	latencyCount   int
	drainCount     int
	drainLimit     time.Duration
	steadyCount    int           // drain-steady: the backlog
	steadyLimit    time.Duration // drain-steady: per run, from process start
	slowCount      int
	slowLimit      time.Duration
	slowBaseline   time.Duration
	firstLimit     time.Duration // until a baseline's first delivery
	failoverLimit  time.Duration
	failoverWarmup time.Duration
	pipelineCount  int
	rssIdle        time.Duration
	latencyTail    time.Duration
	drainKeys      int
	slowKeys       int
	latencyPeriod  time.Duration
	failoverPeriod time.Duration
	replayCount    int
	outcomeItems   int
	searchRepeats  int
	costSettle     time.Duration // ddb-cost: from balanced to the start of the count
	costWindow     time.Duration // ddb-cost: how long requests are counted
	ceilingPeeks   int           // drain, drain-steady: Peeks timed for dynalite's ceiling
}

func (e *env) limits() limits {
	l := limits{
		startupShards: []int{4, 16}, startupLimit: 90 * time.Second,
		warmupLimit:  150 * time.Second,
		latencyCount: 400, latencyPeriod: 50 * time.Millisecond, latencyTail: 15 * time.Second,
		drainCount: 40000, drainKeys: 2000, drainLimit: 120 * time.Second,
		steadyCount: 400000, steadyLimit: 600 * time.Second,
		slowCount: 8000, slowKeys: 200, slowLimit: 120 * time.Second, slowBaseline: 20 * time.Second,
		firstLimit:    90 * time.Second,
		failoverLimit: 90 * time.Second, failoverWarmup: 180 * time.Second, failoverPeriod: 100 * time.Millisecond,
		pipelineCount: 5,
		rssIdle:       10 * time.Second,
		replayCount:   20000, outcomeItems: 100000, searchRepeats: 5,
		costSettle: 20 * time.Second, costWindow: 30 * time.Second,
		ceilingPeeks: 300,
	}
	if e.quick {
		l.startupShards, l.startupLimit = []int{4}, 30*time.Second
		l.warmupLimit = 30 * time.Second
		l.latencyCount, l.latencyTail = 60, 5*time.Second
		l.drainCount, l.drainLimit = 4000, 40*time.Second
		l.steadyCount, l.steadyLimit = 10000, 60*time.Second
		l.slowCount, l.slowLimit, l.slowBaseline = 2000, 40*time.Second, 5*time.Second
		l.firstLimit = 30 * time.Second
		l.failoverLimit, l.failoverWarmup = 30*time.Second, 30*time.Second
		l.pipelineCount = 1
		l.rssIdle = 2 * time.Second
		l.replayCount, l.outcomeItems, l.searchRepeats = 2000, 5000, 3
		l.costSettle, l.costWindow = 5*time.Second, 8*time.Second
		l.ceilingPeeks = 100
	}
	return l
}

func secs(d time.Duration) string { return fmt.Sprintf("%.0f s", d.Seconds()) }

// perKind runs one measurement for every consumer kind, each on fresh
// emulators, and fills a row. A consumer that is not built, or whose run
// fails, gets a text cell; only a cancelled ctx aborts the scenario.
func perKind(ctx context.Context, e *env, s *section, label string, fn func(kind string) (cell, error)) ([]cell, error) {
	cells := make([]cell, len(e.kinds))
	for i, k := range e.kinds {
		if _, ok := e.bins[k]; !ok {
			cells[i] = text("not run: build failed")
			continue
		}
		log.Printf("%s: %s", label, k)
		err := e.fresh(ctx)
		var c cell
		if err == nil {
			c, err = fn(k)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			log.Printf("%s: %s: %v", label, k, err)
			s.notes = append(s.notes, fmt.Sprintf("%s, %s: error: %v", label, k, err))
			c = text("error (see notes)")
		}
		log.Printf("%s: %s: %s", label, k, c.text)
		cells[i] = c
	}
	return cells, nil
}

func buildNotes(e *env, s *section) {
	for _, k := range e.kinds {
		if err, ok := e.buildErr[k]; ok {
			s.notes = append(s.notes, fmt.Sprintf("%s was not built: %v", k, err))
		}
	}
}

// firstPerShard is each shard's earliest delivery time (DoneNanos).
func firstPerShard(ds []delivery, keep func(delivery) bool) map[string]int64 {
	m := map[string]int64{}
	for _, d := range ds {
		if keep != nil && !keep(d) {
			continue
		}
		if t, ok := m[d.shard]; !ok || d.DoneNanos < t {
			m[d.shard] = d.DoneNanos
		}
	}
	return m
}

// dedupe keeps each (key, n) once, at its first delivery; ds is sorted.
func dedupe(ds []delivery) (first []delivery, dups int) {
	type id struct {
		key string
		n   int64
	}
	seen := map[id]bool{}
	for _, d := range ds {
		k := id{d.Key, d.N}
		if seen[k] {
			dups++
			continue
		}
		seen[k] = true
		first = append(first, d)
	}
	return first, dups
}

// ---- 1. startup ----

func scenarioStartup(ctx context.Context, e *env) (*section, error) {
	l := e.limits()
	s := &section{name: "startup", title: "1. Startup: process start to every shard consuming",
		method: fmt.Sprintf("A fresh stream with one record preloaded per shard; the consumer process is started and timed "+
			"from exec until every shard has had a delivery (the slowest shard's first delivery). Limit %s per consumer.", secs(l.startupLimit))}
	t := &table{cols: e.kinds}
	s.tables = []*table{t}
	for _, n := range l.startupShards {
		label := fmt.Sprintf("startup %d shards", n)
		cells, err := perKind(ctx, e, s, label, func(kind string) (cell, error) { return startupRun(ctx, e, kind, n, l.startupLimit) })
		if err != nil {
			return nil, err
		}
		r := t.add(&row{metric: fmt.Sprintf("%d shards: exec to all consuming (s)", n), cells: cells})
		limit := 2.0
		if n > 4 {
			limit = 5
		}
		r.target = fmt.Sprintf("<= %.0f s", limit)
		if i := slices.Index(e.kinds, kindSauna); i >= 0 {
			r.verdict = atMost(cells[i], limit, "s")
		}
	}
	buildNotes(e, s)
	return s, nil
}

func startupRun(ctx context.Context, e *env, kind string, shards int, limit time.Duration) (cell, error) {
	st, err := e.createStream(ctx, shards)
	if err != nil {
		return cell{}, err
	}
	var cmds []cmdRef
	for _, keys := range st.keysPerShard("s", 1) {
		cmds = append(cmds, cmdRef{key: keys[0]})
	}
	if err := e.putBatch(ctx, st, cmds); err != nil {
		return cell{}, err
	}
	r := newRecorder(st)
	p, err := e.start(ctx, spec{kind: kind, id: e.name(kind), app: e.name("app"), streams: []string{st.name}}, r)
	if err != nil {
		return cell{}, err
	}
	defer p.stop()
	ok, err := waitFor(ctx, p.start.Add(limit), func() bool { return len(firstPerShard(r.snapshot(), nil)) == shards }, p)
	if err != nil {
		return cell{}, err
	}
	first := firstPerShard(r.snapshot(), nil)
	if !ok {
		return text(fmt.Sprintf("> %s (%d/%d shards)", secs(limit), len(first), shards)), nil
	}
	var last int64
	for _, t := range first {
		last = max(last, t)
	}
	return num(time.Duration(last-p.start.UnixNano()).Seconds(), "%.2f"), nil
}

// warmUp puts one record per shard every second (on keys of their own)
// until every shard has delivered one, and returns how many have.
func warmUp(ctx context.Context, e *env, st *stream, r *recorder, limit time.Duration, procs ...*proc) (int, error) {
	var cmds []cmdRef
	warmKeys := map[string]bool{}
	for _, keys := range st.keysPerShard("warm", 1) {
		cmds = append(cmds, cmdRef{key: keys[0], n: -1})
		warmKeys[keys[0]] = true
	}
	isWarm := func(d delivery) bool { return warmKeys[d.Key] }
	deadline := time.Now().Add(limit)
	for {
		if err := e.putBatch(ctx, st, cmds); err != nil {
			return 0, err
		}
		next := time.Now().Add(time.Second)
		if next.After(deadline) {
			next = deadline
		}
		ok, err := waitFor(ctx, next, func() bool {
			return len(firstPerShard(r.snapshot(), isWarm)) == len(st.shards)
		}, procs...)
		if err != nil {
			return 0, err
		}
		if ok || time.Now().After(deadline) {
			return len(firstPerShard(r.snapshot(), isWarm)), nil
		}
	}
}

// ---- 2. latency ----

func scenarioLatency(ctx context.Context, e *env) (*section, error) {
	l := e.limits()
	s := &section{name: "latency", title: "2. Latency: put to delivered, no-op responder",
		method: fmt.Sprintf("4 shards. The consumer starts and warm-up records are put every second until every shard has "+
			"delivered one (limit %s); then one command every %s for %d commands (PutRecord, putNanos stamped right before "+
			"the call, keys rotating over the shards). Latency is delivery time minus putNanos, over all %d; sauna's probe "+
			"has delay 0 and idempotency is at its default (on).", secs(l.warmupLimit), l.latencyPeriod, l.latencyCount, l.latencyCount)}
	t := &table{cols: e.kinds}
	s.tables = []*table{t}
	type res struct {
		p50, p90, p99, max, missing, consuming cell
	}
	results := map[string]res{}
	_, err := perKind(ctx, e, s, "latency", func(kind string) (cell, error) {
		lat, missing, consuming, err := latencyRun(ctx, e, kind, l)
		if err != nil {
			return cell{}, err
		}
		rr := res{missing: num(float64(missing), "%.0f"), consuming: text(fmt.Sprintf("%d/4", consuming))}
		if len(lat) > 0 {
			rr.p50, rr.p90, rr.p99, rr.max = num(pct(lat, 50), "%.0f"), num(pct(lat, 90), "%.0f"), num(pct(lat, 99), "%.0f"), num(pct(lat, 100), "%.0f")
		} else {
			rr.p50, rr.p90, rr.p99, rr.max = text("none arrived"), text("-"), text("-"), text("-")
		}
		results[kind] = rr
		return rr.p99, nil
	})
	if err != nil {
		return nil, err
	}
	get := func(f func(res) cell) []cell {
		out := make([]cell, len(e.kinds))
		for i, k := range e.kinds {
			if rr, ok := results[k]; ok {
				out[i] = f(rr)
			} else {
				out[i] = text("not run")
			}
		}
		return out
	}
	t.add(&row{metric: "shards consuming after warm-up", cells: get(func(r res) cell { return r.consuming }), noRatio: true})
	t.add(&row{metric: "p50 (ms)", cells: get(func(r res) cell { return r.p50 })})
	t.add(&row{metric: "p90 (ms)", cells: get(func(r res) cell { return r.p90 })})
	p99 := t.add(&row{metric: "p99 (ms)", cells: get(func(r res) cell { return r.p99 }), target: "<= 300 ms"})
	if i := slices.Index(e.kinds, kindSauna); i >= 0 {
		p99.verdict = atMost(p99.cells[i], 300, "ms")
	}
	t.add(&row{metric: "max (ms)", cells: get(func(r res) cell { return r.max })})
	t.add(&row{metric: fmt.Sprintf("missing of %d", l.latencyCount), cells: get(func(r res) cell { return r.missing }), noRatio: true})
	s.notes = append(s.notes, "A consumer that is not consuming every shard when the warm-up limit passes is measured anyway: "+
		"its commands on the other shards arrive late (when it takes their leases) or not at all.")
	buildNotes(e, s)
	return s, nil
}

// pct is the p-th percentile (nearest rank) of sorted-or-not values.
func pct(v []float64, p float64) float64 {
	s := slices.Clone(v)
	sort.Float64s(s)
	if p >= 100 {
		return s[len(s)-1]
	}
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func latencyRun(ctx context.Context, e *env, kind string, l limits) (lat []float64, missing, consuming int, err error) {
	st, err := e.createStream(ctx, 4)
	if err != nil {
		return nil, 0, 0, err
	}
	r := newRecorder(st)
	p, err := e.start(ctx, spec{kind: kind, id: e.name(kind), app: e.name("app"), streams: []string{st.name}}, r)
	if err != nil {
		return nil, 0, 0, err
	}
	defer p.stop()
	if consuming, err = warmUp(ctx, e, st, r, l.warmupLimit, p); err != nil {
		return nil, 0, 0, err
	}
	perShard := st.keysPerShard("lat", 1)
	var keys []string
	for _, id := range st.shardIDs() {
		keys = append(keys, perShard[id][0])
	}
	measured := map[string]bool{}
	for _, k := range keys {
		measured[k] = true
	}
	t0 := time.Now()
	for i := 0; i < l.latencyCount; i++ {
		if err := e.putOne(ctx, st, keys[i%len(keys)], int64(i)); err != nil {
			return nil, 0, 0, err
		}
		if err := sleepCtx(ctx, time.Until(t0.Add(time.Duration(i+1)*l.latencyPeriod))); err != nil {
			return nil, 0, 0, err
		}
	}
	got := func() []delivery {
		var out []delivery
		for _, d := range r.snapshot() {
			if measured[d.Key] {
				out = append(out, d)
			}
		}
		first, _ := dedupe(out)
		return first
	}
	if _, err := waitFor(ctx, time.Now().Add(l.latencyTail), func() bool { return len(got()) >= l.latencyCount }, p); err != nil {
		return nil, 0, 0, err
	}
	for _, d := range got() {
		lat = append(lat, float64(d.DoneNanos-d.PutNanos)/1e6)
	}
	return lat, l.latencyCount - len(lat), consuming, nil
}

// ---- 3. drain ----

type runSpec struct {
	label       string
	kind        string
	idempotency *bool
}

func boolPtr(b bool) *bool { return &b }

// runs lists sauna once per idempotency setting (those -sauna-idempotency
// keeps) and each baseline once.
func (e *env) runs(saunaBoth bool) []runSpec {
	var out []runSpec
	for _, k := range e.kinds {
		if k == kindSauna && saunaBoth {
			if e.saunaIdem != "on" {
				out = append(out, runSpec{"sauna (idempotency off)", k, boolPtr(false)})
			}
			if e.saunaIdem != "off" {
				out = append(out, runSpec{"sauna (idempotency on)", k, boolPtr(true)})
			}
			continue
		}
		out = append(out, runSpec{label: k, kind: k})
	}
	return out
}

func runLabels(rs []runSpec) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.label
	}
	return out
}

// perRun runs fn for every run of rs, each on fresh emulators but for
// the streams in keep, which every run reads.
func perRun(ctx context.Context, e *env, s *section, label string, rs []runSpec, fn func(runSpec) (map[string]cell, error), keep ...*stream) ([]map[string]cell, error) {
	out := make([]map[string]cell, len(rs))
	for i, rn := range rs {
		if _, ok := e.bins[rn.kind]; !ok {
			out[i] = nil
			continue
		}
		log.Printf("%s: %s", label, rn.label)
		err := e.fresh(ctx, keep...)
		var m map[string]cell
		if err == nil {
			m, err = fn(rn)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			log.Printf("%s: %s: %v", label, rn.label, err)
			s.notes = append(s.notes, fmt.Sprintf("%s, %s: error: %v", label, rn.label, err))
			m = nil
		}
		out[i] = m
		log.Printf("%s: %s: %v", label, rn.label, cellsText(m))
	}
	return out, nil
}

func cellsText(m map[string]cell) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []string
	for _, k := range keys {
		out = append(out, k+"="+m[k].text)
	}
	return fmt.Sprint(out)
}

// column builds a row's cells from per-run result maps.
func column(e *env, rs []runSpec, res []map[string]cell, key string) []cell {
	out := make([]cell, len(rs))
	for i, m := range res {
		switch {
		case m == nil:
			if _, ok := e.bins[rs[i].kind]; !ok {
				out[i] = text("not run: build failed")
			} else {
				out[i] = text("error (see notes)")
			}
		default:
			c, ok := m[key]
			if !ok {
				c = text("-")
			}
			out[i] = c
		}
	}
	return out
}

func scenarioDrain(ctx context.Context, e *env) (*section, error) {
	l := e.limits()
	s := &section{name: "drain", title: "3. Drain: a preloaded backlog",
		method: fmt.Sprintf("4 shards, %d commands preloaded with PutRecords of 500 on %d keys, then the consumer starts; "+
			"commands/s = commands / (last delivery - process start). Limit %s per run (then the rate is over what arrived). "+
			"sauna runs once with idempotency off and once on. %s", l.drainCount, l.drainKeys, secs(l.drainLimit),
			ceilingMethod(l.drainCount, l.ceilingPeeks))}
	rs := e.runs(true)
	var ceil *ddbCeiling
	res, err := perRun(ctx, e, s, "drain", rs, ceilingRun(ctx, e, s, l.drainCount, l.ceilingPeeks, true, &ceil,
		func(rn runSpec) (map[string]cell, error) { return drainRun(ctx, e, rn, l) }))
	if err != nil {
		return nil, err
	}
	t := &table{cols: runLabels(rs)}
	s.tables = []*table{t}
	rate := t.add(&row{metric: "commands/s (start to last delivery)", cells: column(e, rs, res, "rate")})
	rawShareVerdict(rate, rs)
	ceilingRows(t, s, rate, ceil, "from process start, so startup counts")
	t.add(&row{metric: "first delivery after start (s)", cells: column(e, rs, res, "first")})
	t.add(&row{metric: "last delivery after start (s)", cells: column(e, rs, res, "last")})
	t.add(&row{metric: fmt.Sprintf("arrived of %d", l.drainCount), cells: column(e, rs, res, "arrived"), noRatio: true})
	t.add(&row{metric: "duplicates", cells: column(e, rs, res, "dups"), noRatio: true})
	s.notes = append(s.notes, "The whole drain takes one to two seconds, so startup weighs in it: sauna creates its lease table and "+
		"takes one lease per shard-sync pass (the KCL's one-lease-per-pass loop; alone, it runs the passes back to back), so its "+
		"last shard starts after its first, while raw reads all shards at once. sauna also decodes every command and validates it against its JSON "+
		"Schemas (section 6) on the same two cores that kinesalite needs; raw only parses the JSON. Runs vary by about 20% "+
		"from one to the next on this machine. Section 3b measures the rate of a backlog ten times as large without startup.")
	buildNotes(e, s)
	return s, nil
}

func drainRun(ctx context.Context, e *env, rn runSpec, l limits) (map[string]cell, error) {
	st, err := e.createStream(ctx, 4)
	if err != nil {
		return nil, err
	}
	cmds := make([]cmdRef, l.drainCount)
	for i := range cmds {
		cmds[i] = cmdRef{key: fmt.Sprintf("d%d", i%l.drainKeys), n: int64(i / l.drainKeys)}
	}
	t0 := time.Now()
	if err := e.putBatch(ctx, st, cmds); err != nil {
		return nil, err
	}
	log.Printf("drain: preloaded %d commands in %s", len(cmds), time.Since(t0).Round(time.Millisecond))
	r := newRecorder(st)
	p, err := e.start(ctx, spec{kind: rn.kind, id: e.name(rn.kind), app: e.name("app"), streams: []string{st.name}, idempotency: rn.idempotency}, r)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	// Counting raw lines is cheap; duplicates are told apart afterwards.
	if _, err := waitFor(ctx, p.start.Add(l.drainLimit), func() bool {
		if r.count() < l.drainCount {
			return false
		}
		first, _ := dedupe(r.snapshot())
		return len(first) >= l.drainCount
	}, p); err != nil {
		return nil, err
	}
	first, dups := dedupe(r.snapshot())
	m := map[string]cell{"arrived": num(float64(len(first)), "%.0f"), "dups": num(float64(dups), "%.0f")}
	if len(first) == 0 {
		m["rate"] = text(fmt.Sprintf("none in %s", secs(l.drainLimit)))
		return m, nil
	}
	start := p.start.UnixNano()
	lastT := time.Duration(first[len(first)-1].DoneNanos - start)
	m["first"] = num(time.Duration(first[0].DoneNanos-start).Seconds(), "%.2f")
	m["last"] = num(lastT.Seconds(), "%.2f")
	m["rate"] = num(float64(len(first))/lastT.Seconds(), "%.0f")
	if len(first) < l.drainCount {
		m["rate"] = num(float64(len(first))/lastT.Seconds(), "%.0f (timed out)")
	}
	return m, nil
}

// ---- 4. slow responder ----

func scenarioSlow(ctx context.Context, e *env) (*section, error) {
	l := e.limits()
	s := &section{name: "slow", title: "4. Slow responder: 100 ms per call",
		method: fmt.Sprintf("4 shards, %d keys, every call takes 100 ms. sauna: %d commands preloaded and drained "+
			"(limit %s); commands/s per shard = the shard's commands / (its last - first delivery), reported as the mean "+
			"over shards and the slowest shard. Baselines handle records serially, as a KCL or harlow user would: the same "+
			"preload, measured for %s from their first delivery (waiting up to %s for it). Per-key order: n must increase "+
			"per key in delivery order. sauna runs once with idempotency off and once on (then the commands are looked up in "+
			"the outcome table with one BatchGetItem per chunk of up to 100, and their outcomes written with BatchWriteItem, "+
			"25 to a request; a key's next command starts once the previous one's effect is final, without waiting for its "+
			"outcome write, and the outcomes of a key are written in key order).", l.slowKeys, l.slowCount, secs(l.slowLimit),
			secs(l.slowBaseline), secs(l.firstLimit))}
	rs := e.runs(true)
	res, err := perRun(ctx, e, s, "slow", rs, func(rn runSpec) (map[string]cell, error) { return slowRun(ctx, e, rn, l) })
	if err != nil {
		return nil, err
	}
	t := &table{cols: runLabels(rs)}
	s.tables = []*table{t}
	mean := t.add(&row{metric: "commands/s per shard, mean", cells: column(e, rs, res, "mean"), target: ">= 500"})
	t.add(&row{metric: "commands/s per shard, slowest shard", cells: column(e, rs, res, "min")})
	t.add(&row{metric: "shards measured", cells: column(e, rs, res, "shards"), noRatio: true})
	t.add(&row{metric: "commands delivered", cells: column(e, rs, res, "arrived"), noRatio: true})
	t.add(&row{metric: "per-key order violations", cells: column(e, rs, res, "order"), noRatio: true})
	t.add(&row{metric: "duplicates", cells: column(e, rs, res, "dups"), noRatio: true})
	var verdicts []string
	for i, rn := range rs {
		if rn.kind == kindSauna {
			verdicts = append(verdicts, rn.label+": "+atLeast(mean.cells[i], 500, "commands/s"))
		}
	}
	mean.verdict = joinOr(verdicts, "-")
	s.notes = append(s.notes, slowCeilingNote(res, l),
		fmt.Sprintf("With idempotency on, a command costs its share of a BatchGetItem (up to 100 commands) and of a "+
			"BatchWriteItem (up to 25 outcomes) in dynalite, which writes a few thousand outcome items a second for all "+
			"shards together (section 3 measures it); at the per-key cap the 4 shards ask about %d a second of it, on the "+
			"same two cores.", l.slowKeys*10))
	buildNotes(e, s)
	return s, nil
}

// slowCeilingNote states what caps a shard in the slow scenario: per-key
// order (a key's commands one at a time, 100 ms each) and
// maxInFlightPerShard, with the keys per shard of the runs' stream.
func slowCeilingNote(res []map[string]cell, l limits) string {
	perShard := fmt.Sprintf("about %d", l.slowKeys/4)
	for _, m := range res {
		if c, ok := m["keys"]; ok {
			perShard = c.text
			break
		}
	}
	perKey := l.slowCount / l.slowKeys
	return fmt.Sprintf("What caps a shard: per-key order runs a key's commands one at a time, so a shard does at most its keys / "+
		"100 ms; %d keys on 4 shards put %s keys on each, a cap of about %d commands/s per shard on average (the target), "+
		"below maxInFlightPerShard / delay = 64 / 100 ms = 640 that sauna's concurrency allows. A shard's window runs from "+
		"its first delivery to its last, %d commands per key in %d delays at best, so a shard at the cap measures up to "+
		"%d/%d of it. A serial consumer's ceiling is 1 / delay = 10.",
		l.slowKeys, perShard, l.slowKeys*10/4, perKey, perKey-1, perKey, perKey-1)
}

func joinOr(parts []string, empty string) string {
	if len(parts) == 0 {
		return empty
	}
	out := parts[0]
	for _, p := range parts[1:] {
		out += "; " + p
	}
	return out
}

func slowKey(k int) string { return "q" + strconv.Itoa(k) }

func slowRun(ctx context.Context, e *env, rn runSpec, l limits) (map[string]cell, error) {
	st, err := e.createStream(ctx, 4)
	if err != nil {
		return nil, err
	}
	cmds := make([]cmdRef, l.slowCount)
	for i := range cmds {
		cmds[i] = cmdRef{key: slowKey(i % l.slowKeys), n: int64(i / l.slowKeys)}
	}
	if err := e.putBatch(ctx, st, cmds); err != nil {
		return nil, err
	}
	keys := map[string]int{}
	for k := range l.slowKeys {
		keys[st.shardOf(slowKey(k))]++
	}
	counts := make([]string, 0, len(keys))
	for _, id := range st.shardIDs() {
		counts = append(counts, strconv.Itoa(keys[id]))
	}
	r := newRecorder(st)
	p, err := e.start(ctx, spec{kind: rn.kind, id: e.name(rn.kind), app: e.name("app"), streams: []string{st.name},
		delay: 100 * time.Millisecond, idempotency: rn.idempotency}, r)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	m := map[string]cell{"keys": text(strings.Join(counts, ", "))}
	if rn.kind == kindSauna {
		ok, err := waitFor(ctx, p.start.Add(l.slowLimit), func() bool {
			first, _ := dedupe(r.snapshot())
			return len(first) >= l.slowCount
		}, p)
		if err != nil {
			return nil, err
		}
		if !ok {
			m["arrived-note"] = text("timed out")
		}
	} else {
		ok, err := waitFor(ctx, p.start.Add(l.firstLimit), func() bool { return r.count() > 0 }, p)
		if err != nil {
			return nil, err
		}
		if !ok {
			m["mean"] = text(fmt.Sprintf("no delivery in %s", secs(l.firstLimit)))
			m["arrived"] = num(0, "%.0f")
			return m, nil
		}
		if err := sleepCtx(ctx, l.slowBaseline); err != nil {
			return nil, err
		}
	}
	p.stop() // freeze the sample before reading it
	all := r.snapshot()
	first, dups := dedupe(all)
	m["arrived"] = num(float64(len(first)), "%.0f")
	m["dups"] = num(float64(dups), "%.0f")
	m["order"] = num(float64(orderViolations(all)), "%.0f")
	byShard := map[string][]int64{}
	for _, d := range first {
		byShard[d.shard] = append(byShard[d.shard], d.DoneNanos)
	}
	var rates []float64
	for _, ts := range byShard {
		if len(ts) < 2 {
			continue
		}
		w := time.Duration(slices.Max(ts) - slices.Min(ts)).Seconds()
		rates = append(rates, float64(len(ts))/w)
	}
	m["shards"] = text(fmt.Sprintf("%d/4", len(rates)))
	if len(rates) == 0 {
		m["mean"] = text("fewer than 2 deliveries per shard")
		return m, nil
	}
	var sum float64
	for _, v := range rates {
		sum += v
	}
	m["mean"] = num(sum/float64(len(rates)), "%.1f")
	m["min"] = num(slices.Min(rates), "%.1f")
	return m, nil
}

// orderViolations counts deliveries whose n is below one already delivered
// for the same key (a redelivery of the same n is a duplicate, not counted
// here). ds is in delivery order.
func orderViolations(ds []delivery) int {
	maxN := map[string]int64{}
	bad := 0
	for _, d := range ds {
		if m, ok := maxN[d.Key]; ok && d.N < m {
			bad++
			continue
		}
		maxN[d.Key] = max(maxN[d.Key], d.N)
	}
	return bad
}

// ---- 5. failover ----

// perLeaseKind runs a scenario of several processes sharing leases for
// every consumer kind (harlow and raw have no leases, so their cells say
// so) and returns how to read a result row; the first key is the row perKind
// logs.
func perLeaseKind(ctx context.Context, e *env, s *section, label string, keys []string, run func(kind string) (map[string]cell, error)) (func(key string) []cell, error) {
	results := map[string]map[string]cell{}
	_, err := perKind(ctx, e, s, label, func(kind string) (cell, error) {
		if kind == kindHarlow || kind == kindRaw {
			m := map[string]cell{}
			for _, k := range keys {
				m[k] = na("no leases: every process reads every shard")
			}
			results[kind] = m
			return m[keys[0]], nil
		}
		m, err := run(kind)
		if err != nil {
			return cell{}, err
		}
		results[kind] = m
		return m[keys[0]], nil
	})
	if err != nil {
		return nil, err
	}
	return func(key string) []cell {
		out := make([]cell, len(e.kinds))
		for i, k := range e.kinds {
			m, ok := results[k]
			switch {
			case !ok:
				out[i] = text("not run")
			default:
				c, ok := m[key]
				if !ok {
					c = text("-")
				}
				out[i] = c
			}
		}
		return out
	}, nil
}

const failoverStagger = 3 * time.Second

func scenarioFailover(ctx context.Context, e *env) (*section, error) {
	l := e.limits()
	s := &section{name: "failover", title: "5. Failover: kill -9 of the busier of two processes",
		method: fmt.Sprintf("4 shards, a producer putting one command per shard every %s for the whole scenario (8 keys "+
			"per shard, rotating). Two processes of the same consumer (same observer id / application name) start, the second %s after the first; when "+
			"every shard has delivered within the last second (limit %s), the process that delivered the most shards "+
			"in the last second gets kill -9, and the time from the kill until each of its shards has a delivery "+
			"from the survivor is measured (the slowest shard; limit %s). sauna's idempotency is at its default (on).",
			l.failoverPeriod, secs(failoverStagger), secs(l.failoverWarmup), secs(l.failoverLimit))}
	t := &table{cols: e.kinds}
	s.tables = []*table{t}
	get, err := perLeaseKind(ctx, e, s, "failover", []string{"takeover", "owned", "dups", "unseen"}, func(kind string) (map[string]cell, error) {
		return failoverRun(ctx, e, kind, l)
	})
	if err != nil {
		return nil, err
	}
	tk := t.add(&row{metric: "kill to every orphaned shard delivering (s)", cells: get("takeover"), target: "<= 15 s"})
	if i := slices.Index(e.kinds, kindSauna); i >= 0 {
		tk.verdict = atMost(tk.cells[i], 15, "s")
	}
	t.add(&row{metric: "shards held by the killed process", cells: get("owned"), noRatio: true})
	t.add(&row{metric: "duplicates", cells: get("dups"), noRatio: true})
	t.add(&row{metric: "commands put but never reported", cells: get("unseen"), noRatio: true})
	s.notes = append(s.notes,
		"Duplicates are expected from an at-least-once consumer that dies between delivery and checkpoint; sauna's "+
			"idempotency table is meant to suppress them.",
		"'Never reported' counts commands with no report 10 s after the producer stopped. A killed process loses the reports "+
			"still in its sink buffer (up to 5 ms worth), so a command it did deliver can show up here.")
	buildNotes(e, s)
	return s, nil
}

func failoverRun(ctx context.Context, e *env, kind string, l limits) (map[string]cell, error) {
	st, err := e.createStream(ctx, 4)
	if err != nil {
		return nil, err
	}
	ids := st.shardIDs()
	prod := startProducer(ctx, e, st, "f", l.failoverPeriod)
	defer prod.halt()

	r := newRecorder(st)
	app := e.name("app")
	a, err := e.start(ctx, spec{kind: kind, id: e.name(kind + "-a"), app: app, streams: []string{st.name}}, r)
	if err != nil {
		return nil, err
	}
	defer a.stop()
	// Two KCL workers started together race to create the lease table and
	// the loser exits (ResourceInUseException), so the second process starts
	// once the first has had time to create it.
	if err := sleepCtx(ctx, failoverStagger); err != nil {
		return nil, err
	}
	b, err := e.start(ctx, spec{kind: kind, id: e.name(kind + "-b"), app: app, streams: []string{st.name}}, r)
	if err != nil {
		return nil, err
	}
	defer b.stop()

	// owners maps each shard to the consumer of its latest delivery within
	// the last second.
	owners := func() map[string]string {
		cut := time.Now().Add(-time.Second).UnixNano()
		m := map[string]string{}
		for _, d := range r.snapshot() {
			if d.DoneNanos >= cut {
				m[d.shard] = d.Consumer
			}
		}
		return m
	}
	ok, err := waitFor(ctx, time.Now().Add(l.failoverWarmup), func() bool { return len(owners()) == len(ids) }, a, b)
	if err != nil {
		return nil, err
	}
	if !ok {
		return map[string]cell{"takeover": text(fmt.Sprintf("not measured: %d/4 shards consuming after %s", len(owners()), secs(l.failoverWarmup)))}, nil
	}
	own := owners()
	count := map[string]int{}
	for _, c := range own {
		count[c]++
	}
	victim, survivor := a, b
	if count[b.id] > count[a.id] {
		victim, survivor = b, a
	}
	var orphaned []string
	for sh, c := range own {
		if c == victim.id {
			orphaned = append(orphaned, sh)
		}
	}
	killAt := time.Now()
	victim.kill()
	log.Printf("failover: killed %s (held %d shards)", victim.id, len(orphaned))
	taken := func() map[string]int64 {
		m := map[string]int64{}
		for _, d := range r.snapshot() {
			if d.Consumer == survivor.id && d.DoneNanos > killAt.UnixNano() && slices.Contains(orphaned, d.shard) {
				if _, seen := m[d.shard]; !seen {
					m[d.shard] = d.DoneNanos
				}
			}
		}
		return m
	}
	ok, err = waitFor(ctx, killAt.Add(l.failoverLimit), func() bool { return len(taken()) == len(orphaned) }, survivor)
	if err != nil {
		return nil, err
	}
	m := map[string]cell{"owned": text(fmt.Sprintf("%d/4", len(orphaned)))}
	if !ok {
		m["takeover"] = text(fmt.Sprintf("> %s (%d/%d shards)", secs(l.failoverLimit), len(taken()), len(orphaned)))
	} else {
		var last int64
		for _, t := range taken() {
			last = max(last, t)
		}
		m["takeover"] = num(time.Duration(last-killAt.UnixNano()).Seconds(), "%.1f")
	}
	produced, err := prod.halt()
	if err != nil {
		return nil, fmt.Errorf("producer: %w", err)
	}
	if ok {
		_, _ = waitFor(ctx, time.Now().Add(10*time.Second), func() bool {
			first, _ := dedupe(r.snapshot())
			return int64(len(first)) >= produced
		}, survivor)
	}
	first, dups := dedupe(r.snapshot())
	m["dups"] = num(float64(dups), "%.0f")
	m["unseen"] = num(float64(produced-int64(len(first))), "%.0f")
	if !ok {
		m["unseen"] = text(fmt.Sprintf("%d (takeover incomplete)", produced-int64(len(first))))
	}
	return m, nil
}

// ---- 7. idle RSS ----

func scenarioRSS(ctx context.Context, e *env) (*section, error) {
	l := e.limits()
	s := &section{name: "rss", title: "7. Idle memory: 4 observers",
		method: fmt.Sprintf("4 streams of 1 shard each, one observer per stream in one config dir (one sauna process); "+
			"one record per stream; when all 4 have delivered, the process idles %s and VmRSS is read from "+
			"/proc/<pid>/status.", secs(l.rssIdle))}
	t := &table{cols: e.kinds}
	s.tables = []*table{t}
	cells, err := perKind(ctx, e, s, "rss", func(kind string) (cell, error) {
		if kind != kindSauna {
			return na("sauna-only scenario"), nil
		}
		return rssRun(ctx, e, l)
	})
	if err != nil {
		return nil, err
	}
	r := t.add(&row{metric: "VmRSS after idling (MB)", cells: cells, target: "<= 50 MB", noRatio: true})
	if i := slices.Index(e.kinds, kindSauna); i >= 0 {
		r.verdict = atMost(cells[i], 50, "MB")
	}
	buildNotes(e, s)
	return s, nil
}

func rssRun(ctx context.Context, e *env, l limits) (cell, error) {
	var streams []string
	var all []*stream
	for i := 0; i < 4; i++ {
		st, err := e.createStream(ctx, 1)
		if err != nil {
			return cell{}, err
		}
		if err := e.putBatch(ctx, st, []cmdRef{{key: fmt.Sprintf("rss%d", i)}}); err != nil {
			return cell{}, err
		}
		streams = append(streams, st.name)
		all = append(all, st)
	}
	// One key per stream: the key says which observer delivered.
	r := &recorder{resolve: func(d sink.Delivery) string { return d.Key }}
	p, err := e.start(ctx, spec{kind: kindSauna, id: e.name(kindSauna), app: e.name("app"), streams: streams}, r)
	if err != nil {
		return cell{}, err
	}
	defer p.stop()
	ok, err := waitFor(ctx, p.start.Add(l.startupLimit), func() bool { return len(firstPerShard(r.snapshot(), nil)) == len(all) }, p)
	if err != nil {
		return cell{}, err
	}
	if !ok {
		return cell{}, fmt.Errorf("only %d/4 observers delivered within %s; log: %s", len(firstPerShard(r.snapshot(), nil)), secs(l.startupLimit), p.log)
	}
	if err := sleepCtx(ctx, l.rssIdle); err != nil {
		return cell{}, err
	}
	kb, err := vmRSS(p.cmd.Process.Pid)
	if err != nil {
		return cell{}, err
	}
	return num(float64(kb)/1024, "%.1f"), nil
}

var errNoRSS = errors.New("no VmRSS line")
