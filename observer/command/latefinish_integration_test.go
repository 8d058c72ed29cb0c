package command

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sauna-io/sauna/observer/ddbtable"
	"github.com/sauna-io/sauna/observer/internal/testlog"
	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
)

// finishes lets a test fail the first Finish (the update that writes status
// done) and hold the second until gate is closed; other writes go through.
type finishes struct {
	ddbtable.Client
	n    atomic.Int32
	gate chan struct{}
}

func (u *finishes) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	finish := false
	for _, v := range in.ExpressionAttributeValues {
		if s, ok := v.(*types.AttributeValueMemberS); ok && s.Value == outcomes.StatusDone {
			finish = true
		}
	}
	if !finish {
		return u.Client.UpdateItem(ctx, in, opts...)
	}
	switch u.n.Add(1) {
	case 1:
		return nil, errors.New("connection reset by peer")
	case 2:
		select {
		case <-u.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return u.Client.UpdateItem(ctx, in, opts...)
}

// TestITLateFinishKeepsTheClaim, on dynalite: a claimed command ran, its
// Finish failed and the lease was lost before it was tried again. The
// claim stays this worker's (another worker's Claim waits), the Batcher's
// Finish lands, and the other worker's Claim then finds the command done
// instead of running it again.
func TestITLateFinishKeepsTheClaim(t *testing.T) {
	env := emulator.Require(t)
	db := env.DynamoDB(t)
	name := emulator.UniqueName(t, "latefinish")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)})
	})
	log := testlog.Logger(t)
	table := func(worker string, c ddbtable.Client) *outcomes.Table {
		return outcomes.New(c, outcomes.Config{TableName: name, Observer: "obs", WorkerID: worker, Logger: log.With("worker", worker)})
	}
	wrapped := &finishes{Client: db, gate: make(chan struct{})}
	a, b := table("worker-a", wrapped), table("worker-b", db)
	if err := a.Init(t.Context()); err != nil {
		t.Fatal(err)
	}

	lost := make(chan struct{})
	calls := 0
	d := responders.NewDispatcher(nil)
	d.Replace(map[string]responders.Enabled{"cmdslack": {ID: "slack", Module: "cmdslack", Responder: answer(func(string) error {
		calls++
		close(lost)
		return nil
	})}})
	batcher := NewBatcher(a, log)
	batcher.Start()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			close(wrapped.gate)
			batcher.Stop(context.Background())
		}
	})
	r := &Runner{
		Observer: "obs", Stream: "s", Shard: "shardId-000000000001",
		Dispatcher: d, Ledger: a, Batcher: batcher, ClaimTimeout: outcomes.DefaultClaimTimeout,
		Lease:  Lease{Lost: lost, Fence: func() time.Time { return time.Now().Add(time.Hour) }},
		Intake: context.Background(), Hard: context.Background(),
		Log:       log,
		Attempted: func(string, responders.Verdict, time.Duration) {},
		Settled:   func(o Outcome) { t.Errorf("settled %+v after the lease was lost", o) },
	}
	rec := record(7, "hello")
	p := r.Prepare(rec)
	claim, ok := p.Claim(r.Shard)
	if !ok {
		t.Fatalf("prepare: %v", p.err)
	}
	if r.Execute(&p, Turn{}) {
		t.Fatal("the run ended recorded, though its lease was lost before its outcome was")
	}
	if calls != 1 {
		t.Fatalf("%d responder calls, want 1", calls)
	}

	// The next owner of the shard reads the record: the claim is live,
	// not released.
	if err := b.Claim(t.Context(), claim); !errors.Is(err, outcomes.ErrClaimedElsewhere) {
		t.Fatalf("the next owner's Claim while the Finish is held = %v, want ErrClaimedElsewhere", err)
	}
	close(wrapped.gate)
	stopped = true
	batcher.Stop(context.Background())

	err := b.Claim(t.Context(), claim)
	var dup *outcomes.DuplicateError
	if !errors.As(err, &dup) {
		t.Fatalf("the next owner's Claim after the late Finish = %v, want a duplicate", err)
	}
	if dup.Record.Verdict != verdict.Executed || dup.Record.Owner != "worker-a" {
		t.Errorf("recorded %+v; want executed by worker-a", dup.Record)
	}
}
