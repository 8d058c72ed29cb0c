package outcomes

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/sauna-io/sauna/observer/ddbtable"
	"github.com/sauna-io/sauna/observer/verdict"
)

// answerLost forwards every call, but the first PutItem's answer is lost
// (the first UpdateItem's with onUpdate): the write lands and the caller
// sees an error, as after a timeout or a dropped connection.
type answerLost struct {
	ddbtable.Client
	onUpdate bool
	lost     atomic.Bool
}

func (a *answerLost) PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	out, err := a.Client.PutItem(ctx, in, optFns...)
	if err == nil && !a.onUpdate && a.lost.CompareAndSwap(false, true) {
		return nil, errLostAnswer
	}
	return out, err
}

func (a *answerLost) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	out, err := a.Client.UpdateItem(ctx, in, optFns...)
	if err == nil && a.onUpdate && a.lost.CompareAndSwap(false, true) {
		return nil, errLostAnswer
	}
	return out, err
}

var errLostAnswer = errors.New("read tcp 127.0.0.1: i/o timeout")

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

// A Finish whose write landed but whose answer was lost, called again,
// returns nil: its fence fails on the item it made done, which still holds
// this claim's token. The command is recorded, once, with its outcome.
func TestITFinishWhoseAnswerWasLostIsRecorded(t *testing.T) {
	e := newIT(t)
	clk := newClock()
	db := &answerLost{Client: e.db, onUpdate: true}
	w := New(db, Config{
		TableName: e.name, Observer: "obs", WorkerID: "w1", Retention: 72 * time.Hour,
		ClaimTimeout: 30 * time.Second, CallTimeout: 5 * time.Second, Now: clk.Now,
	})
	c := Claim{CommandID: "cmd-finish-lost", Digest: testDigest, Shard: "shardId-000000000000", Sequence: "7"}
	if err := w.Claim(t.Context(), c); err != nil {
		t.Fatalf("Claim = %v", err)
	}
	if err := w.Finish(t.Context(), c.Identity(), Final{Verdict: verdict.Executed}); !errors.Is(err, errLostAnswer) || !db.lost.Load() {
		t.Fatalf("first Finish = %v (answer lost: %v); want the lost answer's error", err, db.lost.Load())
	}
	if err := w.Finish(t.Context(), c.Identity(), Final{Verdict: verdict.Executed}); err != nil {
		t.Fatalf("Finish again = %v; want nil, the first one landed", err)
	}
	rec, err := w.Get(t.Context(), c.CommandID)
	if err != nil {
		t.Fatalf("Get = %v", err)
	}
	if rec.Status != StatusDone || rec.Verdict != verdict.Executed || rec.Attempts != 1 {
		t.Errorf("recorded %s %s after %d attempts; want done, executed, 1", rec.Status, rec.Verdict, rec.Attempts)
	}
	var dup *DuplicateError
	if err := e.worker(t, "w2", clk).Claim(t.Context(), c); !errors.As(err, &dup) {
		t.Fatalf("Claim after Finish = %v; want a duplicate", err)
	}
}

// A Finish after the claim expired and another worker took it over is
// refused, whether the new holder is still running the command or has
// recorded its outcome (a done item under its token, not ours), and
// leaves the new holder's item as it was.
func TestITFinishAfterTakeoverIsRefused(t *testing.T) {
	e := newIT(t)
	clk := newClock()
	for _, newHolderDone := range []bool{false, true} {
		c := Claim{CommandID: fmt.Sprintf("cmd-taken-%v", newHolderDone), Digest: testDigest, Shard: "shardId-000000000000", Sequence: "7"}
		w1, w2 := e.worker(t, "w1", clk), e.worker(t, "w2", clk)
		if err := w1.Claim(t.Context(), c); err != nil {
			t.Fatalf("Claim = %v", err)
		}
		clk.Add(31 * time.Second) // past ClaimTimeout
		if err := w2.Claim(t.Context(), c); err != nil {
			t.Fatalf("another worker's Claim of the expired claim = %v", err)
		}
		want := StatusInProgress
		if newHolderDone {
			if err := w2.Finish(t.Context(), c.Identity(), Final{Verdict: verdict.Failed, Reason: "theirs"}); err != nil {
				t.Fatalf("new holder's Finish = %v", err)
			}
			want = StatusDone
		}
		if err := w1.Finish(t.Context(), c.Identity(), Final{Verdict: verdict.Executed}); !errors.Is(err, ErrClaimedElsewhere) {
			t.Errorf("new holder done %v: Finish after the takeover = %v; want ErrClaimedElsewhere", newHolderDone, err)
		}
		rec, err := w1.Get(t.Context(), c.CommandID)
		if err != nil {
			t.Fatalf("Get = %v", err)
		}
		if rec.Status != want || rec.Owner != "w2" || newHolderDone && rec.Reason != "theirs" {
			t.Errorf("new holder done %v: item %s by %s (%q); want %s by w2", newHolderDone, rec.Status, rec.Owner, rec.Reason, want)
		}
	}
}
