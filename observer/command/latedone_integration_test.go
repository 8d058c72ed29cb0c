package command

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sauna-io/sauna/observer/ddbtable"
	"github.com/sauna-io/sauna/observer/outcomes"
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
	var wrapped *noBulk
	s := newLateSetup(t, "latedone", func(db ddbtable.Client) ddbtable.Client {
		wrapped = &noBulk{Client: db}
		return wrapped
	}, nil, nil)
	lost := make(chan struct{})
	lease := Lease{Lost: lost, Fence: func() time.Time { return time.Now().Add(time.Hour) }}
	hardOrLost, cancel := lease.Context(context.Background())
	defer cancel()
	r := s.runner(t, lease)
	r.Memory, r.HardOrLost = NewMemory(), hardOrLost

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
	peeked, err := s.a.Peek(t.Context(), claims[:1])
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
	if n := s.calls.Load(); n != 2 {
		t.Fatalf("%d responder calls, want 2", n)
	}
	s.stop()

	wrapped.mu.Lock()
	landed := slices.Clone(wrapped.landed)
	wrapped.mu.Unlock()
	if want := []string{"put " + claims[0].CommandID, "finish " + claims[1].CommandID}; !slices.Equal(landed, want) {
		t.Errorf("landed %q, want %q", landed, want)
	}
	s.wantDone(t, claims...)
}
