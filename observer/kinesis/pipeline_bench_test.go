package kinesis

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"

	saunametrics "github.com/sauna-io/sauna/observer/metrics"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/responders"
	// The real webhook module decodes the commands, as in production.
	"github.com/sauna-io/sauna/observer/command"
	"github.com/sauna-io/sauna/observer/verdict"
	_ "github.com/sauna-io/sauna/responders/webhook"
)

// noopResponder accepts every command at once: what is left is sauna's own
// cost per record.
type noopResponder struct{}

func (noopResponder) Respond(context.Context, *responders.Command) error { return nil }

// freeLedger is an idempotency table that answers at once and has never
// seen a command: with it the pipeline computes each command's digest,
// checks it and records its outcome in bulk, as with idempotency on in
// steady state, while DynamoDB's own cost stays out.
type freeLedger struct{}

func (freeLedger) Claim(context.Context, outcomes.Claim) error                     { return nil }
func (freeLedger) Extend(context.Context, outcomes.Identity) error                 { return nil }
func (freeLedger) Finish(context.Context, outcomes.Identity, outcomes.Final) error { return nil }
func (freeLedger) Release(context.Context, outcomes.Identity) error                { return nil }
func (freeLedger) Reject(context.Context, outcomes.Rejection) error                { return nil }
func (freeLedger) Peek(_ context.Context, cs []outcomes.Claim) ([]outcomes.Peeked, error) {
	return make([]outcomes.Peeked, len(cs)), nil
}
func (freeLedger) RecordDone(context.Context, []outcomes.Done) error { return nil }

// webhookRecord is a webhook command as a producer would put it: a JSON body
// of a few fields and one extra header, in the standard Sauna envelope.
// It was created at created, with a time to live of an hour.
func webhookRecord(i, keys int, created time.Time) types.Record {
	data := fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0","data":{`+
		`"envelope":{"schema":"iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0","data":{`+
		`"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-%012d","whenCreated":%q,`+
		`"execution":{"semantics":"AT_LEAST_ONCE","timeToLive":3600000},"tags":{"source":"deploy-bot","env":"production"}}},`+
		`"command":{"schema":"iglu:io.sauna.commands/webhook/jsonschema/1-0-0","data":{`+
		`"body":{"event":"deployed","service":"acme-web","version":"2.4.%d","region":"eu-west-1","ok":true,"durationMs":%d,"owners":["ops","web"]},`+
		`"headers":{"X-Request-Id":"req-%08d"}}}}}`, i+1, created.Format("2006-01-02T15:04:05.000-07:00"), i%100, 1000+i%5000, i)
	return types.Record{
		SequenceNumber: aws.String(fmt.Sprintf("4961%032d", i+1)),
		PartitionKey:   aws.String(fmt.Sprintf("customer-%d", i%keys)),
		Data:           []byte(data),
	}
}

// BenchmarkPipeline is sauna's CPU cost per command on one shard, end to
// end in process: the KCL's ProcessRecords with batches of 1000 records,
// admission, per-key queues, decoding and validation, routing, the
// command's digest, its check and batched outcome in the idempotency table
// (one that answers at once), the responder call (a no-op), metrics, outcomes and
// checkpoint bookkeeping.
// ns/op and allocs/op are per command; every command's verdict is waited for.
func BenchmarkPipeline(b *testing.B) {
	const (
		batch = 1000
		keys  = 1000
	)
	pool := make([]types.Record, 8192)
	created := time.Now().In(time.FixedZone("", 3600))
	for i := range pool {
		pool[i] = webhookRecord(i, keys, created)
	}
	d := responders.NewDispatcher(nil)
	d.Replace(map[string]responders.Enabled{"webhook": {ID: "webhook", Module: "webhook", Responder: noopResponder{}}})
	var executed, other atomic.Int64
	o := benchObserver(64, d)
	o.ledger = freeLedger{}
	// Idempotency on as in steady state: every command is new, runs
	// without a claim, and its outcome goes to the batcher.
	o.memory = command.NewMemory()
	o.batcher = command.NewBatcher(freeLedger{}, o.log)
	o.batcher.Start()
	defer o.batcher.Stop(context.Background())
	o.previousLeaseEnd = func(string) time.Time { return time.Time{} }
	o.opts.OnOutcome = func(out command.Outcome) {
		if out.Verdict == verdict.Executed {
			executed.Add(1)
		} else {
			other.Add(1)
		}
	}
	o.met = saunametrics.New(saunametrics.Options{}).Observer("bench", "bench", saunametrics.ObserverOptions{})
	p := newShardProcessor(o)
	p.Initialize(&kcl.InitializationInput{ShardId: "shardId-000000000000"})

	b.ReportAllocs()
	b.ResetTimer()
	cp := benchRun(p, pool, b.N, batch)
	b.StopTimer()
	if n, bad := executed.Load(), other.Load(); n != int64(b.N) || bad != 0 {
		b.Fatalf("%d of %d commands executed, %d other outcomes", n, b.N, bad)
	}
	if want := aws.ToString(pool[(b.N-1)%len(pool)].SequenceNumber); len(cp.written) == 0 || cp.written[len(cp.written)-1] != want {
		b.Fatalf("last checkpoint %v, want %s", cp.written, want)
	}
	b.ReportMetric(float64(len(pool[0].Data)), "record-bytes")
}

// BenchmarkDecodeAndDigest is the part of BenchmarkPipeline that reads a
// command: decoding, the three validations, the module's decoding and the
// digest, on one goroutine.
func BenchmarkDecodeAndDigest(b *testing.B) {
	rec := webhookRecord(1, 1, time.Now())
	b.ReportAllocs()
	for b.Loop() {
		cmd, err := responders.Decode(rec.Data)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := cmd.Digest(); err != nil {
			b.Fatal(err)
		}
	}
}
