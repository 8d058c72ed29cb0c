package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

type report struct {
	quick       bool
	started     time.Time
	environment []string
	sections    []*section
	logDir      string
	// fresh is how the emulators were made fresh (env.freshMode), restarts
	// and emptied how often.
	fresh             string
	restarts, emptied int
}

// section is one scenario's part of the report.
type section struct {
	name, title string
	method      string
	tables      []*table
	notes       []string
	failed      string // the scenario could not run at all
}

// table has a column per consumer run, then target, verdict and ratios.
type table struct {
	cols []string
	rows []*row
}

type row struct {
	metric  string
	cells   []cell // aligned with table.cols
	target  string
	verdict string // sauna's value against the target
	noRatio bool
}

// cell is a value, or a text that explains why there is none.
type cell struct {
	text string
	v    float64
	ok   bool
}

func num(v float64, format string) cell { return cell{text: fmt.Sprintf(format, v), v: v, ok: true} }
func text(s string) cell                { return cell{text: s} }
func na(reason string) cell             { return cell{text: "n/a (" + reason + ")"} }

func (t *table) add(r *row) *row {
	for len(r.cells) < len(t.cols) {
		r.cells = append(r.cells, text(""))
	}
	t.rows = append(t.rows, r)
	return r
}

// atMost and atLeast judge a sauna value against its target.
func atMost(c cell, limit float64, unit string) string {
	if !c.ok {
		return "missed (no value)"
	}
	if c.v <= limit {
		return "met"
	}
	if limit == 0 {
		return fmt.Sprintf("missed: %s %s", c.text, unit)
	}
	return fmt.Sprintf("missed by %s %s (%.0f%% over)", trim(c.v-limit), unit, 100*(c.v-limit)/limit)
}

func atLeast(c cell, limit float64, unit string) string {
	if !c.ok {
		return "missed (no value)"
	}
	if c.v >= limit {
		return "met"
	}
	return fmt.Sprintf("missed by %s %s (%.0f%% under)", trim(limit-c.v), unit, 100*(limit-c.v)/limit)
}

func ratio(x float64) string {
	if x >= 10 {
		return fmt.Sprintf("%.0fx", x)
	}
	return fmt.Sprintf("%.2fx", x)
}

