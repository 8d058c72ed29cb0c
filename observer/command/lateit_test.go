package command

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/sauna-io/sauna/observer/ddbtable"
	"github.com/sauna-io/sauna/observer/internal/testlog"
	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
)

// lateSetup is what the late-outcome tests on dynalite share: one outcome
// table, seen by worker-a, whose shard lease is lost, through a wrapped
// client, and by worker-b, the shard's next owner, directly; worker-a's
// Batcher; and a responder counting its calls.
type lateSetup struct {
	a, b    *outcomes.Table
	batcher *Batcher
	calls   atomic.Int32
	d       *responders.Dispatcher
	// stopped is set once the test stopped the Batcher itself.
	stopped bool
}

// newLateSetup makes the table (name from prefix) and worker-a's Batcher;
// worker-a's requests go through wrapped(db). onCall, if set, runs at each
// responder call. At cleanup, release (if set) lets held writes go, and
// the Batcher is stopped unless the test did.
func newLateSetup(t *testing.T, prefix string, wrapped func(ddbtable.Client) ddbtable.Client, onCall func(), release func()) *lateSetup {
	env := emulator.Require(t)
	db := env.DynamoDB(t)
	name := emulator.UniqueName(t, prefix)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)})
	})
	log := testlog.Logger(t)
	table := func(worker string, c ddbtable.Client) *outcomes.Table {
		return outcomes.New(c, outcomes.Config{TableName: name, Observer: "obs", WorkerID: worker, Logger: log.With("worker", worker)})
	}
	s := &lateSetup{a: table("worker-a", wrapped(db)), b: table("worker-b", db)}
	if err := s.a.Init(t.Context()); err != nil {
		t.Fatal(err)
	}
	s.d = responders.NewDispatcher(nil)
	s.d.Replace(map[string]responders.Enabled{"cmdslack": {ID: "slack", Module: "cmdslack", Responder: answer(func(string) error {
		s.calls.Add(1)
		if onCall != nil {
			onCall()
		}
		return nil
	})}})
	s.batcher = NewBatcher(s.a, log)
	s.batcher.Start()
	t.Cleanup(func() {
		if !s.stopped {
			if release != nil {
				release()
			}
			s.batcher.Stop(context.Background())
		}
	})
	return s
}

// runner is worker-a's Runner of shard 1 under lease; no run may settle,
// as the lease is lost before any outcome is recorded.
func (s *lateSetup) runner(t *testing.T, lease Lease) *Runner {
	return &Runner{
		Observer: "obs", Stream: "s", Shard: "shardId-000000000001",
		Dispatcher: s.d, Ledger: s.a, Batcher: s.batcher, ClaimTimeout: outcomes.DefaultClaimTimeout,
		Lease: lease, Intake: context.Background(), Hard: context.Background(),
		Log:       testlog.Logger(t),
		Attempted: func(string, responders.Verdict, time.Duration) {},
		Settled:   func(o Outcome) { t.Errorf("settled %+v after the lease was lost", o) },
	}
}

// stop stops the Batcher, its late outcomes written.
func (s *lateSetup) stop() {
	s.stopped = true
	s.batcher.Stop(context.Background())
}

// wantDone checks that the next owner's Claim of each command finds it
// done, executed by worker-a, instead of running it again.
func (s *lateSetup) wantDone(t *testing.T, claims ...outcomes.Claim) {
	t.Helper()
	for i, claim := range claims {
		err := s.b.Claim(t.Context(), claim)
		var dup *outcomes.DuplicateError
		if !errors.As(err, &dup) {
			t.Fatalf("the next owner's Claim of command %d = %v, want a duplicate", i+1, err)
		}
		if dup.Record.Verdict != verdict.Executed || dup.Record.Owner != "worker-a" {
			t.Errorf("command %d recorded %+v; want executed by worker-a", i+1, dup.Record)
		}
	}
}
