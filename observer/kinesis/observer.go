// Package kinesis runs one Sauna Kinesis observer: a KCL worker whose
// DynamoDB lease table is named after the observer id, and a shard processor
// that admits each shard's records (decoded a chunk at a time; with
// idempotency on, after checking the chunk's commands in the outcome table
// with one request), keeps their
// per-partition-key order (the next command of a key starts once the
// previous one's effect is final; their outcomes are recorded in order),
// fences them on the shard lease and checkpoints what is done and
// recorded; each record's command is run by observer/command, with the
// observer's memory of commands in flight and its outcome batcher. It adds the guards the KCL library
// needs to neither lose nor repeat work (fenced checkpoints, bounded calls,
// bounded shutdown and handover).
package kinesis

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"
	kclcfg "github.com/vmware/vmware-go-kcl-v2/clientlibrary/config"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/metrics"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/worker"

	"github.com/sauna-io/sauna/observer/command"
	"github.com/sauna-io/sauna/observer/deadletter"
	"github.com/sauna-io/sauna/observer/kinesis/leases"
	saunametrics "github.com/sauna-io/sauna/observer/metrics"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/responders"
)

// Options tune an observer's process-level behaviour.
type Options struct {
	Logger *slog.Logger
	// OnOutcome, if set, is called once per record with its final outcome.
	// It must not block.
	OnOutcome func(command.Outcome)
	// Gate, if set, holds intake while it is paused (maintenance): records
	// already admitted still finish and are checkpointed. Paused is asked
	// per record and must be cheap; Wait blocks until the gate reopens.
	Gate interface {
		Paused() bool
		Wait(ctx context.Context) error
	}
	// OnCorruptAggregate, if set, is told of every KPL aggregate record that
	// could not be decoded (the record is rejected, not lost).
	OnCorruptAggregate func(shard, firstSeq, lastSeq string)
	// Monitoring receives the KCL's own metrics instead of the adapter
	// Metrics provides (nil: that adapter, or none without Metrics).
	Monitoring metrics.MonitoringService
	// Metrics, if set, receives every run's metrics and status: the KCL's,
	// commands by outcome, responder attempts, in-flight commands. The
	// config's CloudWatch sink publishes them too.
	Metrics *saunametrics.Metrics
	// CheckpointInterval is the least time between two checkpoint writes of
	// a shard while records flow (default 1 s); final checkpoints are
	// written at once.
	CheckpointInterval time.Duration
	// DrainTimeout is how long in-flight commands may finish after a stop,
	// or before a shard is handed over, before they are cancelled (default
	// 10 s).
	DrainTimeout time.Duration
	// ShutdownTimeout bounds the whole stop, KCL included (default 15 s).
	ShutdownTimeout time.Duration
}

// Observer consumes one stream. Run it once; build a new one to restart.
type Observer struct {
	cfg      Config
	dispatch *responders.Dispatcher
	opts     Options
	log      *slog.Logger
	workerID string

	table *leases.Table
	// lost reports the loss of a shard's lease (the lease table's Lost).
	lost func(shardID string) <-chan struct{}
	// leaseUntil is when the lease on a shard runs out by our own clock
	// (zero: not held; the lease table's HeldUntil).
	leaseUntil func(shardID string) time.Time
	// handoff reports a peer's request for a shard's lease (nil: never),
	// and handOver gives the lease to it after the final checkpoint.
	handoff  func(shardID string) <-chan struct{}
	handOver func(shardID string) error
	// abandon releases the lease on a shard whose consumer stopped short
	// at the record at seq, and says when this worker takes the shard
	// again (the lease table's Abandon); nil: the observer restarts
	// instead.
	abandon func(shardID, seq string) (retakeIn time.Duration, err error)
	// previousLeaseEnd is when the lease before this worker's on a shard
	// ended (the lease table's PreviousLeaseEnd); nil: every command takes
	// a claim.
	previousLeaseEnd func(shardID string) time.Time
	// ledger is the idempotency ledger (nil: the outcomes table is off);
	// deadLetters the dead-letter stream (nil: none).
	ledger      command.Ledger
	deadLetters command.DeadLetters
	// memory and batcher serve every shard's commands when the ledger is
	// on: the commands in flight and recorded lately, and the writer of
	// the outcomes of commands run without a claim.
	memory  *command.Memory
	batcher *command.Batcher
	// budget follows the KCL's read budget of each shard (nil: not
	// followed), for the processor to hold a read the KCL would refuse.
	budget      *readBudget
	stopBatcher sync.Once
	inFlight    atomic.Int64
	// met is this run's metrics handle (nil without Options.Metrics), and
	// stopSink ends its CloudWatch sink after a last flush.
	met      *saunametrics.Observer
	stopSink func()
	// fatal carries the first failure that needs a fresh worker.
	fatal chan error
	// intake ends when the observer stops taking new work; hard ends when
	// in-flight work must be abandoned.
	intake context.Context
	hard   context.Context
}

