package main

import (
	"context"
	"fmt"
	"log"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sauna-io/sauna/bench/sink"
)

// ---- 3b. drain-steady: a backlog large enough that startup does not count ----

// steadyWriters is how many PutRecords loops preload the backlog at once.
// kinesalite takes a stream's puts one at a time (a lock per stream), so
// more loops only keep it from waiting while the next 500 records are built
// and encoded: one loop is measurably slower, two to eight about the same.
const steadyWriters = 4

// steadyPrefix starts every partition key of the backlog; the key's number
// and n give the command's index, which is how duplicates are told apart
// without keeping every delivery.
const steadyPrefix = "ds"

func scenarioDrainSteady(ctx context.Context, e *env) (*section, error) {
	l := e.limits()
	s := &section{name: "drain-steady", title: "3b. Drain in steady state: a large preloaded backlog",
		method: fmt.Sprintf("4 shards, one stream with %d commands on %d keys, preloaded once by %d concurrent loops of "+
			"PutRecords with 500 records each (failed entries retried; the preload counts the acknowledged entries and "+
			"must reach %d). Every run reads that same stream from TRIM_HORIZON with its own fresh consumer id, lease "+
			"table and (sauna, idempotency on) outcome table; the tables of the run before are deleted, and gone, before it "+
			"starts (the emulators are not restarted between these runs, which would lose the stream). commands/s = commands arrived / (last - first delivery), "+
			"both stamped by the consumer, so process start, lease taking and the first poll are outside the window; "+
			"the first delivery after start is shown apart. Limit %s per run (then the rate is over what arrived). "+
			"The harness counts deliveries (first and last time, one bit per command for duplicates) instead of keeping "+
			"them, and reads each consumer's CPU time (user and system) when its process has exited. sauna runs once with idempotency off and once on, its DynamoDB requests counted by the proxy of "+
			"section 12 (`bench/ddbproxy.go`) over the whole run and divided by the commands that arrived. %s The ceiling's writes go to dynalite directly, not through the proxy.",
			l.steadyCount, l.drainKeys, steadyWriters, l.steadyCount, secs(l.steadyLimit), ceilingMethod(l.steadyCount, l.ceilingPeeks))}
	st, err := e.createStream(ctx, 4)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	perShard, perShardBytes, err := e.preload(ctx, st, l.steadyCount, steadyWriters, func(i int) cmdRef {
		return cmdRef{key: steadyPrefix + strconv.Itoa(i%l.drainKeys), n: int64(i / l.drainKeys)}
	})
	if err != nil {
		return nil, fmt.Errorf("preload: %w", err)
	}
	took := time.Since(t0)
	log.Printf("drain-steady: preloaded %d commands in %s (%.0f/s), per shard %v", l.steadyCount, took.Round(time.Millisecond),
		float64(l.steadyCount)/took.Seconds(), perShard)
	s.notes = append(s.notes, fmt.Sprintf("Preload: %d commands acknowledged in %.1f s (%s).", l.steadyCount, took.Seconds(), shardCounts(st, perShard)))

	rs := e.runs(true)
	var ceil *ddbCeiling
	res, err := perRun(ctx, e, s, "drain-steady", rs, ceilingRun(ctx, e, s, l.steadyCount, l.ceilingPeeks, false, &ceil,
		func(rn runSpec) (map[string]cell, error) { return steadyRun(ctx, e, st, rn, l) }), st)
	if err != nil {
		return nil, err
	}
	t := &table{cols: runLabels(rs)}
	s.tables = []*table{t}
	rate := t.add(&row{metric: "commands/s (first to last delivery)", cells: column(e, rs, res, "rate")})
	rawShareVerdict(rate, rs)
	share := t.add(&row{metric: "commands/s as % of raw", cells: make([]cell, len(rs)), noRatio: true})
	raw := slices.Index(runLabels(rs), kindRaw)
	for i, c := range rate.cells {
		switch {
		case raw < 0 || !rate.cells[raw].ok || rate.cells[raw].v == 0:
			share.cells[i] = text("- (no raw rate)")
		case !c.ok:
			share.cells[i] = text("-")
		default:
			share.cells[i] = num(100*c.v/rate.cells[raw].v, "%.0f%%")
		}
	}
	ceilingRows(t, s, rate, ceil, "first to last delivery")
	t.add(&row{metric: "first delivery after start (s)", cells: column(e, rs, res, "first")})
	t.add(&row{metric: "first to last delivery (s)", cells: column(e, rs, res, "window")})
	// CPU time depends much less than rates on what else the machine runs.
	t.add(&row{metric: "consumer CPU per command (µs, user and system, whole process)", cells: column(e, rs, res, "cpu")})
	arrived := t.add(&row{metric: fmt.Sprintf("arrived of %d", l.steadyCount), cells: column(e, rs, res, "arrived"), noRatio: true,
		target: fmt.Sprintf("all %d", l.steadyCount)})
	t.add(&row{metric: "duplicates", cells: column(e, rs, res, "dups"), noRatio: true})
	cost := t.add(&row{metric: "outcome-table DynamoDB requests per command", cells: column(e, rs, res, "outcome_reqs"), noRatio: true,
		target: "<= 0.1 (idempotency on)"})
	if on := slices.Index(runLabels(rs), "sauna (idempotency on)"); on >= 0 {
		cost.verdict = worstAtMost(cost.cells[on:on+1], 0.1, "requests/command")
	}
	t.add(&row{metric: "lease-table DynamoDB requests per command", cells: column(e, rs, res, "lease_reqs"), noRatio: true})
	var verdicts, short []string
	for i, rn := range rs {
		c := arrived.cells[i]
		missing := "no count"
		if c.ok {
			missing = fmt.Sprintf("%d missing", l.steadyCount-int(c.v))
		}
		if rn.kind == kindSauna {
			v := "all arrived"
			if !c.ok || int(c.v) < l.steadyCount {
				v = missing
			}
			verdicts = append(verdicts, rn.label+": "+v)
		}
		if _, built := e.bins[rn.kind]; built && (!c.ok || int(c.v) < l.steadyCount) {
			short = append(short, rn.label+": "+missing)
		}
	}
	arrived.verdict = joinOr(verdicts, "-")
	if len(short) > 0 {
		s.notes = append(s.notes, "Not every command arrived within the limit ("+strings.Join(short, "; ")+
			"); the rate of those runs is over what arrived.")
	} else {
		s.notes = append(s.notes, "Every command arrived in every run.")
	}
	if n := readLimitNote(st, perShard, perShardBytes, l.steadyCount, rate, rs); n != "" {
		s.notes = append(s.notes, n)
	}
	buildNotes(e, s)
	return s, nil
}

