package kinesis

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"

	"github.com/sauna-io/sauna/observer/command"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/responders"
)

// Every record of a chunk is prepared once, into its own entry, whether a
// background goroutine or the one waiting for the chunk took it; a short
// last chunk is prepared on the spot.
func TestPrepareAheadPreparesEveryRecord(t *testing.T) {
	d := responders.NewDispatcher(nil)
	d.Replace(map[string]responders.Enabled{"webhook": {ID: "webhook", Module: "webhook", Responder: noopResponder{}}})
	o := benchObserver(64, d)
	o.ledger = freeLedger{}
	p := newShardProcessor(o)
	p.Initialize(&kcl.InitializationInput{ShardId: "shardId-000000000000"})
	recs := make([]types.Record, 2*chunkSize+prepareInline/2)
	for i := range recs {
		recs[i] = webhookRecord(i, 7, time.Now())
	}
	for from := 0; from < len(recs); from += chunkSize {
		es := p.prepareAhead(recs, from)()
		if want := min(chunkSize, len(recs)-from); len(es) != want {
			t.Fatalf("chunk at %d: %d entries, want %d", from, len(es), want)
		}
		for i := range es {
			e, r := &es[i], &recs[from+i]
			if e.seq != aws.ToString(r.SequenceNumber) || e.key != aws.ToString(r.PartitionKey) || e.cmd.Sequence() != e.seq {
				t.Fatalf("entry %d: %s %s (prepared %s), want record %s %s", from+i, e.seq, e.key, e.cmd.Sequence(), aws.ToString(r.SequenceNumber), aws.ToString(r.PartitionKey))
			}
			c, ok := e.cmd.Claim(p.shardID)
			if want := fmt.Sprintf("3f2a6c1e-8d4b-4a7e-9c2f-%012d", from+i+1); !ok || c.CommandID != want || c.Digest == "" {
				t.Fatalf("entry %d: claim %+v, %v; want command %s, digested", from+i, c, ok, want)
			}
		}
	}
}

// countingLedger is a freeLedger that counts its Peeks and the commands
// they asked about.
type countingLedger struct {
	freeLedger
	mu            sync.Mutex
	peeks, peeked int
}

func (l *countingLedger) Peek(ctx context.Context, cs []outcomes.Claim) ([]outcomes.Peeked, error) {
	l.mu.Lock()
	l.peeks++
	l.peeked += len(cs)
	l.mu.Unlock()
	return l.freeLedger.Peek(ctx, cs)
}

func (l *countingLedger) counts() (peeks, peeked int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peeks, l.peeked
}

// A chunk prepared ahead is also checked in the ledger ahead, with one
// Peek, before anyone waits for it: the next chunk's lookup is made while
// the current one is admitted, not between them.
func TestPrepareAheadPeeksInTheBackground(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := responders.NewDispatcher(nil)
		d.Replace(map[string]responders.Enabled{"webhook": {ID: "webhook", Module: "webhook", Responder: noopResponder{}}})
		o := benchObserver(64, d)
		ledger := &countingLedger{}
		o.ledger = ledger
		o.memory = command.NewMemory()
		o.batcher = command.NewBatcher(ledger, o.log)
		o.previousLeaseEnd = func(string) time.Time { return time.Time{} }
		hard, stop := context.WithCancel(context.Background())
		defer stop() // ends what the shard derived from it
		o.hard = hard
		p := newShardProcessor(o)
		p.Initialize(&kcl.InitializationInput{ShardId: "shardId-000000000000"})
		recs := make([]types.Record, chunkSize)
		for i := range recs {
			recs[i] = webhookRecord(i, 7, time.Now())
		}
		next := p.prepareAhead(recs, 0)
		synctest.Wait()
		if peeks, peeked := ledger.counts(); peeks != 1 || peeked != chunkSize {
			t.Fatalf("before the chunk was asked for: %d Peeks of %d commands, want 1 of %d", peeks, peeked, chunkSize)
		}
		es := next()
		if peeks, _ := ledger.counts(); peeks != 1 {
			t.Errorf("%d Peeks once the chunk was taken, want 1", peeks)
		}
		for i := range es {
			if c, ok := es[i].cmd.Claim(p.shardID); !ok || c.CommandID == "" {
				t.Fatalf("entry %d not prepared", i)
			}
		}
	})
}
