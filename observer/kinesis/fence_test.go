package kinesis

import (
	"context"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"

	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/responders/fence"
)

// slowWriteLedger takes a while to write each claim, as a distant DynamoDB does.
type slowWriteLedger struct {
	*fakeLedger
	delay time.Duration
}

func (c slowWriteLedger) Claim(ctx context.Context, cl outcomes.Claim) error {
	time.Sleep(c.delay)
	return c.fakeLedger.Claim(ctx, cl)
}

// The responder call carries a fence: a fifth of the lease or the claim
// before either runs out, both counted from before the write that took them
// (a slow claim write does not lengthen the claim).
func TestDispatchIsFenced(t *testing.T) {
	for _, tc := range []struct {
		name                string
		lease, claimTimeout time.Duration
		want                time.Duration // after the record started
	}{
		{"the claim runs out first", 10 * time.Second, 5 * time.Second, 4 * time.Second},
		{"the lease runs out first", 10 * time.Second, time.Minute, 8 * time.Second},
		{"margins are at most 5 s", time.Minute, 10 * time.Minute, 55 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, func(o *Observer) {
					o.cfg.Idempotency.ClaimTimeout = tc.claimTimeout
					o.ledger = slowWriteLedger{newFakeLedger(), 2 * time.Second}
				})
				start := time.Now()
				h.p.o.cfg.LeaseDuration = tc.lease
				h.p.o.leaseUntil = func(string) time.Time { return start.Add(tc.lease) }
				var seen []time.Duration
				h.resp.reply = func(ctx context.Context, _ string, _ int) error {
					if u, ok := fence.Until(ctx); ok {
						seen = append(seen, u.Sub(start))
					}
					return nil
				}
				cp := &fakeCheckpointer{}
				h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{slackRecord("1", "hi")}})
				h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
				if !slices.Equal(seen, []time.Duration{tc.want}) {
					t.Errorf("fences seen by the responder %v, want [%v]", seen, tc.want)
				}
			})
		})
	}
}

// A worker whose lease is about to run out by its own clock (inside the
// fence's margin), or has run out without being found lost, starts nothing:
// it waits for the renewal that comes late, then runs the command once, and
// is not restarted for it.
func TestLateRenewalIsWaitedFor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		left    time.Duration // of the 5 s lease when the record comes
		renewAt time.Duration
	}{
		{"inside the margin", 500 * time.Millisecond, 200 * time.Millisecond},
		{"run out", -time.Second, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t)
				h.p.o.fatal = make(chan error, 1)
				start := time.Now()
				var mu sync.Mutex
				lease := start.Add(tc.left)
				h.p.o.cfg.LeaseDuration = 5 * time.Second
				h.p.o.leaseUntil = func(string) time.Time {
					mu.Lock()
					defer mu.Unlock()
					return lease
				}
				go func() {
					time.Sleep(tc.renewAt)
					mu.Lock()
					lease = time.Now().Add(5 * time.Second)
					mu.Unlock()
				}()
				var calls []time.Duration
				h.resp.reply = func(context.Context, string, int) error {
					calls = append(calls, time.Since(start))
					return nil
				}
				cp := &fakeCheckpointer{}
				h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{slackRecord("1", "hi")}})
				h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
				if len(calls) != 1 || calls[0] < tc.renewAt {
					t.Errorf("responder called at %v, want once, after the renewal at %v", calls, tc.renewAt)
				}
				if got := h.results(); !slices.Equal(got, []string{"1=executed"}) {
					t.Errorf("outcomes %v", got)
				}
				select {
				case err := <-h.p.o.fatal:
					t.Errorf("observer restart requested for a late renewal: %v", err)
				default:
				}
			})
		})
	}
}

// A lease found lost while waiting ends the wait: nothing runs, and the
// record is left for the next owner.
func TestLostLeaseEndsTheWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.p.o.cfg.LeaseDuration = 5 * time.Second
		h.p.o.leaseUntil = func(string) time.Time {
			select {
			case <-h.lost:
				return time.Time{}
			default:
				return time.Now().Add(-time.Second)
			}
		}
		go func() {
			time.Sleep(3 * time.Second)
			close(h.lost)
		}()
		cp := &fakeCheckpointer{}
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{slackRecord("1", "hi")}})
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
		if len(h.resp.calls) != 0 || len(h.results()) != 0 || len(cp.written) != 0 {
			t.Errorf("calls %v, outcomes %v, checkpoints %v: nothing may run or be checkpointed without the lease",
				h.resp.calls, h.results(), cp.written)
		}
	})
}
