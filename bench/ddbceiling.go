package main

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/sauna-io/sauna/observer/command"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/responders/webhook"
)

// ceilingWriters is how many outcome writes sauna has in flight at most:
// maxWrites of the outcome Batcher (observer/command/batcher.go), which is
// unexported there.
const ceilingWriters = 16

// peekSize is the most command ids one Peek reads in one BatchGetItem
// (ddbtable.MaxBatchGet), as sauna peeks a batch of records.
const peekSize = 100

// idemOnTarget is the drain scenarios' target for sauna with idempotency on
// (commands/s).
const idemOnTarget = 6410

// labelIdemOn is the column of sauna's idempotency-on run.
const labelIdemOn = "sauna (idempotency on)"

// ddbCeiling is what dynalite does for outcome writes and lookups without
// sauna around them.
type ddbCeiling struct {
	items     int
	itemsPerS float64
	peeks     int
	peekMs    float64 // mean wall time of one Peek of peekSize ids

	// dynalite's own CPU time (0 when unknown) per outcome item written,
	// per id peeked, and per command of sauna's idempotency-on run: unlike
	// rates, these hardly change with what else runs on the machine.
	cpuItemUs, cpuPeekIDUs, cpuCommandUs float64
}

// ceilingMethod says how measureCeiling works, for a scenario's method.
func ceilingMethod(items, peeks int) string {
	return fmt.Sprintf("Right before sauna's idempotency-on run (same emulator state), the harness measures dynalite's ceiling "+
		"for outcome writes with the outcomes package sauna uses: on a fresh outcome table created as sauna creates it "+
		"(outcomes.Table.Init), %d outcome items (executed, 1 attempt, a webhook command's schema and digest, a shard id and "+
		"a 56-digit sequence number each) are written by %d concurrent loops of RecordDone calls of %d (command.BatchSize; "+
		"%d is the outcome Batcher's most writes in flight, maxWrites in observer/command/batcher.go); items/s = items / "+
		"wall time. Then %d Peeks of %d ids not in the table (as in a drain, where every command is new), one after "+
		"the other: mean ms per Peek (one BatchGetItem each). The table is deleted, and sauna starts once it is gone. "+
		"Beside the rates, dynalite's own CPU time (user and system, from /proc, when scripts/bench.sh started it) per item "+
		"written and per id peeked, which depend much less than rates on what else the shared machine runs; in drain also "+
		"per command over sauna's whole idempotency-on run (writes, peeks, leases, checkpoints).",
		items, ceilingWriters, command.BatchSize, ceilingWriters, peeks, peekSize)
}

// measureCeiling writes n outcome items to a fresh outcome table as fast
// as sauna's outcome Batcher could (ceilingWriters RecordDone calls of
// command.BatchSize at once), then times peeks Peeks of peekSize unseen
// ids; the table is dropped afterwards.
func measureCeiling(ctx context.Context, e *env, n, peeks int) (ddbCeiling, error) {
	name := e.name("ceiling") + "-commands"
	tbl := outcomes.New(e.dynamo(), outcomes.Config{TableName: name, Observer: "bench-ceiling", WorkerID: "bench-ceiling",
		Logger: slog.New(slog.DiscardHandler)})
	if err := tbl.Init(ctx); err != nil {
		return ddbCeiling{}, fmt.Errorf("outcome table: %w", err)
	}
	// dynalite drops a table's items before it answers DeleteTable, which
	// takes a while for hundreds of thousands: sauna's run starts once that
	// is over, so the work does not land in it.
	defer dropTable(e, name)

	schema := webhook.WebhookV1.String()
	now := time.Now()
	done := make([]outcomes.Done, n)
	for i := range done {
		body := fmt.Sprintf(`{"body":{"event":"deployed","service":"web-%d","build":%d},"headers":{"X-Request-Id":"r-%d"}}`, i%50, i, i)
		digest, err := responders.Digest(schema, []byte(body))
		if err != nil {
			return ddbCeiling{}, err
		}
		done[i] = outcomes.Done{
			Claim: outcomes.Claim{CommandID: uuidV4(), Digest: digest, Schema: schema, Responder: "webhook",
				Shard: fmt.Sprintf("shardId-%012d", i%4), Sequence: fmt.Sprintf("4961%052d", i)},
			Final: outcomes.Final{Verdict: verdict.Executed, Attempts: 1, FirstAttempt: now, LastAttempt: now},
		}
	}
	start := time.Now()
	cpu := dynaliteCPU()
	err := inChunks(ctx, n, command.BatchSize, ceilingWriters, func(ctx context.Context, lo, hi int) error {
		return tbl.RecordDone(ctx, done[lo:hi])
	})
	if err != nil {
		return ddbCeiling{}, fmt.Errorf("record outcomes: %w", err)
	}
	took := time.Since(start)
	c := ddbCeiling{items: n, itemsPerS: float64(n) / took.Seconds(), peeks: peeks, cpuItemUs: cpu.perUnit(n)}
	log.Printf("ceiling: %d outcome items in %.1f s (%.0f/s), dynalite CPU %.0f µs per item", n, took.Seconds(), c.itemsPerS, c.cpuItemUs)

	claims := make([]outcomes.Claim, peekSize)
	var total time.Duration
	cpu = dynaliteCPU()
	for range peeks {
		for i := range claims {
			claims[i] = outcomes.Claim{CommandID: uuidV4(), Digest: done[i%n].Claim.Digest, Schema: schema, Responder: "webhook"}
		}
		start := time.Now()
		res, err := tbl.Peek(ctx, claims)
		if err != nil {
			return ddbCeiling{}, fmt.Errorf("peek: %w", err)
		}
		total += time.Since(start)
		if i := slices.IndexFunc(res, func(p outcomes.Peeked) bool { return p.Seen != outcomes.Unseen }); i >= 0 {
			return ddbCeiling{}, fmt.Errorf("peek: new id %s seen as %s", claims[i].CommandID, res[i].Seen)
		}
	}
	if peeks > 0 {
		c.peekMs = float64(total.Microseconds()) / 1000 / float64(peeks)
		c.cpuPeekIDUs = cpu.perUnit(peeks * peekSize)
		log.Printf("ceiling: %d peeks of %d ids, %.1f ms each, dynalite CPU %.0f µs per id", peeks, peekSize, c.peekMs, c.cpuPeekIDUs)
	}
	// RecordDone returns once every item was processed; this only checks
	// that what was written reads back as an outcome.
	rec, err := tbl.Get(ctx, done[n-1].Claim.CommandID)
	if err != nil {
		return ddbCeiling{}, fmt.Errorf("read back: %w", err)
	}
	if rec.Verdict != verdict.Executed || rec.Status != outcomes.StatusDone {
		return ddbCeiling{}, fmt.Errorf("read back: the last outcome written is %+v", rec)
	}
	return c, nil
}