func trim(v float64) string {
	switch {
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// ratios compares every sauna column of a row with every baseline column.
func (t *table) ratios(r *row) string {
	if r.noRatio {
		return ""
	}
	var parts []string
	for i, sc := range t.cols {
		if !strings.HasPrefix(sc, kindSauna) || !r.cells[i].ok {
			continue
		}
		for j, bc := range t.cols {
			if strings.HasPrefix(bc, kindSauna) || !r.cells[j].ok || r.cells[j].v == 0 {
				continue
			}
			name := "sauna"
			if sc != kindSauna {
				name = sc
			}
			parts = append(parts, fmt.Sprintf("%s is %s %s", name, ratio(r.cells[i].v/r.cells[j].v), bc))
		}
	}
	return strings.Join(parts, "; ")
}

func (rep *report) markdown() string {
	var b strings.Builder
	b.WriteString("# Benchmarks: sauna against KCL, harlow and a raw GetRecords loop\n\n")
	b.WriteString("Written by `scripts/bench.sh` (`bench/`, `go run . -out ../docs/benchmarks.md`); every run overwrites it. ")
	if rep.quick {
		b.WriteString("**This is a `-quick` smoke run: counts and limits are shrunk, the numbers are not comparable with a full run.** ")
	}
	b.WriteString("\n\n**Emulator numbers, not AWS.** Every consumer reads kinesalite and keeps leases in dynalite on this machine, " +
		"sharing its CPUs with the emulators and the harness. Kinesalite hands out about 20-26k records/s in all " +
		"and takes about 10k puts/s; AWS adds about 200 ms of propagation per poll and limits a shard to 5 GetRecords/s " +
		"and 2 MB/s. Compare the columns with each other; read absolute values as this machine's.\n\n")
	b.WriteString("## Environment\n\n")
	for _, l := range rep.environment {
		b.WriteString("- " + l + "\n")
	}
	b.WriteString("\n## Consumers\n\n" +
		"- **sauna**: the sauna CLI (`cli.Main`) built with the benchmark's probe responder (`bench/cmd/sauna-bench`), run as " +
		"`sauna run --config-dir DIR`; one KinesisObserverConfig 1-0-0 per stream with TRIM_HORIZON, maxRecords 10000, " +
		"CloudWatch off, `delivery.idempotency.enabled` as the scenario says and **every other setting at its schema default** " +
		"(shard sync 2000 ms, idle 250 ms, failover 10000 ms, maxInFlightPerShard 64, idempotency on). The probe waits " +
		"`delayMillis`, then reports.\n" +
		"- **kcl-defaults**: vmware-go-kcl-v2 v1.0.0 with its defaults (shard sync 60 s jittered 0.5-1.5x, idle 1000 ms, " +
		"failover 10 s) except TRIM_HORIZON; records handled one after the other, the batch's last record checkpointed. " +
		"Rebalance and rolling turn on its lease stealing and shorten its shard sync, as their method says, and name its " +
		"column `" + scaleKCLLabel + "`.\n" +
		"- **harlow-defaults**: harlow/kinesis-consumer v0.5.0 `Scan` with its defaults (in-memory store, no leases, a poll " +
		"every 250 ms, 10000 records per call) except TRIM_HORIZON.\n" +
		"- **raw**: one goroutine per shard, GetRecords with Limit 10000 back to back, 250 ms pause only after an empty " +
		"read: the ceiling of what the emulator hands out.\n\n" +
		"Every baseline parses the command JSON, sleeps the per-record delay (serially) and reports; sauna validates the " +
		"command against its schemas and dispatches it to the probe. Each consumer is its own process, started fresh " +
		"on a fresh stream and lease table for every measurement.\n\n")
	b.WriteString(freshMethod(rep.fresh, rep.restarts, rep.emptied) + "\n\n")
	for _, s := range rep.sections {
		fmt.Fprintf(&b, "## %s\n\n", s.title)
		if s.method != "" {
			b.WriteString(s.method + "\n\n")
		}
		if s.failed != "" {
			fmt.Fprintf(&b, "**Not measured:** %s\n\n", s.failed)
		}
		for _, t := range s.tables {
			t.markdown(&b)
		}
		for _, n := range s.notes {
			b.WriteString("- " + n + "\n")
		}
		if len(s.notes) > 0 {
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, "Run took %s. Consumer logs and configs of this run were kept in `%s`.\n",
		time.Since(rep.started).Round(time.Second), rep.logDir)
	return b.String()
}

// freshMethod says how every measurement got the same emulator state.
func freshMethod(mode string, restarts, emptied int) string {
	steady := "The exception is drain-steady, whose runs all read one preloaded stream: before each of its runs every " +
		"table of the run before (lease and outcome tables) is deleted and waited for until gone, the stream kept"
	if mode == "restarted" {
		if emptied > 0 {
			steady += fmt.Sprintf(" (%d times in this run)", emptied)
		}
		steady += "."
		return "**Every measurement starts on empty emulators.** Before every consumer's run and every scenario, the harness " +
			"stops kinesalite and dynalite and starts them again (`scripts/emulators/emulators.sh stop` and `start` in the " +
			"state dir `scripts/bench.sh` made, then the new endpoints from `emulators.sh env`; " +
			fmt.Sprintf("%d restarts in this run), ", restarts) +
			"so no run finds the streams, tables and items of the runs and scenarios before it, and every consumer is " +
			"measured on the same emulator state whatever the order; each run starts on emulator processes just started " +
			"(sauna's idempotency-on run in drain and drain-steady right after the dynalite ceiling measured on them, as " +
			"their method says). " +
			steady
	}
	return "**Every measurement starts on emptied emulators.** The harness was not given the emulators to restart " +
		"(`-emulators`, which `scripts/bench.sh` passes), so before every consumer's run and every scenario it deletes every " +
		fmt.Sprintf("stream and table it created and waits until they are gone (%d times in this run); ", emptied) +
		"the emulator processes, and what others put in them, stay. " + steady + "."
}

// markdown writes the table. The target columns appear only if a row has
// a target, the ratio column only if a row has a ratio: a column that
// could only hold dashes says nothing.
func (t *table) markdown(b *strings.Builder) {
	var hasTarget, hasRatio bool
	for _, r := range t.rows {
		hasTarget = hasTarget || r.target != ""
		hasRatio = hasRatio || t.ratios(r) != ""
	}
	head := append([]string{"metric"}, t.cols...)
	if hasTarget {
		head = append(head, "target", "sauna vs target")
	}
	if hasRatio {
		head = append(head, "sauna vs baselines")
	}
	b.WriteString("| " + strings.Join(head, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat("---|", len(head)) + "\n")
	for _, r := range t.rows {
		line := []string{r.metric}
		for _, c := range r.cells {
			line = append(line, c.text)
		}
		if hasTarget {
			tg, vd := r.target, r.verdict
			if tg == "" {
				tg, vd = "-", "-"
			}
			line = append(line, tg, orDash(vd))
		}
		if hasRatio {
			line = append(line, orDash(t.ratios(r)))
		}
		b.WriteString("| " + strings.Join(line, " | ") + " |\n")
	}
	b.WriteString("\n")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// environment describes the machine and the versions under test.
func environment(e *env) []string {
	goVersion := runtime.Version()
	if out, err := exec.Command("go", "version").Output(); err == nil {
		goVersion = strings.TrimSpace(string(out))
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	commit := "unknown"
	if out, err := exec.Command("git", "-C", "..", "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "-C", "..", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			commit += " plus uncommitted changes"
		}
	}
	kl, dl := npmVersions()
	return []string{
		"Date: " + time.Now().UTC().Format("2006-01-02 15:04 MST"),
		fmt.Sprintf("CPU: %s, %d cores (%s/%s)", cpuModel(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH),
		"Go: " + goVersion,
		"Kernel: " + strings.TrimSpace(string(kernel)),
		fmt.Sprintf("Emulators: kinesalite %s, dynalite %s (scripts/emulators/package-lock.json), in memory, on loopback", kl, dl),
		"sauna: commit " + commit,
		"Baselines: " + modVersion("github.com/vmware/vmware-go-kcl-v2") + ", " + modVersion("github.com/harlow/kinesis-consumer") +
			", aws-sdk-go-v2 " + strings.TrimPrefix(modVersion("github.com/aws/aws-sdk-go-v2"), "github.com/aws/aws-sdk-go-v2 "),
	}
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func npmVersions() (kinesalite, dynalite string) {
	kinesalite, dynalite = "unknown", "unknown"
	b, err := os.ReadFile(filepath.Join("..", "scripts", "emulators", "package-lock.json"))
	if err != nil {
		return
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if json.Unmarshal(b, &lock) != nil {
		return
	}
	if p, ok := lock.Packages["node_modules/kinesalite"]; ok {
		kinesalite = p.Version
	}
	if p, ok := lock.Packages["node_modules/dynalite"]; ok {
		dynalite = p.Version
	}
	return
}

// modVersion reads a requirement from bench/go.mod, so the report names what
// was really built.
func modVersion(path string) string {
	b, err := os.ReadFile("go.mod")
	if err != nil {
		return path + " (unknown version)"
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(l), "require "))
		if len(f) >= 2 && f[0] == path {
			return path + " " + f[1]
		}
	}
	return path + " (unknown version)"
}