// Kinesis's GetRecords limit per shard: 2 MB/s, a single read of up to 10 MB
// (the next reads are then refused until the rate is back within the limit).
const (
	shardReadBytesPerSecond = 2_000_000
	shardReadBurstBytes     = 10_000_000
	steadyMaxRecords        = 10000 // maxRecords of every consumer here
)

// readLimitNote tells how fast a consumer that keeps every shard within
// Kinesis's read limit the way sauna's KCL does could drain the backlog at
// best. The KCL's budget starts at 10 MB, grows by 2 MB/s, and is charged
// each read's bytes when the next read is made, so a shard's last read is
// made once the budget covers all but its last two reads: the largest shard
// (in bytes) needs its bytes beyond 10 MB and two full batches at 2 MB/s
// from its first read, which comes before the first delivery.
func readLimitNote(st *stream, perShard, perShardBytes map[string]int, count int, rate *row, rs []runSpec) string {
	var big string
	for _, id := range st.shardIDs() {
		if big == "" || perShardBytes[id] > perShardBytes[big] {
			big = id
		}
	}
	if big == "" || perShard[big] == 0 {
		return ""
	}
	b := perShardBytes[big]
	batch := b / perShard[big] * min(steadyMaxRecords, perShard[big])
	secs := float64(b-shardReadBurstBytes-2*batch) / shardReadBytesPerSecond
	if secs <= 0 {
		return ""
	}
	ceiling := float64(count) / secs
	note := fmt.Sprintf("Kinesis serves a shard at most 2 MB/s through GetRecords, after a read of up to 10 MB. sauna reads "+
		"through the KCL's polling consumer, which keeps every shard within that on the client (a budget of 10 MB that "+
		"grows by 2 MB/s, charged each read's bytes when the next read is made); kinesalite does not enforce the limit, "+
		"and raw and harlow read as fast as it answers. The largest shard, %s, holds %.1f MB of record data: beyond the "+
		"10 MB and two batches of %d records (%.1f MB each) it needs %.1f s at 2 MB/s from its first read, so a consumer "+
		"within the limit drains this backlog at about %.0f commands/s at most",
		big, float64(b)/1e6, min(steadyMaxRecords, perShard[big]), float64(batch)/1e6, secs, ceiling)
	if raw := slices.Index(runLabels(rs), kindRaw); raw >= 0 && rate.cells[raw].ok && rate.cells[raw].v > 0 {
		note += fmt.Sprintf(", %.0f%% of raw's rate in this run", 100*ceiling/rate.cells[raw].v)
	}
	return note + "."
}