// New prepares an observer; it does no I/O.
func New(cfg Config, d *responders.Dispatcher, opts Options) *Observer {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 10 * time.Second
	}
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = time.Second
	}
	if opts.ShutdownTimeout <= opts.DrainTimeout {
		opts.ShutdownTimeout = opts.DrainTimeout + 5*time.Second
	}
	host, _ := os.Hostname()
	return &Observer{
		cfg:      cfg,
		dispatch: d,
		opts:     opts,
		log:      opts.Logger.With("observer", cfg.ID, "stream", cfg.StreamName),
		workerID: host + ":" + rand.Text(),
		fatal:    make(chan error, 1),
	}
}

// Config returns the observer's configuration.
func (o *Observer) Config() Config { return o.cfg }

// commandRunner is what runs the commands of one shard: the observer's
// dispatcher, ledger, dead-letter stream and metrics, under the shard's
// lease and contexts.
func (o *Observer) commandRunner(shard string, lease command.Lease, intake, hard, hardOrLost context.Context, log *slog.Logger) command.Runner {
	return command.Runner{
		Observer: o.cfg.ID, Stream: o.cfg.StreamName, Shard: shard,
		Dispatcher: o.dispatch,
		Ledger:     o.ledger,
		Memory:     o.memory, Batcher: o.batcher,
		ClaimTimeout: o.cfg.Idempotency.ClaimTimeout,
		DeadLetters:  o.deadLetters, DeadLetterStream: o.cfg.DeadLetterStream,
		RetryBudget: o.cfg.RetryBudget,
		Lease:       lease,
		Intake:      intake, Hard: hard, HardOrLost: hardOrLost,
		Log:       log,
		Attempted: o.countAttempt,
		Settled:   o.report,
	}
}

func (o *Observer) report(out command.Outcome) {
	o.countOutcome(out)
	if o.opts.OnOutcome != nil {
		o.opts.OnOutcome(out)
	}
}

// held reports whether this worker still holds the lease on shardID by its
// own clock. A worker that was frozen (a paused VM, SIGSTOP) wakes with its
// leases possibly taken over before any renewal can tell it: checkpoints
// are written only while held, commands start only before the lease's fence
// (shardProcessor.fence).
func (o *Observer) held(shardID string) bool { return time.Now().Before(o.leaseUntil(shardID)) }

// fail stops the observer so that a new worker re-reads from the last
// checkpoint; only the first failure is kept.
func (o *Observer) fail(err error) {
	select {
	case o.fatal <- err:
	default:
	}
}

// ErrStopped is returned by Run when the observer stopped on its own because
// its worker failed; the caller may start a new one.
var ErrStopped = errors.New("observer stopped")

// Run consumes the stream until ctx ends, then stops within the shutdown
// timeout, checkpointing what is done. It returns nil after a requested stop,
// and an error when the observer could not start or its worker failed.
func (o *Observer) Run(ctx context.Context) error {
	awsCfg, err := LoadAWS(ctx, o.cfg.Region, o.cfg.AccessKeyID, o.cfg.SecretAccessKey)
	if err != nil {
		err = fmt.Errorf("observer %s: aws config: %w", o.cfg.ID, err)
		o.openMetrics(ctx, nil)
	} else {
		o.openMetrics(ctx, &awsCfg)
		err = o.run(ctx, awsCfg)
	}
	o.closeMetrics(ctx, err)
	return err
}

