package command

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sauna-io/sauna/observer/ddbtable"
	"github.com/sauna-io/sauna/observer/outcomes"
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
	lost := make(chan struct{})
	var wrapped *finishes
	s := newLateSetup(t, "latefinish", func(db ddbtable.Client) ddbtable.Client {
		wrapped = &finishes{Client: db, gate: make(chan struct{})}
		return wrapped
	}, func() { close(lost) }, func() { close(wrapped.gate) })
	r := s.runner(t, Lease{Lost: lost, Fence: func() time.Time { return time.Now().Add(time.Hour) }})
	rec := record(7, "hello")
	p := r.Prepare(rec)
	claim, ok := p.Claim(r.Shard)
	if !ok {
		t.Fatalf("prepare: %v", p.err)
	}
	if r.Execute(&p, Turn{}) {
		t.Fatal("the run ended recorded, though its lease was lost before its outcome was")
	}
	if n := s.calls.Load(); n != 1 {
		t.Fatalf("%d responder calls, want 1", n)
	}

	// The next owner of the shard reads the record: the claim is live,
	// not released.
	if err := s.b.Claim(t.Context(), claim); !errors.Is(err, outcomes.ErrClaimedElsewhere) {
		t.Fatalf("the next owner's Claim while the Finish is held = %v, want ErrClaimedElsewhere", err)
	}
	close(wrapped.gate)
	s.stop()
	s.wantDone(t, claim)
}

// heldFinishes fails every Finish (the update that writes status done)
// until gate is closed, and then logs the commands whose Finish landed, in
// order; other writes go through.
type heldFinishes struct {
	ddbtable.Client
	gate   chan struct{}
	mu     sync.Mutex
	landed []string
}

func (u *heldFinishes) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	finish := false
	for _, v := range in.ExpressionAttributeValues {
		if s, ok := v.(*types.AttributeValueMemberS); ok && s.Value == outcomes.StatusDone {
			finish = true
		}
	}
	if !finish {
		return u.Client.UpdateItem(ctx, in, opts...)
	}
	select {
	case <-u.gate:
	default:
		return nil, errors.New("connection reset by peer")
	}
	out, err := u.Client.UpdateItem(ctx, in, opts...)
	if err == nil {
		var key []string
		for _, v := range in.Key {
			if s, ok := v.(*types.AttributeValueMemberS); ok {
				key = append(key, s.Value)
			}
		}
		u.mu.Lock()
		u.landed = append(u.landed, strings.Join(key, " "))
		u.mu.Unlock()
	}
	return out, err
}

// TestITLateFinishFollowsThePrior, on dynalite: two claimed commands of one
// key ran; the first one's Finish is failing, the second waits for it, when
// the lease is lost. Neither claim is released (the next owner's Claims
// wait), and once the ledger answers, the Batcher Finishes the first, then
// the second: the next owner finds both done instead of running them again.
func TestITLateFinishFollowsThePrior(t *testing.T) {
	var wrapped *heldFinishes
	s := newLateSetup(t, "latechain", func(db ddbtable.Client) ddbtable.Client {
		wrapped = &heldFinishes{Client: db, gate: make(chan struct{})}
		return wrapped
	}, nil, func() { close(wrapped.gate) })
	lost := make(chan struct{})
	r := s.runner(t, Lease{Lost: lost, Fence: func() time.Time { return time.Now().Add(time.Hour) }})

	// The records of one key, each started once the one before released
	// its key, as the source runs them.
	var wg sync.WaitGroup
	var prior *Mark
	var claims []outcomes.Claim
	ok := make([]bool, 2)
	for i := range ok {
		p := r.Prepare(record(i+1, "hello"))
		claim, prepared := p.Claim(r.Shard)
		if !prepared {
			t.Fatalf("prepare: %v", p.err)
		}
		claims = append(claims, claim)
		mark, released := NewMark(), make(chan struct{})
		wg.Go(func() {
			ok[i] = r.Execute(&p, Turn{Released: ReleaseFunc(func() { close(released) }), Prior: prior, Mark: mark})
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

	// The next owner of the shard reads the records: their claims are
	// live, not released.
	for i, claim := range claims {
		if err := s.b.Claim(t.Context(), claim); !errors.Is(err, outcomes.ErrClaimedElsewhere) {
			t.Fatalf("the next owner's Claim of command %d while the first Finish fails = %v, want ErrClaimedElsewhere", i+1, err)
		}
	}
	close(wrapped.gate)
	s.stop()

	wrapped.mu.Lock()
	landed := slices.Clone(wrapped.landed)
	wrapped.mu.Unlock()
	if len(landed) != 2 || !strings.Contains(landed[0], claims[0].CommandID) || !strings.Contains(landed[1], claims[1].CommandID) {
		t.Errorf("Finishes landed for %q; want command 1's, then command 2's", landed)
	}
	s.wantDone(t, claims...)
}