// rawShareVerdict judges sauna's idempotency-off rate against 80% of raw's,
// the drain scenarios' target.
func rawShareVerdict(rate *row, rs []runSpec) {
	off := slices.Index(runLabels(rs), "sauna (idempotency off)")
	raw := slices.Index(runLabels(rs), kindRaw)
	rate.target = ">= 80% of raw (idempotency off)"
	switch {
	case off < 0:
	case raw < 0 || !rate.cells[raw].ok:
		rate.verdict = "unknown: no raw ceiling measured"
	default:
		rate.verdict = atLeast(rate.cells[off], 0.8*rate.cells[raw].v, "commands/s") +
			fmt.Sprintf(" (%.0f%% of raw)", 100*rate.cells[off].v/rate.cells[raw].v)
	}
}

func steadyRun(ctx context.Context, e *env, st *stream, rn runSpec, l limits) (map[string]cell, error) {
	c := newSteadyCounter(steadyPrefix, l.drainKeys, l.steadyCount)
	app := e.name("app")
	sp := spec{kind: rn.kind, id: e.name(rn.kind), app: app, streams: []string{st.name}, idempotency: rn.idempotency}
	var px *ddbProxy
	if rn.kind == kindSauna {
		// Counted, to tell what the drain costs in DynamoDB requests.
		var err error
		if px, err = startDDBProxy(e.ddbURL); err != nil {
			return nil, err
		}
		defer px.close()
		sp.ddbURL = px.url()
	}
	p, err := e.start(ctx, sp, c)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	if _, err := waitFor(ctx, p.start.Add(l.steadyLimit), func() bool { return c.stats().arrived >= l.steadyCount }, p); err != nil {
		return nil, err
	}
	p.stop() // flushes the consumer's last reports; later duplicates count too
	sc := c.stats()
	m := map[string]cell{"arrived": num(float64(sc.arrived), "%.0f"), "dups": num(float64(sc.dups), "%.0f")}
	if ps := p.cmd.ProcessState; ps != nil && sc.arrived > 0 {
		m["cpu"] = num(float64((ps.UserTime()+ps.SystemTime()).Microseconds())/float64(sc.arrived), "%.1f")
	}
	if px != nil && sc.arrived > 0 {
		var outcome, lease int64
		for k, v := range px.snapshot() {
			switch {
			case k.kind == kindScanned:
			case k.table == app+"-commands":
				outcome += v
			case k.table == app:
				lease += v
			}
		}
		m["outcome_reqs"] = num(float64(outcome)/float64(sc.arrived), "%.3f")
		m["lease_reqs"] = num(float64(lease)/float64(sc.arrived), "%.3f")
	}
	if sc.stray > 0 {
		log.Printf("drain-steady: %s: %d reports of commands not in the backlog", rn.label, sc.stray)
		m["dups"] = text(fmt.Sprintf("%d (and %d reports of unknown commands)", sc.dups, sc.stray))
	}
	if sc.arrived < 2 || sc.last <= sc.first {
		m["rate"] = text(fmt.Sprintf("not measured: %d arrived in %s", sc.arrived, secs(l.steadyLimit)))
		return m, nil
	}
	window := time.Duration(sc.last - sc.first)
	m["first"] = num(time.Duration(sc.first-p.start.UnixNano()).Seconds(), "%.2f")
	m["window"] = num(window.Seconds(), "%.2f")
	format := "%.0f"
	if sc.arrived < l.steadyCount {
		format = "%.0f (timed out)"
	}
	m["rate"] = num(float64(sc.arrived)/window.Seconds(), format)
	return m, nil
}

// steadyCounter takes the reports of one drain-steady run in constant
// memory per command: one bit to tell a duplicate, and the first and last
// delivery times of commands seen for the first time.
type steadyCounter struct {
	prefix      string
	keys, count int

	mu   sync.Mutex
	seen []uint64
	sum  steadyStats
}

type steadyStats struct {
	arrived, dups, stray int
	first, last          int64 // DoneNanos
}

func newSteadyCounter(prefix string, keys, count int) *steadyCounter {
	return &steadyCounter{prefix: prefix, keys: keys, count: count, seen: make([]uint64, (count+63)/64)}
}

// index is the backlog position of (key, n): command i has key prefix+(i%keys)
// and n i/keys.
func (c *steadyCounter) index(key string, n int64) (int, bool) {
	s, ok := strings.CutPrefix(key, c.prefix)
	if !ok || n < 0 {
		return 0, false
	}
	k, err := strconv.Atoi(s)
	if err != nil || k < 0 || k >= c.keys {
		return 0, false
	}
	i := n*int64(c.keys) + int64(k)
	if i >= int64(c.count) {
		return 0, false
	}
	return int(i), true
}

