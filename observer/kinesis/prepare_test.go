package kinesis

import (
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"

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