// ceilingRun wraps a scenario's per-run function: before sauna's
// idempotency-on run it measures dynalite's ceiling into *c (a failure
// goes into the notes, the run still happens). With perCommand, dynalite's
// CPU time over that run, divided by items (the run's commands), goes into
// the ceiling too: only for runs that make no other DynamoDB work, such as
// dropping a large table.
func ceilingRun(ctx context.Context, e *env, s *section, items, peeks int, perCommand bool, c **ddbCeiling, run func(runSpec) (map[string]cell, error)) func(runSpec) (map[string]cell, error) {
	return func(rn runSpec) (map[string]cell, error) {
		if rn.label != labelIdemOn {
			return run(rn)
		}
		log.Printf("%s: dynalite ceiling for %d outcome items", s.name, items)
		got, err := measureCeiling(ctx, e, items, peeks)
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil:
			log.Printf("%s: ceiling: %v", s.name, err)
			s.notes = append(s.notes, fmt.Sprintf("dynalite ceiling: not measured: %v", err))
		default:
			*c = &got
		}
		cpu := dynaliteCPU()
		res, err := run(rn)
		if err == nil && perCommand && *c != nil {
			(*c).cpuCommandUs = cpu.perUnit(items)
			log.Printf("%s: dynalite CPU %.0f µs per command over sauna's run", s.name, (*c).cpuCommandUs)
		}
		return res, err
	}
}

// clockTicks is the unit of utime and stime in /proc/<pid>/stat
// (USER_HZ), 100 on every Linux that Go supports.
const clockTicks = 100

// cpuMark is dynalite's CPU time at some moment; ok is false when it cannot
// be read (no EMULATORS_DIR, as when the emulators were started by hand, or
// no /proc).
type cpuMark struct {
	pid string
	at  time.Duration
	ok  bool
}

// dynaliteCPU reads the CPU time (user and system) dynalite has used so
// far: its pid is in the state dir of scripts/emulators/emulators.sh, read
// anew each time because the harness restarts the emulators.
func dynaliteCPU() cpuMark {
	dir := os.Getenv("EMULATORS_DIR")
	if dir == "" {
		return cpuMark{}
	}
	b, err := os.ReadFile(filepath.Join(dir, "dynamodb.pid"))
	if err != nil {
		return cpuMark{}
	}
	pid := strings.TrimSpace(string(b))
	stat, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return cpuMark{}
	}
	used, ok := procCPU(string(stat))
	return cpuMark{pid: pid, at: used, ok: ok}
}

// procCPU is utime+stime of a /proc/<pid>/stat line. The command name,
// in parentheses, may hold spaces, so fields count from its end.
func procCPU(stat string) (time.Duration, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	// After the name: state is field 3, utime 14, stime 15.
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(u+s) * time.Second / clockTicks, true
}

