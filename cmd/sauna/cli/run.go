package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sauna-io/sauna/observer"
	"github.com/sauna-io/sauna/observer/admin"
	"github.com/sauna-io/sauna/observer/ingest"
	"github.com/sauna-io/sauna/observer/kinesis"
	"github.com/sauna-io/sauna/observer/metrics"
)

func runCmd(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "run", "", "Consume the stream of every enabled observer config in --config-dir and execute\neach command with its responder, and serve POST /v1/commands for every enabled\nHTTP ingest config. SIGINT or SIGTERM stops it within 20 s, checkpointing the\ncommands that finished.\n\nChanges to the config directory are applied while running, file by file;\nSIGHUP forces a full rescan of it.")
	dir := fs.String("config-dir", "", "directory of observer, responder and HTTP ingest config files (*.json, *.avro)")
	rescan := fs.Duration("rescan-interval", 30*time.Second, "period of the full rescan of --config-dir that catches changes file events miss (0 disables it)")
	quietPeriod := fs.Duration("reload-quiet", 500*time.Millisecond, "how long --config-dir must be still before changes are read")
	adminAddr := fs.String("admin-addr", admin.DefaultAddr, "listen address of the admin endpoints: /metrics, /healthz, /readyz, /status, POST /pause and /resume (GET endpoints are unauthenticated: keep it on loopback or a private network; empty disables them)")
	adminTokenFile := fs.String("admin-token-file", "", "file holding the bearer token POST /pause and /resume require; required when --admin-addr is not loopback")
	var lf logFlags
	lf.register(fs)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if *dir == "" || fs.NArg() > 0 {
		return usageError(fs, "--config-dir DIR is required and no arguments are taken")
	}
	if *rescan < 0 || *quietPeriod < 0 {
		fmt.Fprintln(env.stderr, "sauna run: --rescan-interval and --reload-quiet must not be negative")
		return 2
	}
	log, err := lf.logger(env.stderr)
	if err != nil {
		fmt.Fprintln(env.stderr, "sauna run:", err)
		return 2
	}
	adminToken, err := adminTokenOf(*adminAddr, *adminTokenFile)
	if err != nil {
		fmt.Fprintln(env.stderr, "sauna run:", err)
		return 2
	}
	// Registered before anything starts: SIGHUP's default action would end
	// the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	bi := readBuildInfo()
	log.Info("sauna starting", "version", bi.version, "revision", bi.revision, "config_dir", *dir)
	met := metrics.New(metrics.Options{})
	met.RegisterRuntime()
	gate := admin.NewGate()
	met.ObservePaused(gate.Paused)
	opts := observer.Options{
		Logger:         log,
		RescanInterval: orOff(*rescan),
		QuietPeriod:    orOff(*quietPeriod),
		Reload:         hup,
		Observer:       kinesis.Options{Metrics: met, Gate: gate},
		Ingest:         ingest.Options{Metrics: ingest.NewMetrics(met.Registry())},
	}
	sup := observer.NewSupervisor(opts)
	status := daemonStatus{sup: sup, met: met}
	met.ObserveReloads(status.reloadStats)
	if *adminAddr != "" {
		srv, err := admin.Listen(*adminAddr, admin.NewHandler(admin.Options{
			Status: status, Pauser: gate, Metrics: met.Handler(), Secrets: status.secrets, Logger: log,
			Addr: *adminAddr, Token: adminToken, NotReady: sup.IngestNotReady,
		}))
		if err != nil {
			log.Error("sauna cannot run", "err", err)
			return 1
		}
		log.Info("admin endpoints listening", "addr", srv.Addr().String(), "pause_needs_token", adminToken != "")
		if !admin.IsLoopback(*adminAddr) {
			log.Warn("admin endpoints listen beyond loopback: /status and /metrics are readable by anyone who reaches them", "addr", srv.Addr().String())
		}
		// The endpoints outlive the signal: probes and scrapes keep working
		// while the observers drain.
		adminCtx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
		served := make(chan struct{})
		go func() {
			defer close(served)
			if err := srv.Serve(adminCtx); err != nil {
				log.Error("admin endpoints stopped", "err", err)
			}
		}()
		defer func() {
			stopAdmin()
			<-served
		}()
	}
	if err := sup.Run(ctx, *dir); err != nil {
		log.Error("sauna cannot run", "err", err)
		return 1
	}
	log.Info("sauna stopped")
	return 0
}

// orOff maps a flag's 0 ("none") to the negative value Options uses for it,
// since Options reads 0 as "default".
func orOff(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
