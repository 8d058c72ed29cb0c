package main

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// ---- 6. pipeline ----

// benchResult is one line of `go test -bench` output: metric unit -> value.
type benchResult map[string]float64

// parseBench reads the BenchmarkPipeline lines of go test output, e.g.
//
//	BenchmarkPipeline-8  50000  23011 ns/op  412.0 record-bytes  5120 B/op  61 allocs/op
func parseBench(out, name string) []benchResult {
	var res []benchResult
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || (f[0] != name && !strings.HasPrefix(f[0], name+"-")) {
			continue
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue // not a result line
		}
		r := benchResult{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			r[f[i+1]] = v
		}
		res = append(res, r)
	}
	return res
}

func median(rs []benchResult, unit string) (float64, bool) {
	var v []float64
	for _, r := range rs {
		if x, ok := r[unit]; ok {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return 0, false
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2], true
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2, true
}

// shardBytesPerSecond is a saturated shard's read rate on AWS (2 MB/s).
const shardBytesPerSecond = 2e6

func scenarioPipeline(ctx context.Context, e *env) (*section, error) {
	l := e.limits()
	s := &section{name: "pipeline", title: "6. Pipeline cost per command (in process, no emulator)",
		method: fmt.Sprintf("`go test -run '^$' -bench '^BenchmarkPipeline(Claimed)?$' -benchmem -count %d ./observer/kinesis/` in the "+
			"sauna module. BenchmarkPipeline: decode, validate, digest, route, the bulk idempotency check and batched outcome write, and checkpoint "+
			"bookkeeping per command with a no-op responder and an idempotency table that answers at once; every command has its own "+
			"commandId, so none takes a claim (the benchmark fails if one does), as in steady state. BenchmarkPipelineClaimed: the same "+
			"with every command claimed and its outcome finished one by one, as after a takeover or for a retry. Medians "+
			"of the %d runs of each. A saturated shard delivers 2 MB/s, so it costs (2 MB/s / record-bytes) x ns/op / 1e9 of one core.",
			l.pipelineCount, l.pipelineCount)}
	if !slices.Contains(e.kinds, kindSauna) {
		return nil, fmt.Errorf("sauna is not among -consumers")
	}
	args := []string{"test", "-run", "^$", "-bench", "^BenchmarkPipeline(Claimed)?$", "-benchmem", "-count", strconv.Itoa(l.pipelineCount), "./observer/kinesis/"}
	log.Printf("pipeline: go %s (in ..)", strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "AWS_EC2_METADATA_DISABLED=true")
	outB, err := cmd.CombinedOutput()
	out := string(outB)
	res := parseBench(out, "BenchmarkPipeline")
	if err != nil || len(res) == 0 {
		return nil, fmt.Errorf("BenchmarkPipeline gave no result (%v): %s", err, firstLines(out, 12))
	}
	nsop, okNs := median(res, "ns/op")
	bytes, okBytes := median(res, "record-bytes")
	bop, okB := median(res, "B/op")
	allocs, okA := median(res, "allocs/op")

	cols := make([]string, len(e.kinds))
	copy(cols, e.kinds)
	t := &table{cols: cols}
	s.tables = []*table{t}
	cellsFor := func(c cell) []cell {
		out := make([]cell, len(cols))
		for i, k := range cols {
			if k == kindSauna {
				out[i] = c
			} else {
				out[i] = na("sauna-only: measures sauna's own code")
			}
		}
		return out
	}
	orMissing := func(ok bool, v float64, f string) cell {
		if !ok {
			return text("not reported")
		}
		return num(v, f)
	}
	us := orMissing(okNs, nsop/1000, "%.1f")
	r := t.add(&row{metric: "µs per command (ns/op / 1000)", cells: cellsFor(us), target: "<= 8 µs", noRatio: true})
	r.verdict = atMost(us, 8, "µs")
	t.add(&row{metric: "B/op", cells: cellsFor(orMissing(okB, bop, "%.0f")), noRatio: true})
	al := orMissing(okA, allocs, "%.0f")
	ar := t.add(&row{metric: "allocs/op", cells: cellsFor(al), target: "<= 60", noRatio: true})
	ar.verdict = atMost(al, 60, "allocations")
	writes, okW := median(res, "writes/op")
	t.add(&row{metric: "outcome writes per command (writes/op)", cells: cellsFor(orMissing(okW, writes, "%.2f")), noRatio: true})
	claims, okC := median(res, "claims/op")
	t.add(&row{metric: "claims per command (claims/op)", cells: cellsFor(orMissing(okC, claims, "%.2f")), noRatio: true})
	if claimed := parseBench(out, "BenchmarkPipelineClaimed"); len(claimed) > 0 {
		cns, okCns := median(claimed, "ns/op")
		t.add(&row{metric: "claimed path: µs per command (BenchmarkPipelineClaimed)", cells: cellsFor(orMissing(okCns, cns/1000, "%.1f")), noRatio: true})
		ca, okCa := median(claimed, "allocs/op")
		t.add(&row{metric: "claimed path: allocs/op", cells: cellsFor(orMissing(okCa, ca, "%.0f")), noRatio: true})
	}
	t.add(&row{metric: "record-bytes", cells: cellsFor(orMissing(okBytes, bytes, "%.0f")), noRatio: true})
	share := text("needs ns/op and record-bytes")
	if okNs && okBytes && bytes > 0 {
		share = num(shardBytesPerSecond/bytes*nsop/1e9, "%.2f")
	}
	t.add(&row{metric: "cores per saturated shard (2 MB/s)", cells: cellsFor(share), noRatio: true})
	s.notes = append(s.notes, fmt.Sprintf("%d result lines parsed.", len(res)))
	return s, nil
}

// vmRSS reads a process's resident set size in kB.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errNoRSS
}
