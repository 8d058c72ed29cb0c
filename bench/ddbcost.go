package main

import (
	"context"
	"fmt"
	"log"
	"slices"
	"sort"
	"strings"
	"time"
)

// ---- 12. ddb-cost: DynamoDB requests of sauna in steady state ----

// costShards is the stream of the ddb-cost scenario: as many shards as the
// scale-out end-to-end test, so that three workers hold 2 or 3 each.
const costShards = 8

// costRun is one measurement: a number of sauna processes, idempotency on
// or off.
type costRun struct {
	label   string
	workers int
	idem    bool
}

// leaseWriteBound is the lease table's steady-state budget: writes per
// shard per second, the census aside.
const leaseWriteBound = 2.0

func scenarioDDBCost(ctx context.Context, e *env) (*section, error) {
	l := e.limits()
	s := &section{name: "ddb-cost", title: "12. DynamoDB requests in steady state",
		method: fmt.Sprintf("sauna only. %d shards, a producer putting one command per shard every %s. Every sauna process "+
			"reaches DynamoDB through a counting reverse proxy in front of dynalite (`bench/ddbproxy.go`), which counts requests "+
			"by table and operation (`X-Amz-Target`) and the items each Scan read. Once every process delivers its share of the "+
			"shards and %s more have passed, requests are counted over %s and divided by the commands delivered in that window "+
			"(per command) or by the shards and seconds (lease table). Lease-table writes are the shard items' (renewals, "+
			"checkpoints, handoffs); the census and stream-binding items are counted apart. With idempotency on, every command "+
			"goes through the outcome table (`<id>-commands`).",
			costShards, l.failoverPeriod, secs(l.costSettle), secs(l.costWindow))}
	if !slices.Contains(e.kinds, kindSauna) {
		return nil, fmt.Errorf("sauna is not among -consumers")
	}
	if _, ok := e.bins[kindSauna]; !ok {
		return nil, fmt.Errorf("sauna is not built: %v", e.buildErr[kindSauna])
	}
	runs := []costRun{
		{"1 worker, idempotency off", 1, false},
		{"1 worker, idempotency on", 1, true},
		{"3 workers, idempotency off", 3, false},
		{"3 workers, idempotency on", 3, true},
	}
	res := make([]map[string]cell, len(runs))
	labels := make([]string, len(runs))
	for i, rn := range runs {
		labels[i] = rn.label
		log.Printf("ddb-cost: %s", rn.label)
		var m map[string]cell
		err := e.fresh(ctx)
		if err == nil {
			m, err = costMeasure(ctx, e, rn, l)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			log.Printf("ddb-cost: %s: %v", rn.label, err)
			s.notes = append(s.notes, fmt.Sprintf("%s: error: %v", rn.label, err))
			m = map[string]cell{}
		}
		log.Printf("ddb-cost: %s: %v", rn.label, cellsText(m))
		res[i] = m
	}
	get := func(key string) []cell {
		out := make([]cell, len(res))
		for i, m := range res {
			c, ok := m[key]
			if !ok {
				c = text("-")
			}
			out[i] = c
		}
		return out
	}
	lease := &table{cols: labels}
	w := lease.add(&row{metric: "lease table: shard-item writes per shard per second", cells: get("lease_writes"), noRatio: true,
		target: fmt.Sprintf("<= %.0f", leaseWriteBound)})
	w.verdict = worstAtMost(w.cells, leaseWriteBound, "writes/shard/s")
	lease.add(&row{metric: "lease table: shard-item reads (GetItem) per shard per second", cells: get("lease_reads"), noRatio: true})
	lease.add(&row{metric: "lease table: Scan requests per worker per second", cells: get("scans"), noRatio: true})
	lease.add(&row{metric: "lease table: items read by scans per shard per second", cells: get("scanned"), noRatio: true})
	lease.add(&row{metric: "lease table: census and binding writes per worker per second", cells: get("census"), noRatio: true})
	lease.add(&row{metric: "commands delivered per second in the window", cells: get("rate"), noRatio: true})

	perCmd := &table{cols: labels}
	var keys []string
	for _, m := range res {
		for k := range m {
			if strings.HasPrefix(k, "cmd:") && !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		perCmd.add(&row{metric: strings.TrimPrefix(k, "cmd:") + " per command", cells: get(k), noRatio: true})
	}
	perCmd.add(&row{metric: "all DynamoDB requests per command", cells: get("total"), noRatio: true})
	s.tables = []*table{lease, perCmd}
	s.notes = append(s.notes, "A Scan is one request but reads, and is billed for, every item of the table; its row counts "+
		"the items. GetItem reads come from the shard-sync pass, which reads the lease of every shard a worker does not hold.",
		"What these requests cost in throughput is measured in section 4: commands/s per shard with a 100 ms responder on "+
			"200 keys, sauna (idempotency on) beside sauna (idempotency off).")
	return s, nil
}

// worstAtMost judges the highest value of a row against its bound.
func worstAtMost(cells []cell, limit float64, unit string) string {
	worst := cell{}
	for _, c := range cells {
		if c.ok && (!worst.ok || c.v > worst.v) {
			worst = c
		}
	}
	return atMost(worst, limit, unit)
}

func costMeasure(ctx context.Context, e *env, rn costRun, l limits) (map[string]cell, error) {
	st, err := e.createStream(ctx, costShards)
	if err != nil {
		return nil, err
	}
	px, err := startDDBProxy(e.ddbURL)
	if err != nil {
		return nil, err
	}
	defer px.close()
	prod := startProducer(ctx, e, st, "c", l.failoverPeriod)
	defer prod.halt()
	r := newRecorder(st)
	app := e.name("app")
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()
	for i := range rn.workers {
		p, err := e.start(ctx, spec{kind: kindSauna, id: e.name(fmt.Sprintf("cost-%d", i)), app: app, streams: []string{st.name},
			idempotency: boolPtr(rn.idem), ddbURL: px.url()}, r)
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
	}
	ok, err := waitFor(ctx, time.Now().Add(l.failoverWarmup), func() bool { return shared(r, costShards, procs...) }, procs...)
	if err != nil {
		return nil, err
	}
	if !ok {
		return map[string]cell{"lease_writes": text(fmt.Sprintf("not measured: not shared within %s", secs(l.failoverWarmup)))}, nil
	}
	if err := sleepCtx(ctx, l.costSettle); err != nil {
		return nil, err
	}
	delivered := func() int {
		first, _ := dedupe(r.snapshot())
		return len(first)
	}
	c0, n0, t0 := px.snapshot(), delivered(), time.Now()
	if err := sleepCtx(ctx, l.costWindow); err != nil {
		return nil, err
	}
	c1, n1, t1 := px.snapshot(), delivered(), time.Now()
	for _, p := range procs {
		if !p.alive() {
			return nil, p.exitErr()
		}
	}
	window := t1.Sub(t0).Seconds()
	cmds := float64(n1 - n0)
	perShardSec := func(v int64) cell { return num(float64(v)/costShards/window, "%.2f") }
	var leaseWrites, leaseReads, scans, scanned, census, total int64
	perOp := map[string]int64{}
	for k, v1 := range c1 {
		v := v1 - c0[k]
		if v == 0 {
			continue
		}
		if k.kind == kindScanned {
			if k.table == app {
				scanned += v
			}
			continue
		}
		total += v
		class := k.table
		switch k.table {
		case app:
			class = "lease table"
			switch {
			case k.op == "Scan":
				scans += v
			case k.kind == kindOwn && isWrite(k.op):
				census += v
			case k.kind == kindShard && isWrite(k.op):
				leaseWrites += v
			case k.kind == kindShard && k.op == "GetItem":
				leaseReads += v
			}
		case app + "-commands":
			class = "outcome table"
		}
		perOp[class+" "+k.op] += v
	}
	m := map[string]cell{
		"lease_writes": perShardSec(leaseWrites),
		"lease_reads":  perShardSec(leaseReads),
		"scanned":      perShardSec(scanned),
		"scans":        num(float64(scans)/float64(rn.workers)/window, "%.2f"),
		"census":       num(float64(census)/float64(rn.workers)/window, "%.2f"),
		"rate":         num(cmds/window, "%.0f"),
	}
	if cmds > 0 {
		for k, v := range perOp {
			m["cmd:"+k] = num(float64(v)/cmds, "%.3f")
		}
		m["total"] = num(float64(total)/cmds, "%.3f")
	}
	return m, nil
}

func isWrite(op string) bool {
	switch op {
	case "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems":
		return true
	}
	return false
}
