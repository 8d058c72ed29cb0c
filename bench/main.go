// Command bench compares sauna with plain users of vmware-go-kcl-v2 and
// harlow/kinesis-consumer, and with a raw GetRecords loop, on local Kinesis
// and DynamoDB emulators. Every consumer is its own OS process reporting each
// delivery to a TCP sink in this process; the harness writes a markdown
// report. See README.md; scripts/bench.sh runs it with fresh emulators.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// scenarioNames in report order.
var scenarioNames = []string{"startup", "latency", "drain", "drain-steady", "slow", "failover", "pipeline", "rss", "ingest", "replay", "rebalance", "rolling", "ddb-cost"}

func main() {
	if err := run(); err != nil {
		log.Printf("bench: %v", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		out       = flag.String("out", "../docs/benchmarks.md", "markdown report to write (overwritten)")
		scenarios = flag.String("scenarios", strings.Join(scenarioNames, ","), "comma-separated subset of: "+strings.Join(scenarioNames, ", "))
		quick     = flag.Bool("quick", false, "smaller counts and shorter limits, for a smoke run")
		consumers = flag.String("consumers", strings.Join(kinds, ","), "comma-separated subset of: "+strings.Join(kinds, ", "))
		nOutcomes = flag.Int("outcomes", 0, "items in the replay scenario's outcome table (default 100000, 5000 with -quick)")
		emulators = flag.String("emulators", "", "scripts/emulators/emulators.sh that started the emulators under $EMULATORS_DIR: "+
			"restart them before every measurement (scripts/bench.sh sets it); without it, every stream and table the harness "+
			"created is deleted instead")
		cpuProf   = flag.String("sauna-cpuprofile", "", "directory to write a CPU profile of each sauna run into (<run id>.pprof, its first 15 s, or SAUNA_BENCH_CPUPROFILE_SECONDS: a run that ends sooner leaves an empty file)")
		saunaIdem = flag.String("sauna-idempotency", "both", "sauna's runs in scenarios that run it with idempotency off and on: both, off or on")
	)
	flag.Parse()
	log.SetFlags(log.Ltime)
	log.SetOutput(os.Stderr)

	want, err := pick(*scenarios, scenarioNames, "-scenarios")
	if err != nil {
		return err
	}
	kindsWanted, err := pick(*consumers, kinds, "-consumers")
	if err != nil {
		return err
	}

	kinURL, err := loopbackEnv("AWS_ENDPOINT_URL_KINESIS", "SAUNA_TEST_KINESIS_ENDPOINT")
	if err != nil {
		return err
	}
	ddbURL, err := loopbackEnv("AWS_ENDPOINT_URL_DYNAMODB", "SAUNA_TEST_DYNAMODB_ENDPOINT")
	if err != nil {
		return err
	}

	if *emulators != "" && os.Getenv("EMULATORS_DIR") == "" {
		return errors.New("-emulators needs EMULATORS_DIR, the state dir the emulators were started with")
	}

	// A second signal falls through to the default action and ends the
	// process at once; the children die with it (Pdeathsig).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	e, err := newEnv(ctx, kinURL, ddbURL, *emulators, *quick, kindsWanted)
	if err != nil {
		return err
	}
	e.outcomes = *nOutcomes
	e.cpuProfiles = *cpuProf
	switch *saunaIdem {
	case "both", "off", "on":
		e.saunaIdem = *saunaIdem
	default:
		return fmt.Errorf("-sauna-idempotency: %q is not both, off or on", *saunaIdem)
	}
	defer e.close()

	rep := &report{quick: *quick, started: time.Now()}
	rep.environment = environment(e)
	for _, name := range scenarioNames {
		if !slices.Contains(want, name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		log.Printf("=== scenario %s", name)
		err := e.fresh(ctx)
		var sec *section
		if err == nil {
			sec, err = scenarioFuncs[name](ctx, e)
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			log.Printf("scenario %s failed: %v", name, err)
			sec = &section{name: name, title: name, failed: err.Error()}
		}
		rep.sections = append(rep.sections, sec)
	}
	if ctx.Err() != nil {
		return errors.New("interrupted; no report written")
	}
	rep.logDir = e.tmp
	rep.fresh, rep.restarts, rep.emptied = e.freshMode(), e.restarts, e.emptied
	if err := os.WriteFile(*out, []byte(rep.markdown()), 0o644); err != nil {
		return err
	}
	log.Printf("report written to %s", *out)
	if e.emulators == "" {
		// Leave emulators the harness did not start as it found them.
		if err := e.fresh(ctx); err != nil {
			log.Printf("bench: %v", err)
		}
	}
	return nil
}

var scenarioFuncs = map[string]func(context.Context, *env) (*section, error){
	"startup":      scenarioStartup,
	"latency":      scenarioLatency,
	"drain":        scenarioDrain,
	"drain-steady": scenarioDrainSteady,
	"slow":         scenarioSlow,
	"failover":     scenarioFailover,
	"pipeline":     scenarioPipeline,
	"rss":          scenarioRSS,
	"ingest":       scenarioIngest,
	"replay":       scenarioReplay,
	"rebalance":    scenarioRebalance,
	"rolling":      scenarioRolling,
	"ddb-cost":     scenarioDDBCost,
}

func pick(list string, all []string, flagName string) ([]string, error) {
	var out []string
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !slices.Contains(all, s) {
			return nil, fmt.Errorf("%s: unknown %q (want some of %s)", flagName, s, strings.Join(all, ", "))
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: empty", flagName)
	}
	return out, nil
}

// loopbackEnv returns the first variable set and refuses anything but a
// loopback address: the harness creates streams and tables and must never
// reach real AWS.
func loopbackEnv(names ...string) (string, error) {
	for _, n := range names {
		raw := strings.TrimSpace(os.Getenv(n))
		if raw == "" {
			continue
		}
		if err := loopbackURL(n, raw); err != nil {
			return "", err
		}
		return raw, nil
	}
	return "", fmt.Errorf("%s not set: start the emulators and eval \"$(scripts/emulators/emulators.sh env)\", or use scripts/bench.sh", names[0])
}

// loopbackURL refuses an endpoint (named by the variable it came from)
// that is not on loopback.
func loopbackURL(name, raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s=%s is not a loopback address; the benchmark only talks to local emulators", name, raw)
	}
	return nil
}
