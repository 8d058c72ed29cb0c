package command

import (
	"context"
	"errors"
	"slices"
	"sync"
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

// noBulk fails every bulk outcome write and logs, in order, the puts of
// outcomes and the Finishes (the update that writes status done) that
// landed, as "put ID" and "finish ID"; other calls go through.
type noBulk struct {
	ddbtable.Client
	mu     sync.Mutex
	landed []string
}

func (c *noBulk) BatchWriteItem(context.Context, *dynamodb.BatchWriteItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	return nil, errors.New("connection reset by peer")
}

func (c *noBulk) PutItem(ctx context.Context, in *dynamodb.PutItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	out, err := c.Client.PutItem(ctx, in, opts...)
	if err == nil && holdsDone(in.Item) {
		c.log("put", in.Item)
	}
	return out, err
}

func (c *noBulk) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	out, err := c.Client.UpdateItem(ctx, in, opts...)
	if err == nil && holdsDone(in.ExpressionAttributeValues) {
		c.log("finish", in.Key)
	}
	return out, err
}

// holdsDone reports whether one of vs is the status done: a put of an
// outcome rather than of a claim, a Finish rather than an Extend.
func holdsDone(vs map[string]types.AttributeValue) bool {
	for _, v := range vs {
		if s, ok := v.(*types.AttributeValueMemberS); ok && s.Value == outcomes.StatusDone {
			return true
		}
	}
	return false
}

func (c *noBulk) log(what string, item map[string]types.AttributeValue) {
	id, _ := item[outcomes.AttrCommandID].(*types.AttributeValueMemberS)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.landed = append(c.landed, what+" "+id.Value)
}

// TestITLateDoneFollowedByTheClaimed, on dynalite: a command run without a
// claim, whose outcome's bulk write fails, and a claimed command of its key
// after it, waiting for it, when the lease is lost. The first outcome is
// put where no item holds its id, and the second's Finish lands after it,
// its claim kept meanwhile: the next owner finds both done instead of
// running the second again.
func TestITLateDoneFollowedByTheClaimed(t *testing.T) {
	env := emulator.Require(t)
	db := env.DynamoDB(t)
	name := emulator.UniqueName(t, "latedone")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(name)})
	})
	log := testlog.Logger(t)
	table := func(worker string, c ddbtable.Client) *outcomes.Table {
		return outcomes.New(c, outcomes.Config{TableName: name, Observer: "obs", WorkerID: worker, Logger: log.With("worker", worker)})
	}
	wrapped := &noBulk{Client: db}
	a, b := table("worker-a", wrapped), table("worker-b", db)
	if err := a.Init(t.Context()); err != nil {
		t.Fatal(err)
	}

	var calls atomic.Int32
	d := responders.NewDispatcher(nil)
	d.Replace(map[string]responders.Enabled{"cmdslack": {ID: "slack", Module: "cmdslack", Responder: answer(func(string) error {
		calls.Add(1)
		return nil
	})}})
	batcher := NewBatcher(a, log)
	batcher.Start()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			batcher.Stop(context.Background())
		}
	})
	lost := make(chan struct{})
	lease := Lease{Lost: lost, Fence: func() time.Time { return time.Now().Add(time.Hour) }}
	hardOrLost, cancel := lease.Context(context.Background())
	defer cancel()
	r := &Runner{
		Observer: "obs", Stream: "s", Shard: "shardId-000000000001",
		Dispatcher: d, Ledger: a, Memory: NewMemory(), Batcher: batcher, ClaimTimeout: outcomes.DefaultClaimTimeout,
		Lease: lease, Intake: context.Background(), Hard: context.Background(), HardOrLost: hardOrLost,
		Log:       log,
		Attempted: func(string, responders.Verdict, time.Duration) {},
		Settled:   func(o Outcome) { t.Errorf("settled %+v after the lease was lost", o) },
	}

	// The first record is peeked, found nowhere, and runs without a claim;
	// the second is not, and is claimed.
	var prepared []Prepared
	var claims []outcomes.Claim
	for i := range 2 {
		p := r.Prepare(record(i+1, "hello"))
		claim, ok := p.Claim(r.Shard)
		if !ok {
			t.Fatalf("prepare: %v", p.err)
		}
		prepared, claims = append(prepared, p), append(claims, claim)
	}
	peeked, err := a.Peek(t.Context(), claims[:1])
	if err != nil {
		t.Fatal(err)
	}
	prepared[0].Peeked(peeked[0], time.Now())

	var wg sync.WaitGroup
	var prior *Mark
	ok := make([]bool, 2)
	for i := range prepared {
		mark, released := NewMark(), make(chan struct{})
		wg.Go(func() {
			ok[i] = r.Execute(&prepared[i], Turn{Released: ReleaseFunc(func() { close(released) }), Prior: prior, Mark: mark})
			mark.End(ok[i])
		})
		<-released
		prior = mark
	}
	close(lost)
	wg.Wait()
	if ok[0] || ok[1] {
		t.Fatalf("runs ended recorded %v, though the lease was lost before their outcomes were", ok)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d responder calls, want 2", n)
	}
	stopped = true
	batcher.Stop(context.Background())

	wrapped.mu.Lock()
	landed := slices.Clone(wrapped.landed)
	wrapped.mu.Unlock()
	if want := []string{"put " + claims[0].CommandID, "finish " + claims[1].CommandID}; !slices.Equal(landed, want) {
		t.Errorf("landed %q, want %q", landed, want)
	}
	for i, claim := range claims {
		err := b.Claim(t.Context(), claim)
		var dup *outcomes.DuplicateError
		if !errors.As(err, &dup) {
			t.Fatalf("the next owner's Claim of command %d = %v, want a duplicate", i+1, err)
		}
		if dup.Record.Verdict != verdict.Executed || dup.Record.Owner != "worker-a" {
			t.Errorf("command %d recorded %+v; want executed by worker-a", i+1, dup.Record)
		}
	}
}