func (o *Observer) run(ctx context.Context, awsCfg aws.Config) error {
	guard := newAggregateGuard(o.log, o.opts.OnCorruptAggregate)
	o.budget = newReadBudget()
	guard.budget = o.budget
	stopping := make(chan struct{})
	// A fresh census scan tells whether back-to-back passes would race a
	// peer for leases the balancing shares out (syncPacer).
	pacer := newSyncPacer(o.cfg.ShardSyncInterval, stopping, func(ctx context.Context) bool {
		return o.table.Refresh(ctx) == nil && o.table.Alone()
	})
	// The KCL's client carries the pacer; ours (lineage checks, dead
	// letters) must never wait on it.
	kclKin := kds.NewFromConfig(awsCfg, func(opt *kds.Options) {
		opt.APIOptions = append(opt.APIOptions, guard.apply, pacer.apply)
		withRecordsProtocol(opt)
	})
	kin := kds.NewFromConfig(awsCfg)
	o.table = leases.New(NewDynamoDBClient(awsCfg), kin, leases.Config{
		TableName:     o.cfg.ID,
		StreamName:    o.cfg.StreamName,
		WorkerID:      o.workerID,
		LeaseDuration: o.cfg.LeaseDuration,
		Logger:        o.log,
		OnAvailable:   pacer.wake,
		OnAcquired:    pacer.acquired,
		Balance:       o.cfg.ScaleOut.Balance,
		MaxLeases:     o.cfg.ScaleOut.MaxLeasesPerWorker,
		TakesPerPass:  o.cfg.ScaleOut.TakesPerPass,
		OnHandoff:     o.countHandoff,
		// A shard whose record keeps stopping is taken back by this worker
		// after a pass or so at first, then ever later.
		RetakeBackoff: o.cfg.ShardSyncInterval,
	})
	o.lost, o.leaseUntil = o.table.Lost, o.table.HeldUntil
	o.handoff, o.handOver = o.table.HandoffRequested, o.table.HandOver
	o.abandon = o.table.Abandon
	o.previousLeaseEnd = o.table.PreviousLeaseEnd
	// The outcome table is made ready while the lease table is: neither
	// needs the other, and the first pass needs both.
	var ledger *outcomes.Table
	var ledgerErr error
	ledgerDone := make(chan struct{})
	if c := o.cfg.Idempotency; c.Enabled {
		ledger = outcomes.New(NewDynamoDBClient(awsCfg), outcomes.Config{
			TableName:    c.TableName,
			Observer:     o.cfg.ID,
			WorkerID:     o.workerID,
			Retention:    c.Retention,
			ClaimTimeout: c.ClaimTimeout,
			Logger:       o.log,
			OnConflict:   o.conflict,
		})
		initCtx, cancelInit := context.WithCancel(ctx)
		go func() {
			defer close(ledgerDone)
			ledgerErr = ledger.Init(initCtx)
		}()
		// A return on a lease table error must not leave the call running.
		defer func() {
			cancelInit()
			<-ledgerDone
		}()
	}
	if err := o.table.Init(); err != nil {
		return fmt.Errorf("observer %s: lease table: %w", o.cfg.ID, err)
	}
	// In the census before the first pass, so that peers count this worker
	// and this worker knows its share before it takes anything.
	if err := o.table.Heartbeat(); err != nil {
		return fmt.Errorf("observer %s: lease table: %w", o.cfg.ID, err)
	}
	if err := o.table.Refresh(ctx); err != nil && ctx.Err() == nil {
		o.log.Warn("first lease table scan failed; the balancer retries", "err", err)
	}
	balCtx, stopBalancer := context.WithCancel(context.WithoutCancel(ctx))
	balDone := make(chan struct{})
	go func() {
		defer close(balDone)
		o.table.RunBalancer(balCtx, pacer.wake, o.showLeases)
	}()
	leave := func() {
		stopBalancer()
		<-balDone
		o.table.Leave()
	}
	defer func() {
		select {
		case <-balDone:
		default:
			leave()
		}
	}()
	if ledger != nil {
		<-ledgerDone
		if err := ledgerErr; err != nil {
			return fmt.Errorf("observer %s: command table: %w", o.cfg.ID, err)
		}
		o.ledger = ledger
		o.memory = command.NewMemory()
		o.batcher = command.NewBatcher(ledger, o.log)
		o.batcher.Start()
		// Stopped by stop once the shards have drained; this covers the
		// returns before.
		defer o.stopOutcomes(0)
	}
	if s := o.cfg.DeadLetterStream; s != "" {
		o.deadLetters = deadletter.NewWriter(kin, s, o.log)
	}

	intake, stopIntake := context.WithCancel(context.WithoutCancel(ctx))
	hard, stopHard := context.WithCancel(context.WithoutCancel(ctx))
	defer stopIntake()
	defer stopHard()
	o.intake, o.hard = intake, hard

	routeLogrus(o.opts.Logger)
	defer registerWorker(o.workerID, o.log)()
	kcfg := o.kclConfig(&kclLogger{log: o.log, fatal: o.fail})
	w := worker.NewWorker(&processorFactory{o: o}, kcfg).WithKinesis(kclKin).WithCheckpointer(o.table)
	if err := w.Start(); err != nil {
		return fmt.Errorf("observer %s: start worker: %w", o.cfg.ID, err)
	}
	o.log.Info("observer started", "worker", o.workerID, "lease_table", o.cfg.ID, "initial_position", o.cfg.InitialPosition)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-o.fatal:
		runErr = fmt.Errorf("%w: %v", ErrStopped, err)
	}
	close(stopping)
	// Out of the census first: the leases released from here go to peers.
	leave()
	o.stop(w, stopIntake, stopHard)
	return runErr
}

