package kinesis

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/observer/verdict"
)

// processCPU is the user and system CPU time of the whole process so far.
func processCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkITOutcomeCost is what a drain asks of the outcome table for 100
// new commands: one Peek of the 100, then their outcomes in 4 RecordDone
// calls of 25 at once, as the outcome Batcher sends them, items shaped as a
// drain's (a webhook command's schema and digest, a shard id, a 56-digit
// sequence number). Beside the wall time (which is mostly dynalite's), it
// reports this process's CPU time per command, the client's share: the
// request building, signing, encoding and decoding, and the HTTP exchange,
// through the DynamoDB client an observer uses (LoadAWS, NewDynamoDBClient).
func BenchmarkITOutcomeCost(b *testing.B) {
	env := emulator.Require(b)
	// LoadAWS's config without the shared config files, which a developer's
	// own AWS setup could change.
	cfg := aws.Config{
		Region:                      emulator.Region,
		Credentials:                 aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(emulator.AccessKeyID, emulator.SecretAccessKey, "")),
		HTTPClient:                  newHTTPClient(),
		RequestMinCompressSizeBytes: 10240,
	}
	if env.DynamoDBURL == "" {
		b.Fatal("no DynamoDB endpoint")
	}
	cfg.BaseEndpoint = aws.String(env.DynamoDBURL)
	db := NewDynamoDBClient(cfg)
	name := emulator.UniqueName(b, "outcomes-cost")
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)})
	})
	tbl := outcomes.New(db, outcomes.Config{TableName: name, Observer: "bench", WorkerID: "bench-worker", Retention: 72 * time.Hour,
		CallTimeout: 10 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	ctx := b.Context()
	if err := tbl.Init(ctx); err != nil {
		b.Fatalf("Init: %v", err)
	}
	const (
		perOp  = 100
		writes = 25
		schema = "iglu:com.snowplowanalytics.sauna.commands/webhook/jsonschema/1-0-0"
	)
	claims := make([]outcomes.Claim, perOp)
	done := make([]outcomes.Done, perOp)
	n := 0
	fill := func() {
		now := time.Now()
		for i := range claims {
			n++
			claims[i] = outcomes.Claim{CommandID: fmt.Sprintf("5d1c6a3e-%04x-4b1e-9c2f-%012x", n%0x10000, n), Responder: "webhook",
				Digest: fmt.Sprintf("%064x", n*7919), Schema: schema,
				Shard: fmt.Sprintf("shardId-%012d", n%4), Sequence: fmt.Sprintf("4961%052d", n)}
			done[i] = outcomes.Done{Claim: claims[i], Final: outcomes.Final{Verdict: verdict.Executed, Attempts: 1, FirstAttempt: now, LastAttempt: now}}
		}
	}
	op := func() {
		res, err := tbl.Peek(ctx, claims)
		if err != nil {
			b.Fatalf("Peek: %v", err)
		}
		for i, r := range res {
			if r.Seen != outcomes.Unseen {
				b.Fatalf("Peek: new id %s seen as %s", claims[i].CommandID, r.Seen)
			}
		}
		var wg sync.WaitGroup
		errs := make([]error, perOp/writes)
		for w := range errs {
			wg.Go(func() { errs[w] = tbl.RecordDone(ctx, done[w*writes:(w+1)*writes]) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				b.Fatalf("RecordDone: %v", err)
			}
		}
	}
	fill()
	op() // connections and the table warm
	var cpu time.Duration
	for b.Loop() {
		fill()
		start := processCPU(b)
		op()
		cpu += processCPU(b) - start
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*perOp), "cpu-µs/command")
}
