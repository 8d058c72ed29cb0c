package kinesis

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"

	"github.com/sauna-io/sauna/observer/backoff"
	"github.com/sauna-io/sauna/observer/command"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/responders"
)

// sleepyResponder takes delay per command, as a remote API would.
type sleepyResponder struct{ delay time.Duration }

func (r sleepyResponder) Respond(ctx context.Context, _ *responders.Command) error {
	if r.delay > 0 && !backoff.Sleep(ctx, r.delay) {
		return responders.Retryable(ctx.Err(), 0)
	}
	return nil
}

// slowLedger stands in for the idempotency table: each claim and each
// outcome takes one DynamoDB round trip.
type slowLedger struct{ rtt time.Duration }

func (c slowLedger) wait(ctx context.Context) error {
	if !backoff.Sleep(ctx, c.rtt) {
		return ctx.Err()
	}
	return nil
}

func (c slowLedger) Claim(ctx context.Context, _ outcomes.Claim) error { return c.wait(ctx) }
func (c slowLedger) Extend(context.Context, outcomes.Identity) error   { return nil }
func (c slowLedger) Finish(ctx context.Context, _ outcomes.Identity, _ outcomes.Final) error {
	return c.wait(ctx)
}
func (c slowLedger) Release(context.Context, outcomes.Identity) error       { return nil }
func (c slowLedger) Reject(ctx context.Context, _ outcomes.Rejection) error { return c.wait(ctx) }
func (c slowLedger) Peek(ctx context.Context, cs []outcomes.Claim) ([]outcomes.Peeked, error) {
	return make([]outcomes.Peeked, len(cs)), c.wait(ctx)
}
func (c slowLedger) RecordDone(ctx context.Context, _ []outcomes.Done) error { return c.wait(ctx) }

// benchProcessor is one shard's processor with no AWS behind it: a fake
// checkpointer, no dead-letter stream, and an idempotency ledger only when
// ledger is set. It measures what sauna adds per record, not what DynamoDB
// or Kinesis cost.
func benchProcessor(maxInFlight int, resp responders.Responder, ledger command.Ledger) *shardProcessor {
	d := responders.NewDispatcher(nil)
	d.Replace(map[string]responders.Enabled{"testslack": {ID: "slack", Module: "testslack", Responder: resp}})
	o := benchObserver(maxInFlight, d)
	if ledger != nil {
		o.ledger = ledger
	}
	p := newShardProcessor(o)
	p.Initialize(&kcl.InitializationInput{ShardId: "shardId-000000000000"})
	return p
}

// benchObserver is an Observer of stream "bench" that no worker runs: its
// leases never end and its log is discarded.
func benchObserver(maxInFlight int, d *responders.Dispatcher) *Observer {
	never := make(chan struct{})
	// A lease table's lease runs out at a time it stores, moved on at each
	// renewal, not at a time that moves with every look.
	until := time.Now().Add(time.Hour)
	return &Observer{
		cfg:        Config{ID: "bench", StreamName: "bench", MaxInFlight: maxInFlight},
		dispatch:   d,
		log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		lost:       func(string) <-chan struct{} { return never },
		leaseUntil: func(string) time.Time { return until },
		intake:     context.Background(),
		hard:       context.Background(),
		fatal:      make(chan error, 1),
		opts:       Options{CheckpointInterval: time.Second},
	}
}

// benchRecords is a pool of distinct commands spread over keys partition
// keys; benchmarks cycle through it rather than build b.N records.
func benchRecords(n, keys int) []types.Record {
	recs := make([]types.Record, n)
	for i := range recs {
		recs[i] = keyedRecord(fmt.Sprintf("%012d", i+1), fmt.Sprintf("key-%d", i%keys), fmt.Sprintf("bench %d", i))
	}
	return recs
}

// benchRun feeds n records to p in GetRecords-sized batches, then waits
// until every one has finished and returns the checkpointer it was given.
func benchRun(p *shardProcessor, pool []types.Record, n, batch int) *fakeCheckpointer {
	cp := &fakeCheckpointer{}
	for done := 0; done < n; {
		size := min(batch, n-done)
		// A fresh slice per batch, as the KCL gives: admitted records point
		// into it until they finish.
		recs := make([]types.Record, size)
		for i := range recs {
			recs[i] = pool[(done+i)%len(pool)]
		}
		p.ProcessRecords(&kcl.ProcessRecordsInput{Records: recs, Checkpointer: cp})
		done += size
	}
	// Shutdown waits for every admitted record's verdict and writes the
	// final checkpoint.
	p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
	return cp
}

// BenchmarkSlowResponder measures one shard's throughput when every command
// takes 100 ms (real time) at the responder, with many partition keys: the
// per-shard concurrency, not the stream, is the limit. keys=16 shows the
// ceiling per-key order puts on few keys (16 keys / 100 ms = 160 cmds/s);
// claims=5ms adds an idempotency claim and outcome write of 5 ms each, a
// typical DynamoDB round trip, to every command.
func BenchmarkSlowResponder(b *testing.B) {
	const delay = 100 * time.Millisecond
	for _, c := range []struct {
		maxInFlight, keys int
		claims            time.Duration
	}{{64, 1000, 0}, {1, 1000, 0}, {64, 16, 0}, {64, 1000, 5 * time.Millisecond}} {
		name := fmt.Sprintf("maxInFlight=%d/keys=%d", c.maxInFlight, c.keys)
		var claims command.Ledger
		if c.claims > 0 {
			name += fmt.Sprintf("/claims=%s", c.claims)
			claims = slowLedger{rtt: c.claims}
		}
		b.Run(name, func(b *testing.B) {
			pool := benchRecords(4096, c.keys)
			p := benchProcessor(c.maxInFlight, sleepyResponder{delay: delay}, claims)
			b.ResetTimer()
			benchRun(p, pool, b.N, 100)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cmds/s")
		})
	}
}

// BenchmarkDecodeAndDispatch is the CPU cost sauna adds per record with an
// instant responder: the whole shard pipeline (admission, per-key queues,
// goroutine per command, checkpoint bookkeeping), one record's execute on
// its own, and envelope decoding alone.
func BenchmarkDecodeAndDispatch(b *testing.B) {
	pool := benchRecords(4096, 1000)
	b.Run("pipeline", func(b *testing.B) {
		p := benchProcessor(64, sleepyResponder{}, nil)
		b.ReportAllocs()
		b.ResetTimer()
		benchRun(p, pool, b.N, 100)
	})
	b.Run("execute", func(b *testing.B) {
		p := benchProcessor(64, sleepyResponder{}, nil)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			r := &pool[i%len(pool)]
			if !p.commands.Run(command.Record{Sequence: aws.ToString(r.SequenceNumber), PartitionKey: aws.ToString(r.PartitionKey), Data: r.Data}) {
				b.Fatal("execute stopped short")
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			if _, err := responders.Decode(pool[i%len(pool)].Data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
