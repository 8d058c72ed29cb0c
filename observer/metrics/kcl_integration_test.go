package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	kclcfg "github.com/vmware/vmware-go-kcl-v2/clientlibrary/config"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/worker"
	kcllog "github.com/vmware/vmware-go-kcl-v2/logger"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/kinesis/leases"
)

// countingProcessor checkpoints every batch and counts its records.
type countingProcessor struct{ n *atomic.Int64 }

func (p countingProcessor) Initialize(*kcl.InitializationInput) {}

func (p countingProcessor) ProcessRecords(in *kcl.ProcessRecordsInput) {
	p.n.Add(int64(len(in.Records)))
	if len(in.Records) > 0 {
		_ = in.Checkpointer.Checkpoint(in.Records[len(in.Records)-1].SequenceNumber)
	}
}

func (p countingProcessor) Shutdown(in *kcl.ShutdownInput) {
	if in.ShutdownReason == kcl.TERMINATE {
		_ = in.Checkpointer.Checkpoint(nil)
	}
}

// quietLogger drops the KCL's own log lines.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...any)                    {}
func (quietLogger) Infof(string, ...any)                     {}
func (quietLogger) Warnf(string, ...any)                     {}
func (quietLogger) Errorf(string, ...any)                    {}
func (quietLogger) Fatalf(string, ...any)                    {}
func (quietLogger) Panicf(string, ...any)                    {}
func (l quietLogger) WithFields(kcllog.Fields) kcllog.Logger { return l }

type countingFactory struct{ n *atomic.Int64 }

func (f countingFactory) CreateProcessor() kcl.IRecordProcessor { return countingProcessor(f) }

// TestKCLWorkerDrivesTheAdapter runs a real KCL worker against kinesalite
// and dynalite with the adapter as its MonitoringService, and checks that
// what the library reports lands in the series and the observer state.
func TestKCLWorkerDrivesTheAdapter(t *testing.T) {
	env := emulator.Require(t)
	stream := env.NewStream(t, "s", 2)
	table := emulator.UniqueName(t, "t")
	const records = 30
	recs := make([]emulator.Record, records)
	for i := range recs {
		recs[i] = emulator.Record{PartitionKey: fmt.Sprintf("pk-%d", i), Data: []byte(fmt.Sprintf("record %02d", i))}
	}
	env.PutRecords(t, stream, recs)

	db, kin := env.DynamoDB(t), env.Kinesis(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})
	log := slog.New(slog.DiscardHandler)
	workerID := "test-host:" + table
	// One worker that must gain each lease exactly once: the lease outlasts
	// any stall of its renewals, which would otherwise let it lapse and be
	// gained again.
	tbl := leases.New(db, kin, leases.Config{TableName: table, StreamName: stream, WorkerID: workerID,
		LeaseDuration: 30 * time.Second, CallTimeout: 5 * time.Second, Logger: log})
	if err := tbl.Init(); err != nil {
		t.Fatal(err)
	}

	m := New(Options{})
	o := m.Observer(table, stream, ObserverOptions{})
	mon := o.NewKCL()
	cfg := kclcfg.NewKinesisClientLibConfig(table, stream, emulator.Region, workerID).
		WithTableName(table).
		WithInitialPositionInStream(kclcfg.TRIM_HORIZON).
		WithShardSyncIntervalMillis(300).
		WithIdleTimeBetweenReadsInMillis(250).
		WithFailoverTimeMillis(30000).
		WithLeaseRefreshWaitTime(1000).
		WithMonitoringService(mon).
		WithLogger(quietLogger{})
	var n atomic.Int64
	w := worker.NewWorker(countingFactory{n: &n}, cfg).WithKinesis(kin).WithCheckpointer(tbl)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		done := make(chan struct{})
		go func() {
			defer close(done)
			w.Shutdown()
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("worker did not shut down in 20 s")
		}
	}
	t.Cleanup(stop)

	reg := m.Registry()
	total := func() float64 {
		sum := 0.0
		for _, s := range o.State().Shards {
			v, _ := sample(t, reg, "sauna_kinesis_records_total", shardLabels(table, stream, s.ID))
			sum += v
		}
		return sum
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := o.State()
		polledAll := len(st.Shards) == 2
		for _, s := range st.Shards {
			polledAll = polledAll && !s.LastPollAt.IsZero()
		}
		if polledAll && n.Load() == records && total() == records {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: processed %d, counted %v, state %+v", n.Load(), total(), st)
		}
		time.Sleep(50 * time.Millisecond)
	}

	st := o.State()
	if !st.Running || st.WorkerID != workerID {
		t.Errorf("state: running %v, worker %q", st.Running, st.WorkerID)
	}
	obs := map[string]string{LabelObserver: table, LabelStream: stream}
	if got := mustSample(t, reg, "sauna_kinesis_leases_held", obs); got != 2 {
		t.Errorf("leases held %v, want 2", got)
	}
	if got := mustSample(t, reg, "sauna_observer_running", obs); got != 1 {
		t.Errorf("running %v, want 1", got)
	}
	for _, s := range st.Shards {
		l := shardLabels(table, stream, s.ID)
		if got := mustSample(t, reg, "sauna_kinesis_leases_gained_total", l); got != 1 {
			t.Errorf("%s: leases gained %v, want 1", s.ID, got)
		}
		if got := mustSample(t, reg, "sauna_kinesis_get_records_duration_seconds", l); got < 1 {
			t.Errorf("%s: no GetRecords timing", s.ID)
		}
		if _, ok := sample(t, reg, "sauna_kinesis_millis_behind_latest", l); !ok {
			t.Errorf("%s: no millis behind latest", s.ID)
		}
	}

	stop()
	st = o.State()
	if st.Running || len(st.Shards) != 0 {
		t.Errorf("after shutdown: running %v, shards %+v", st.Running, st.Shards)
	}
	if got := mustSample(t, reg, "sauna_kinesis_leases_held", obs); got != 0 {
		t.Errorf("leases held after shutdown %v, want 0", got)
	}
}
