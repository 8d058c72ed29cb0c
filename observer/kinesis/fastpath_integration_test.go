package kinesis

// What idempotency costs in DynamoDB requests, through the real KCL worker,
// the emulators and the outcomes and lease tables: a proxy in front of
// dynalite counts the requests by operation and table (emulator.OpCounter).

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"
	kintypes "github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/kinesis/leases"
	"github.com/sauna-io/sauna/observer/metrics"
	"github.com/sauna-io/sauna/responders"
)

// putBatch puts commands first..first+n-1 with PutRecords, spread over keys
// partition keys.
func putBatch(t *testing.T, kin *kds.Client, stream string, first, n, keys int, text string) {
	t.Helper()
	for from := first; from < first+n; from += 500 {
		var entries []kintypes.PutRecordsRequestEntry
		for i := from; i < min(from+500, first+n); i++ {
			entries = append(entries, kintypes.PutRecordsRequestEntry{
				PartitionKey: aws.String(fmt.Sprintf("key-%d", i%keys)), Data: slackRecord(fmt.Sprint(i), text).Data})
		}
		out, err := kin.PutRecords(t.Context(), &kds.PutRecordsInput{StreamName: aws.String(stream), Records: entries})
		if err != nil {
			t.Fatal(err)
		}
		if n := aws.ToInt32(out.FailedRecordCount); n > 0 {
			t.Fatalf("%d records not put", n)
		}
	}
}

// TestIntegrationFastPathCost: commands the outcome table has never seen
// cost no DynamoDB request each: one BatchGetItem per batch (at most 100
// records) and BatchWriteItems of up to 25 outcomes; no claim, no outcome
// update.
func TestIntegrationFastPathCost(t *testing.T) {
	env := useEmulators(t)
	counter := emulator.NewOpCounter(t, env.DynamoDBURL)
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", counter.URL)
	stream := emulator.UniqueName(t, "cost")
	id := emulator.UniqueName(t, "obs")
	table := id + "-commands"
	env.CreateStream(t, stream, 1)
	const n = 400
	putBatch(t, env.Kinesis(t), stream, 1, n, 40, "hi")

	col, v := &collector{}, newVendorLog()
	stop := startWorker(t, testConfig(id, stream), col, v, nil)
	outs := col.waitFor(t, n, 90*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if executed := executedPerCommand(t, outs); len(executed) != n {
		t.Fatalf("%d commands executed, want %d", len(executed), n)
	}
	t.Logf("DynamoDB requests: %v", counter.Counts())
	if claims, updates := counter.CountOn("PutItem", table), counter.CountOn("UpdateItem", table); claims+updates != 0 {
		t.Errorf("%d claims and %d outcome updates for %d new commands, want none", claims, updates, n)
	}
	reads, writes := counter.CountOn("BatchGetItem", table), counter.CountOn("BatchWriteItem", table)
	// MaxRecords is 100: a batch is at most one Peek.
	if reads < n/100 || reads > n/5 {
		t.Errorf("%d BatchGetItems for %d commands; want one per batch of at most 100", reads, n)
	}
	if writes < n/25 || writes > n/5 {
		t.Errorf("%d BatchWriteItems for %d commands; want between %d and %d", writes, n, n/25, n/5)
	}
	if total := reads + writes; total > n/4 {
		t.Errorf("%d requests for %d commands, want far fewer", total, n)
	}
	checkFinal(t, env, table, commandID(1), commandID(n/2), commandID(n))
}

// heldVendor answers at once, except commands whose text starts with
// "hold" while holding is set: those wait until their call is cancelled.
type heldVendor struct {
	*vendorLog
	holding atomic.Bool
}

func (h *heldVendor) Respond(ctx context.Context, c *responders.Command) error {
	var d struct{ Text string }
	_ = json.Unmarshal(c.Data, &d)
	if h.holding.Load() && strings.HasPrefix(d.Text, "hold") {
		h.vendorLog.mu.Lock()
		h.vendorLog.tries[c.ID+" "+d.Text]++
		h.vendorLog.mu.Unlock()
		<-ctx.Done()
		return responders.Retryable(ctx.Err(), 0)
	}
	return h.vendorLog.Respond(ctx, c)
}

// TestIntegrationTakeoverClaimsWhatMayHaveStarted: a worker reads five
// records, runs three of them without claims (their outcomes recorded in
// bulk) and stops with the other two still at the vendor, so that its
// checkpoint stays before all five. The next worker knows when the first
// one's lease ended: it claims each of the five, which arrived before then
// (the first may have started any of them), runs again only the two that
// were never recorded, and skips the three that were; it checks none of
// them in bulk.
func TestIntegrationTakeoverClaimsWhatMayHaveStarted(t *testing.T) {
	env := useEmulators(t)
	counter := emulator.NewOpCounter(t, env.DynamoDBURL)
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", counter.URL)
	stream := emulator.UniqueName(t, "mark")
	id := emulator.UniqueName(t, "obs")
	table := id + "-commands"
	env.CreateStream(t, stream, 1)
	kin := env.Kinesis(t)
	texts := []string{"hold first", "quick", "quick", "quick", "hold last"}
	for i, text := range texts {
		put(t, kin, stream, i+1, text, fmt.Sprintf("key-%d", i+1), "")
	}

	v := &heldVendor{vendorLog: newVendorLog()}
	v.holding.Store(true)
	col := &collector{}
	cfg := testConfig(id, stream)
	stop := runObserver(t, cfg, v, Options{OnOutcome: col.add, DrainTimeout: time.Second})
	col.waitFor(t, 3, 60*time.Second)
	deadline := time.Now().Add(60 * time.Second)
	for v.tried(commandID(1), texts[0]) == 0 || v.tried(commandID(5), texts[4]) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the held commands did not reach the vendor within 60s: %s", v)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, row := range scanLeases(t, env, id) {
		if leases.IsLeaseKey(attr(row, "ShardID")) && (attr(row, "LeaseTimeout") == "" || attr(row, "Checkpoint") != "") {
			t.Fatalf("lease after the first worker: %v; want its lease's end and no checkpoint", row)
		}
	}

	v.holding.Store(false)
	counter.Reset()
	col2 := &collector{}
	stop2 := runObserver(t, cfg, v, Options{OnOutcome: col2.add})
	outs := col2.waitFor(t, len(texts), 60*time.Second)
	if err := stop2(); err != nil {
		t.Fatal(err)
	}
	verdicts := map[string]string{}
	for _, o := range outs {
		verdicts[o.CommandID] = string(o.Verdict)
	}
	for i, text := range texts {
		want := "executed"
		if text == "quick" {
			want = "duplicate"
		}
		if got := verdicts[commandID(i+1)]; got != want {
			t.Errorf("command %d (%s) after the takeover: %s, want %s", i+1, text, got, want)
		}
		if got := v.received(commandID(i+1), text); got != 1 {
			t.Errorf("the vendor took command %d (%s) %d times, want once", i+1, text, got)
		}
	}
	t.Logf("DynamoDB requests of the second worker: %v", counter.Counts())
	if claims := counter.CountOn("PutItem", table); claims != len(texts) {
		t.Errorf("%d claims, want one per record that arrived before the first lease ended (%d)", claims, len(texts))
	}
	if reads := counter.CountOn("BatchGetItem", table); reads != 0 {
		t.Errorf("%d BatchGetItems: records the first worker may have started are claimed, not checked in bulk", reads)
	}
	checkFinal(t, env, table, commandID(1), commandID(2), commandID(5))
}

