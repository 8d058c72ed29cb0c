package outcomes

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/sauna-io/sauna/observer/ddbtable"
	"github.com/sauna-io/sauna/observer/verdict"
)

// answerLost forwards every call, but the first PutItem's answer is lost:
// the write lands and the caller sees an error, as after a timeout or a
// dropped connection.
type answerLost struct {
	ddbtable.Client
	lost atomic.Bool
}

func (a *answerLost) PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	out, err := a.Client.PutItem(ctx, in, optFns...)
	if err == nil && a.lost.CompareAndSwap(false, true) {
		return nil, errors.New("read tcp 127.0.0.1: i/o timeout")
	}
	return out, err
}

// A claim whose write landed but whose answer was lost is this worker's
// when it claims the record again: not another worker's claim to wait out
// until it expires. Another worker still finds it claimed.
func TestITClaimWhoseAnswerWasLostIsOurs(t *testing.T) {
	e := newIT(t)
	clk := newClock()
	db := &answerLost{Client: e.db}
	w := New(db, Config{
		TableName: e.name, Observer: "obs", WorkerID: "w1", Retention: 72 * time.Hour,
		ClaimTimeout: 30 * time.Second, CallTimeout: 5 * time.Second, Now: clk.Now,
	})
	c := Claim{CommandID: "cmd-lost", Digest: testDigest, Shard: "shardId-000000000000", Sequence: "7"}
	if err := w.Claim(t.Context(), c); err == nil || !db.lost.Load() {
		t.Fatalf("first Claim = %v (answer lost: %v); want the lost answer's error", err, db.lost.Load())
	}
	if err := e.worker(t, "w2", clk).Claim(t.Context(), c); !errors.Is(err, ErrClaimedElsewhere) {
		t.Fatalf("another worker's Claim = %v; want ErrClaimedElsewhere", err)
	}
	if err := w.Claim(t.Context(), c); err != nil {
		t.Fatalf("Claim again = %v; want the landed claim to be ours", err)
	}
	if err := w.Finish(t.Context(), c.Identity(), Final{Verdict: verdict.Executed}); err != nil {
		t.Fatalf("Finish = %v", err)
	}
	var dup *DuplicateError
	if err := e.worker(t, "w3", clk).Claim(t.Context(), c); !errors.As(err, &dup) {
		t.Fatalf("Claim after Finish = %v; want a duplicate", err)
	}
}
