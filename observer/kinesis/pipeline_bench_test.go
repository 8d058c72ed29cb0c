package kinesis

import (
	"bytes"
	"context"
	"fmt"
	"slices"
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
// steady state, while DynamoDB's own cost stays out. claims and writes,
// when set, count the commands that took a claim rather than the bulk
// path, and the bulk writes of outcomes.
type freeLedger struct{ claims, writes *atomic.Int64 }

func (l freeLedger) Claim(context.Context, outcomes.Claim) error {
	if l.claims != nil {
		l.claims.Add(1)
	}
	return nil
}
func (freeLedger) Extend(context.Context, outcomes.Identity) error                 { return nil }
func (freeLedger) Finish(context.Context, outcomes.Identity, outcomes.Final) error { return nil }
func (freeLedger) Release(context.Context, outcomes.Identity) error                { return nil }
func (freeLedger) Reject(context.Context, outcomes.Rejection) error                { return nil }
func (freeLedger) Peek(_ context.Context, cs []outcomes.Claim) ([]outcomes.Peeked, error) {
	return make([]outcomes.Peeked, len(cs)), nil
}
func (l freeLedger) RecordDone(context.Context, []outcomes.Done) error {
	if l.writes != nil {
		l.writes.Add(1)
	}
	return nil
}

func (l freeLedger) RecordDoneIfAbsent(ctx context.Context, d outcomes.Done) error {
	return l.RecordDone(ctx, []outcomes.Done{d})
}

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
// Idempotency is on as in steady state: every command is new (its own
// commandId and sequence number), runs without a claim, and its outcome
// goes to the batcher. The benchmark fails if any command took a claim.
// ns/op and allocs/op are per command; every command's verdict is waited for.
func BenchmarkPipeline(b *testing.B) { benchPipeline(b, false) }

// BenchmarkPipelineClaimed is BenchmarkPipeline with every command's id
// recorded by this process moments before, as when a stream redelivers
// what was just run: each command then takes a claim (one that the table
// grants at once) rather than the bulk path.
func BenchmarkPipelineClaimed(b *testing.B) { benchPipeline(b, true) }

func benchPipeline(b *testing.B, claimed bool) {
	const (
		batch = 1000
		keys  = 1000
	)
	created := time.Now().In(time.FixedZone("", 3600))
	d := responders.NewDispatcher(nil)
	d.Replace(map[string]responders.Enabled{"webhook": {ID: "webhook", Module: "webhook", Responder: noopResponder{}}})
	var executed, other, claims, writes atomic.Int64
	o := benchObserver(64, d)
	ledger := freeLedger{claims: &claims, writes: &writes}
	o.ledger = ledger
	o.memory = command.NewMemory()
	o.batcher = command.NewBatcher(ledger, o.log)
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
	cp := &fakeCheckpointer{}
	recs := newUniqueRecords(keys, created)

	var last string
	if claimed {
		// A pool of ids run once before the timer, then again and again:
		// each run finds its id recorded lately. 8192 ids at a time keep
		// two runs of one id from being in flight together.
		pool := recs.next(8192)
		p.ProcessRecords(&kcl.ProcessRecordsInput{Records: slices.Clone(pool), Checkpointer: cp})
		waitFor(b, func() bool { return executed.Load() == int64(len(pool)) })
		executed.Store(0)
		claims.Store(0)
		writes.Store(0)
		b.ReportAllocs()
		b.ResetTimer()
		for done := 0; done < b.N; {
			size := min(batch, b.N-done)
			// A fresh slice per batch, as the KCL gives: admitted records
			// point into it until they finish.
			rs := make([]types.Record, size)
			for i := range rs {
				rs[i] = pool[(done+i)%len(pool)]
			}
			p.ProcessRecords(&kcl.ProcessRecordsInput{Records: rs, Checkpointer: cp})
			done += size
		}
		last = aws.ToString(pool[(b.N-1)%len(pool)].SequenceNumber)
	} else {
		b.ReportAllocs()
		b.ResetTimer()
		// Each batch is built with the timer stopped, from a template
		// patched in place (about 0.1 µs a record, against several µs a
		// record to run it), so the runs of the batch before that go on
		// meanwhile, and the timer calls once a batch, cost little of
		// the figure. A pool of b.N records built up front would instead
		// hold a heap of hundreds of MB that makes the collector run
		// far less often than in steady state.
		for done := 0; done < b.N; {
			size := min(batch, b.N-done)
			b.StopTimer()
			rs := recs.next(size)
			b.StartTimer()
			p.ProcessRecords(&kcl.ProcessRecordsInput{Records: rs, Checkpointer: cp})
			done += size
			last = aws.ToString(rs[len(rs)-1].SequenceNumber)
		}
	}
	// Shutdown waits for every admitted record's verdict and writes the
	// final checkpoint.
	p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
	b.StopTimer()
	if n, bad := executed.Load(), other.Load(); n != int64(b.N) || bad != 0 {
		b.Fatalf("%d of %d commands executed, %d other outcomes", n, b.N, bad)
	}
	if len(cp.written) == 0 || cp.written[len(cp.written)-1] != last {
		b.Fatalf("last checkpoint %v, want %s", cp.written, last)
	}
	c := claims.Load()
	if want := map[bool]int64{false: 0, true: int64(b.N)}[claimed]; c != want {
		b.Fatalf("%d of %d commands took a claim, want %d", c, b.N, want)
	}
	b.ReportMetric(float64(c)/float64(b.N), "claims/op")
	b.ReportMetric(float64(len(recs.template)), "record-bytes")
	b.ReportMetric(float64(writes.Load())/float64(b.N), "writes/op")
}

// uniqueRecords makes webhook records with a commandId and sequence number
// never given before, cheaply: each is webhookRecord's record with its
// commandId's last 12 digits rewritten.
type uniqueRecords struct {
	template []byte
	idAt     int // where the commandId's 12-digit counter starts in template
	keys     []string
	n        int
}

func newUniqueRecords(keys int, created time.Time) *uniqueRecords {
	u := &uniqueRecords{template: webhookRecord(0, keys, created).Data}
	u.idAt = bytes.Index(u.template, []byte("9c2f-")) + len("9c2f-")
	for i := range keys {
		u.keys = append(u.keys, fmt.Sprintf("customer-%d", i))
	}
	return u
}

// next returns the next size records, in a fresh slice.
func (u *uniqueRecords) next(size int) []types.Record {
	data := make([]byte, 0, size*len(u.template))
	seqs := make([]string, size)
	var seqBuf []byte
	rs := make([]types.Record, size)
	for i := range rs {
		u.n++
		at := len(data)
		data = append(data, u.template...)
		putDigits(data[at+u.idAt:at+u.idAt+12], u.n)
		seqBuf = append(seqBuf[:0], "4961"...)
		seqBuf = append(seqBuf, make([]byte, 32)...)
		putDigits(seqBuf[4:], u.n)
		seqs[i] = string(seqBuf)
		rs[i] = types.Record{SequenceNumber: &seqs[i], PartitionKey: &u.keys[u.n%len(u.keys)], Data: data[at:len(data):len(data)]}
	}
	return rs
}

// putDigits writes n in decimal into all of dst, zero-padded on the left.
func putDigits(dst []byte, n int) {
	for i := len(dst) - 1; i >= 0; i-- {
		dst[i] = byte('0' + n%10)
		n /= 10
	}
}

// waitFor waits for cond, giving up after a minute.
func waitFor(b *testing.B, cond func() bool) {
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("timed out")
		}
	}
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