// stop ends intake at once, lets in-flight commands finish for the drain
// timeout, and gives the KCL's own shutdown (final checkpoints, lease
// release) what is left of the shutdown timeout. Worker.Shutdown can block
// for ever on a hung call, so it is abandoned at the deadline: the leases then
// expire on their own and nothing beyond the last checkpoint is lost.
func (o *Observer) stop(w *worker.Worker, stopIntake, stopHard context.CancelFunc) {
	start := time.Now()
	stopIntake()
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Shutdown()
	}()
	drain := time.NewTimer(o.opts.DrainTimeout)
	defer drain.Stop()
	deadline := time.NewTimer(o.opts.ShutdownTimeout)
	defer deadline.Stop()
	for {
		select {
		case <-done:
			stopHard()
			// The runs have ended: what they queued is written within
			// what is left of the shutdown timeout.
			o.stopOutcomes(o.opts.ShutdownTimeout - time.Since(start))
			o.log.Info("observer stopped", "took", time.Since(start).Round(time.Millisecond))
			return
		case <-drain.C:
			o.log.Warn("in-flight commands did not finish in time; cancelling them", "drain_timeout", o.opts.DrainTimeout)
			stopHard()
		case <-deadline.C:
			stopHard()
			o.stopOutcomes(0)
			o.log.Error("worker did not stop in time; abandoning it (its leases expire on their own)", "shutdown_timeout", o.opts.ShutdownTimeout)
			return
		}
	}
}

// stopOutcomes stops the outcome batcher, giving the writes queued and in
// flight up to within to finish; a second call does nothing.
func (o *Observer) stopOutcomes(within time.Duration) {
	if o.batcher == nil {
		return
	}
	o.stopBatcher.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), max(within, 0))
		defer cancel()
		o.batcher.Stop(ctx)
	})
}

// kclIdleMillis is the KCL's sleep after an empty read; its setter refuses 0.
const kclIdleMillis = 1

func (o *Observer) kclConfig(log *kclLogger) *kclcfg.KinesisClientLibConfiguration {
	c := o.cfg
	k := kclcfg.NewKinesisClientLibConfig(c.ID, c.StreamName, c.Region, o.workerID).
		WithTableName(c.ID).
		WithMaxRecords(c.MaxRecords).
		// syncPacer alone decides when a pass starts: at once after a
		// lease taken by a worker alone, fast while there are leases to
		// take, ShardSyncInterval once the worker is settled.
		WithShardSyncIntervalMillis(kclSyncMillis).
		// The processor paces reads itself (shardProcessor.pace); the
		// KCL's own idle sleep would only add to the latency.
		WithIdleTimeBetweenReadsInMillis(kclIdleMillis).
		WithFailoverTimeMillis(int(c.LeaseDuration.Milliseconds())).
		WithLeaseRefreshWaitTime(int(c.LeaseRefresh.Milliseconds())).
		WithMaxRetryCount(20).
		// The lease table enforces the share; the KCL's cap must not be lower.
		WithMaxLeasesForWorker(maxLeases(c.ScaleOut.MaxLeasesPerWorker)).
		// Empty batches give the processor a regular chance to write the
		// checkpoint of commands that finished after their batch was handed
		// over.
		WithCallProcessRecordsEvenForEmptyRecordList(true).
		WithLogger(log)
	switch {
	case o.opts.Monitoring != nil:
		k.WithMonitoringService(o.opts.Monitoring)
	case o.met != nil:
		// A fresh adapter per worker: a worker abandoned at a stop cannot
		// then touch the next one's state.
		k.WithMonitoringService(o.met.NewKCL())
	}
	k.ParentShardPollIntervalMillis = int(c.ParentShardPoll.Milliseconds())
	switch c.InitialPosition {
	case PositionTrimHorizon:
		k.WithInitialPositionInStream(kclcfg.TRIM_HORIZON)
	case PositionAtTimestamp:
		ts := c.Timestamp
		k.WithTimestampAtInitialPositionInStream(&ts)
	case PositionLatest:
		// The KCL takes LATEST when it acquires a shard, so records written
		// between a reshard (or any restart before a first checkpoint) and the
		// pickup would be skipped. The observer's first start, recorded once in
		// the lease table, is a persisted "now" that means the same for every
		// shard and every restart.
		ts := o.table.Started()
		k.WithTimestampAtInitialPositionInStream(&ts)
	}
	return k
}

func maxLeases(n int) int {
	if n <= 0 {
		return 32767 // the KCL's own default
	}
	return n
}

type processorFactory struct{ o *Observer }

func (f *processorFactory) CreateProcessor() kcl.IRecordProcessor {
	return newShardProcessor(f.o)
}