// perUnit is dynalite's CPU time since m, in µs per unit of n; 0 when
// either reading failed or dynalite was restarted in between (two
// processes' times do not subtract).
func (m cpuMark) perUnit(n int) float64 {
	now := dynaliteCPU()
	if !m.ok || !now.ok || now.pid != m.pid || n <= 0 {
		return 0
	}
	return float64((now.at - m.at).Microseconds()) / float64(n)
}

// ceilingRows adds the ceiling's rows to t, in sauna's idempotency-on column,
// judges that column's rate against idemOnTarget and notes how far below
// the ceiling it is. rate is the scenario's commands/s row; window says
// over what time it is measured.
func ceilingRows(t *table, s *section, rate *row, c *ddbCeiling, window string) {
	on := slices.Index(t.cols, labelIdemOn)
	if on < 0 {
		return
	}
	only := func(v cell) []cell {
		out := make([]cell, len(t.cols))
		for i := range out {
			out[i] = text("-")
		}
		out[on] = v
		return out
	}
	onVerdict := atLeast(rate.cells[on], idemOnTarget, "commands/s")
	if rate.verdict == "" {
		rate.target, rate.verdict = fmt.Sprintf(">= %d (idempotency on)", idemOnTarget), onVerdict
	} else {
		rate.target += fmt.Sprintf("; >= %d (idempotency on)", idemOnTarget)
		rate.verdict = "idempotency off: " + rate.verdict + "; idempotency on: " + onVerdict
	}
	if c == nil {
		t.add(&row{metric: fmt.Sprintf("dynalite ceiling: outcome items written per second (%d writers x %d)", ceilingWriters, command.BatchSize),
			cells: only(text("not measured (see notes)")), noRatio: true})
		return
	}
	t.add(&row{metric: fmt.Sprintf("dynalite ceiling: outcome items written per second (%d writers x %d, %d items)", ceilingWriters, command.BatchSize, c.items),
		cells: only(num(c.itemsPerS, "%.0f")), noRatio: true})
	if c.peeks > 0 {
		t.add(&row{metric: fmt.Sprintf("dynalite: ms per Peek of %d ids (serial, %d Peeks)", peekSize, c.peeks),
			cells: only(num(c.peekMs, "%.1f")), noRatio: true})
	}
	if c.cpuItemUs > 0 {
		t.add(&row{metric: "dynalite CPU per outcome item written (µs, ceiling)", cells: only(num(c.cpuItemUs, "%.0f")), noRatio: true})
	}
	if c.cpuPeekIDUs > 0 {
		t.add(&row{metric: "dynalite CPU per id peeked (µs, ceiling)", cells: only(num(c.cpuPeekIDUs, "%.0f")), noRatio: true})
	}
	if c.cpuCommandUs > 0 {
		t.add(&row{metric: "dynalite CPU per command of this run (µs, whole run)", cells: only(num(c.cpuCommandUs, "%.0f")), noRatio: true})
	}
	share := text("- (no rate)")
	if rate.cells[on].ok {
		share = num(100*rate.cells[on].v/c.itemsPerS, "%.0f%%")
	}
	t.add(&row{metric: "sauna (idempotency on) commands/s as % of that ceiling", cells: only(share), noRatio: true})
	n := fmt.Sprintf("dynalite writes at most %.0f outcome items/s on this machine (%d items, %d writers of %d, measured right "+
		"before sauna's idempotency-on run)", c.itemsPerS, c.items, ceilingWriters, command.BatchSize)
	if rate.cells[on].ok {
		n += fmt.Sprintf("; sauna reached %s of it (%s commands/s, %s), each command's outcome being one such item", share.text,
			rate.cells[on].text, window)
	}
	if idemOnTarget > c.itemsPerS {
		n += fmt.Sprintf(". The target of %d commands/s with idempotency on is above that ceiling: sauna, which writes an "+
			"outcome item per command with at most %d writes in flight, cannot meet it on this emulator", idemOnTarget, ceilingWriters)
	}
	s.notes = append(s.notes, n+".")
}

// dropTable deletes a table and waits until it is gone; a failure is only
// logged: the next fresh deletes what is left.
func dropTable(e *env, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db := e.dynamo()
	start := time.Now()
	if _, err := db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)}); err != nil {
		log.Printf("delete table %s: %v", name, err)
		return
	}
	w := dynamodb.NewTableNotExistsWaiter(db, func(o *dynamodb.TableNotExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)}, 5*time.Minute); err != nil {
		log.Printf("delete table %s: %v", name, err)
		return
	}
	log.Printf("deleted table %s in %.1f s", name, time.Since(start).Seconds())
}