// TestIntegrationSameIDTwoShardsOneProcess: one worker reads both shards;
// the same command put on each runs once. Both copies are checked before
// either has run: the second waits for the first in memory, then finds it
// done.
func TestIntegrationSameIDTwoShardsOneProcess(t *testing.T) {
	env := useEmulators(t)
	stream := emulator.UniqueName(t, "dup1p")
	id := emulator.UniqueName(t, "obs")
	env.CreateStream(t, stream, 2)
	kin := env.Kinesis(t)
	const cmds = 10
	for n := range cmds {
		for shard := range 2 {
			put(t, kin, stream, n, "same", fmt.Sprintf("key-%d-%d", n, shard), hashKeyOfShard(shard, 2))
		}
	}
	col, v, m := &collector{}, newVendorLog(), metrics.New(metrics.Options{})
	v.gate = make(chan struct{})
	stop := startWorker(t, testConfig(id, stream), col, v, m)
	deadline := time.Now().Add(60 * time.Second)
	for inFlight(m) < 2*cmds {
		if time.Now().After(deadline) {
			t.Fatalf("records in flight after 60s: %d, want %d", inFlight(m), 2*cmds)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(v.gate)
	outs := col.waitFor(t, 2*cmds, 60*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for n := range cmds {
		ids = append(ids, commandID(n))
		if got := v.received(commandID(n), "same"); got != 1 {
			t.Errorf("the vendor received command %d %d times, want once; all: %s", n, got, v)
		}
	}
	if executed := executedPerCommand(t, outs); len(executed) != cmds {
		t.Errorf("executed %v, want each of %d commands once", executed, cmds)
	}
	checkFinal(t, env, id+"-commands", ids...)
}
