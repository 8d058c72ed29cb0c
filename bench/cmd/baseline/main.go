// Command baseline is the consumer the benchmark compares sauna with, written
// the way a user of each library would write it, with the library's defaults
// (for the KCL, -steal and -shard-sync change two of them where a scenario
// says so):
//
//	-kind kcl     vmware-go-kcl-v2 v1.0.0 (leases and checkpoints in DynamoDB)
//	-kind harlow  harlow/kinesis-consumer v0.5.0 (in-memory store, no leases)
//	-kind raw     one goroutine per shard calling GetRecords back to back: the
//	              ceiling of what the emulator can hand out
//
// Each record is a sauna command: it is parsed, held for -delay (serially,
// as a KCL user would), and reported to the harness's sink.
//
// Endpoints come from AWS_ENDPOINT_URL_KINESIS and AWS_ENDPOINT_URL_DYNAMODB
// and must be loopback addresses. SIGINT/SIGTERM stop it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	consumer "github.com/harlow/kinesis-consumer"
	"github.com/sirupsen/logrus"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	kclcfg "github.com/vmware/vmware-go-kcl-v2/clientlibrary/config"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/worker"

	"github.com/sauna-io/sauna/bench/sink"
)

const region = "us-east-1"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		kind      = flag.String("kind", "", "kcl, harlow or raw")
		stream    = flag.String("stream", "", "stream to consume")
		app       = flag.String("app", "", "KCL application name (lease table); kcl only")
		id        = flag.String("id", "", "consumer id in the sink reports (and the KCL worker id)")
		sinkAddr  = flag.String("sink", "", "host:port of the harness's sink")
		delay     = flag.Duration("delay", 0, "time each record takes, slept serially")
		steal     = flag.Bool("steal", false, "kcl: turn on lease stealing (EnableLeaseStealing)")
		shardSync = flag.Duration("shard-sync", 0, "kcl: ShardSyncIntervalMillis, whole milliseconds; 0 keeps the library's default (60 s)")
	)
	flag.Parse()
	if *stream == "" || *id == "" || *sinkAddr == "" {
		return errors.New("-stream, -id and -sink are required")
	}
	// The library panics on a value that is not positive; refuse it here.
	if *shardSync < 0 || *shardSync%time.Millisecond != 0 {
		return fmt.Errorf("-shard-sync: want 0 or a positive whole number of milliseconds, got %s", *shardSync)
	}
	kinURL, err := loopbackEnv("AWS_ENDPOINT_URL_KINESIS")
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	out := sink.NewWriter(*sinkAddr, *id)
	defer out.Close()
	h := &handler{out: out, delay: *delay, stopping: ctx}

	awsCfg := aws.Config{
		Region:      region,
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}
	kin := kinesis.NewFromConfig(awsCfg, func(o *kinesis.Options) { o.BaseEndpoint = aws.String(kinURL) })

	switch *kind {
	case "kcl":
		ddbURL, err := loopbackEnv("AWS_ENDPOINT_URL_DYNAMODB")
		if err != nil {
			return err
		}
		if *app == "" {
			return errors.New("-app is required with -kind kcl")
		}
		ddb := dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) { o.BaseEndpoint = aws.String(ddbURL) })
		return runKCL(ctx, kin, ddb, awsCfg.Credentials, kclOpts{app: *app, stream: *stream, id: *id, steal: *steal, shardSync: *shardSync}, h)
	case "harlow":
		return runHarlow(ctx, kin, *stream, h)
	case "raw":
		return runRaw(ctx, kin, *stream, h)
	default:
		return fmt.Errorf("-kind: want kcl, harlow or raw, got %q", *kind)
	}
}

// loopbackEnv refuses anything but an emulator on this machine.
func loopbackEnv(name string) (string, error) {
	raw := os.Getenv(name)
	u, err := url.Parse(raw)
	if raw == "" || err != nil {
		return "", fmt.Errorf("%s: not set or not a URL", name)
	}
	if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", fmt.Errorf("%s=%s is not a loopback address", name, raw)
	}
	return raw, nil
}

// handler is the per-record work every baseline does.
type handler struct {
	out   *sink.Writer
	delay time.Duration
	// stopping ends a batch early on shutdown: with a per-record delay a
	// 10,000-record batch would otherwise keep the process for minutes.
	stopping context.Context
}

type command struct {
	Data struct {
		Command struct {
			Data struct {
				Key      string `json:"key"`
				N        int64  `json:"n"`
				PutNanos int64  `json:"putNanos"`
			} `json:"data"`
		} `json:"command"`
	} `json:"data"`
}

// handle processes one record; false means the process is stopping and the
// rest of the batch is left unprocessed (and, for the KCL, unchecked).
func (h *handler) handle(shard string, data []byte) bool {
	if h.stopping.Err() != nil {
		return false
	}
	var c command
	if err := json.Unmarshal(data, &c); err != nil {
		fmt.Fprintf(os.Stderr, "baseline: shard %s: undecodable record: %v\n", shard, err)
		return true
	}
	if h.delay > 0 {
		time.Sleep(h.delay)
	}
	d := c.Data.Command.Data
	if err := h.out.Report(shard, d.Key, d.N, d.PutNanos); err != nil {
		fmt.Fprintf(os.Stderr, "baseline: report: %v\n", err)
	}
	return true
}