func (c *steadyCounter) add(d sink.Delivery) {
	i, ok := c.index(d.Key, d.N)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case !ok:
		c.sum.stray++
	case c.seen[i/64]&(1<<(i%64)) != 0:
		c.sum.dups++
	default:
		c.seen[i/64] |= 1 << (i % 64)
		c.sum.arrived++
		// Reports arrive per connection in order, but not across the
		// consumer's goroutines: keep the extremes, not the latest.
		if c.sum.arrived == 1 || d.DoneNanos < c.sum.first {
			c.sum.first = d.DoneNanos
		}
		c.sum.last = max(c.sum.last, d.DoneNanos)
	}
}

func (c *steadyCounter) stats() steadyStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sum
}

// preload puts count commands (cmd(i) for i in [0, count)) with PutRecords of
// 500 from writers concurrent loops, retrying entries the emulator refused,
// and returns the acknowledged entries per shard; it fails unless every
// command was acknowledged exactly once. Commands of one key may land out of
// their n order across writers, so this is for scenarios that do not check
// order.
// It returns the commands and the bytes of record data acknowledged per shard.
func (e *env) preload(ctx context.Context, st *stream, count, writers int, cmd func(i int) cmdRef) (map[string]int, map[string]int, error) {
	var mu sync.Mutex
	perShard, perShardBytes := map[string]int{}, map[string]int{}
	err := inChunks(ctx, count, 500, writers, func(ctx context.Context, lo, hi int) error {
		now := time.Now().UnixNano()
		entries := make([]types.PutRecordsRequestEntry, 0, hi-lo)
		for i := lo; i < hi; i++ {
			c := cmd(i)
			entries = append(entries, types.PutRecordsRequestEntry{PartitionKey: aws.String(c.key), Data: record(c.key, c.n, now)})
		}
		acked, sizes, err := e.putAll(ctx, st, entries)
		if err != nil {
			return err
		}
		mu.Lock()
		for sh, n := range acked {
			perShard[sh] += n
			perShardBytes[sh] += sizes[sh]
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	total := 0
	for _, n := range perShard {
		total += n
	}
	if total != count {
		return perShard, perShardBytes, fmt.Errorf("%d entries acknowledged, want %d", total, count)
	}
	return perShard, perShardBytes, nil
}

// putAll puts one PutRecords batch, putting again only the entries that
// failed (a failed entry was not written), and counts the acknowledged
// entries and their bytes of data per shard.
func (e *env) putAll(ctx context.Context, st *stream, entries []types.PutRecordsRequestEntry) (acked, sizes map[string]int, err error) {
	acked, sizes = map[string]int{}, map[string]int{}
	for attempt := 1; len(entries) > 0; attempt++ {
		out, perr := e.kin.PutRecords(ctx, &kinesis.PutRecordsInput{StreamName: aws.String(st.name), Records: entries})
		if perr != nil {
			return nil, nil, fmt.Errorf("PutRecords: %w", perr)
		}
		if len(out.Records) != len(entries) {
			return nil, nil, fmt.Errorf("PutRecords: %d results for %d entries", len(out.Records), len(entries))
		}
		var retry []types.PutRecordsRequestEntry
		var lastErr string
		for i, r := range out.Records {
			if r.ErrorCode != nil {
				retry = append(retry, entries[i])
				lastErr = aws.ToString(r.ErrorCode) + ": " + aws.ToString(r.ErrorMessage)
				continue
			}
			acked[aws.ToString(r.ShardId)]++
			sizes[aws.ToString(r.ShardId)] += len(entries[i].Data)
		}
		if len(retry) > 0 && attempt == 10 {
			return nil, nil, fmt.Errorf("PutRecords: %d entries still failing after %d attempts (%s)", len(retry), attempt, lastErr)
		}
		if len(retry) > 0 {
			if err := sleepCtx(ctx, time.Duration(attempt)*50*time.Millisecond); err != nil {
				return nil, nil, err
			}
		}
		entries = retry
	}
	return acked, sizes, nil
}

// shardCounts lists the acknowledged entries per shard in shard order.
func shardCounts(st *stream, perShard map[string]int) string {
	var parts []string
	for _, id := range st.shardIDs() {
		parts = append(parts, fmt.Sprintf("%s: %d", id, perShard[id]))
	}
	return strings.Join(parts, ", ")
}