// ---- vmware-go-kcl-v2 ----

// kclOpts are the settings the harness may change from the library's
// defaults; everything else is what a user who does not tune the KCL gets.
type kclOpts struct {
	app, stream, id string
	steal           bool
	// shardSync, if not 0, is ShardSyncIntervalMillis: the period of the
	// worker's event loop, which takes at most one lease and, with stealing
	// on, places at most one claim per pass.
	shardSync time.Duration
}

func runKCL(ctx context.Context, kin *kinesis.Client, ddb *dynamodb.Client, creds aws.CredentialsProvider, o kclOpts, h *handler) error {
	// The library logs every lease pass at info through the global logrus.
	logrus.SetLevel(logrus.WarnLevel)
	cfg := kclConfig(o, creds)
	w := worker.NewWorker(&kclFactory{h: h}, cfg).
		WithKinesis(kin).
		WithCheckpointer(checkpoint.NewDynamoCheckpoint(cfg).WithDynamoDB(ddb))
	if err := w.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	// Shutdown waits for every shard consumer with no timeout and a hung
	// call would keep it for ever: give it a bound.
	done := make(chan struct{})
	go func() { w.Shutdown(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		return errors.New("KCL worker did not shut down within 10 s")
	}
	return nil
}

func kclConfig(o kclOpts, creds aws.CredentialsProvider) *kclcfg.KinesisClientLibConfiguration {
	cfg := kclcfg.NewKinesisClientLibConfigWithCredential(o.app, o.stream, region, o.id, creds).
		// The scenarios preload their streams; LATEST would skip that.
		WithInitialPositionInStream(kclcfg.TRIM_HORIZON).
		WithLeaseStealing(o.steal)
	if o.shardSync > 0 {
		cfg = cfg.WithShardSyncIntervalMillis(int(o.shardSync.Milliseconds()))
	}
	return cfg
}

type kclFactory struct{ h *handler }

func (f *kclFactory) CreateProcessor() kcl.IRecordProcessor { return &kclProcessor{h: f.h} }

type kclProcessor struct {
	h     *handler
	shard string
}

func (p *kclProcessor) Initialize(in *kcl.InitializationInput) { p.shard = in.ShardId }

func (p *kclProcessor) ProcessRecords(in *kcl.ProcessRecordsInput) {
	if len(in.Records) == 0 {
		return
	}
	for _, r := range in.Records {
		if !p.h.handle(p.shard, r.Data) {
			return // stopping: leave the checkpoint where it is
		}
	}
	if err := in.Checkpointer.Checkpoint(in.Records[len(in.Records)-1].SequenceNumber); err != nil {
		fmt.Fprintf(os.Stderr, "baseline: shard %s: checkpoint: %v\n", p.shard, err)
	}
}

func (p *kclProcessor) Shutdown(in *kcl.ShutdownInput) {
	// At shard end the KCL requires a nil checkpoint (SHARD_END); on any
	// other shutdown the last batch's checkpoint stands.
	if in.ShutdownReason == kcl.TERMINATE {
		_ = in.Checkpointer.Checkpoint(nil)
	}
}

// ---- harlow/kinesis-consumer ----

func runHarlow(ctx context.Context, kin *kinesis.Client, stream string, h *handler) error {
	c, err := consumer.New(stream,
		consumer.WithClient(kin),
		// The scenarios preload their streams; LATEST would skip that.
		consumer.WithShardIteratorType(string(types.ShardIteratorTypeTrimHorizon)))
	if err != nil {
		return err
	}
	err = c.Scan(ctx, func(r *consumer.Record) error {
		if !h.handle(r.ShardID, r.Data) {
			return context.Canceled
		}
		return nil
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// ---- raw GetRecords ----

func runRaw(ctx context.Context, kin *kinesis.Client, stream string, h *handler) error {
	shards, err := kin.ListShards(ctx, &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(shards.Shards))
	for _, s := range shards.Shards {
		wg.Add(1)
		go func(shard string) {
			defer wg.Done()
			if err := readShard(ctx, kin, stream, shard, h); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("shard %s: %w", shard, err)
			}
		}(aws.ToString(s.ShardId))
	}
	wg.Wait()
	close(errs)
	return <-errs // nil when every reader stopped because of ctx
}

func readShard(ctx context.Context, kin *kinesis.Client, stream, shard string, h *handler) error {
	it, err := kin.GetShardIterator(ctx, &kinesis.GetShardIteratorInput{
		StreamName: aws.String(stream), ShardId: aws.String(shard), ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
	})
	if err != nil {
		return err
	}
	iter := it.ShardIterator
	for iter != nil {
		out, err := kin.GetRecords(ctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(10000)})
		if err != nil {
			return err
		}
		for _, r := range out.Records {
			if !h.handle(shard, r.Data) {
				return nil
			}
		}
		iter = out.NextShardIterator
		if len(out.Records) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return nil
}
