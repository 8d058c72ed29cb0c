package kinesis

// The duplicate paths of idempotency, through the real KCL worker, the
// emulators and the outcomes table: a producer that puts one commandId twice
// (on one shard, on two shards owned by two workers) and a table write whose
// answer is lost after it landed. Every assertion is about what the vendor
// stand-in received and what the table finally holds, never about which
// DynamoDB calls carried the claims and outcomes, so that they hold for any
// way of writing them.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/sauna-io/sauna/observer/command"
	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/metrics"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
)

// vendorLog stands in for a vendor: it counts the requests it received per
// command (commandId and text). With a gate, it answers none until the gate
// is closed. It refuses the first request of each command refuseFirst
// names with a 503, which does nothing at the vendor and is not counted as
// received (tries counts every request).
type vendorLog struct {
	mu          sync.Mutex
	calls       map[string]int
	tries       map[string]int
	gate        chan struct{}
	refuseFirst func(commandID string) bool
}

func newVendorLog() *vendorLog { return &vendorLog{calls: map[string]int{}, tries: map[string]int{}} }

func (v *vendorLog) Respond(ctx context.Context, c *responders.Command) error {
	var d struct{ Text string }
	if err := json.Unmarshal(c.Data, &d); err != nil {
		return responders.Permanent(err)
	}
	v.mu.Lock()
	v.tries[c.ID+" "+d.Text]++
	if v.refuseFirst != nil && v.refuseFirst(c.ID) && v.tries[c.ID+" "+d.Text] == 1 {
		v.mu.Unlock()
		return responders.Retryable(errors.New("HTTP 503"), 0)
	}
	v.calls[c.ID+" "+d.Text]++
	v.mu.Unlock()
	if v.gate != nil {
		select {
		case <-v.gate:
		case <-ctx.Done():
			return responders.Retryable(ctx.Err(), 0)
		}
	}
	return nil
}

// tried is how many requests the vendor got for the command, refused or
// not.
func (v *vendorLog) tried(commandID, text string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.tries[commandID+" "+text]
}

// received is how many requests the vendor took for the command.
func (v *vendorLog) received(commandID, text string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.calls[commandID+" "+text]
}

func (v *vendorLog) String() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return fmt.Sprint(v.calls)
}

// commandID is the commandId slackRecord gives to sequence number n.
func commandID(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }

// startWorker runs an observer whose one responder is v, reporting to col.
func startWorker(t *testing.T, cfg Config, col *collector, v *vendorLog, m *metrics.Metrics) (stop func() error) {
	t.Helper()
	return runObserver(t, cfg, v, Options{OnOutcome: col.add, Metrics: m})
}

// put writes command n with text under key; hashKey, when set, picks the
// shard.
func put(t *testing.T, kin *kds.Client, stream string, n int, text, key, hashKey string) {
	t.Helper()
	in := &kds.PutRecordInput{StreamName: aws.String(stream), PartitionKey: aws.String(key), Data: slackRecord(fmt.Sprint(n), text).Data}
	if hashKey != "" {
		in.ExplicitHashKey = aws.String(hashKey)
	}
	if _, err := kin.PutRecord(t.Context(), in); err != nil {
		t.Fatal(err)
	}
}

// conflictsCounted is sauna_command_id_conflicts_total of observer id, in
// all of ms.
func conflictsCounted(t *testing.T, id string, ms ...*metrics.Metrics) float64 {
	t.Helper()
	var sum float64
	for _, m := range ms {
		sum += counterSum(t, m, "sauna_command_id_conflicts_total", "observer", id)
	}
	return sum
}

// counterSum is the sum of counter name's series in m whose label has
// value.
func counterSum(t *testing.T, m *metrics.Metrics, name, label, value string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					sum += s.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// executedPerCommand counts the records reported executed by commandId,
// and asserts that every other record was reported a duplicate.
func executedPerCommand(t *testing.T, outs []command.Outcome) map[string]int {
	t.Helper()
	executed := map[string]int{}
	for _, o := range outs {
		switch o.Verdict {
		case verdict.Executed:
			executed[o.CommandID]++
		case verdict.Duplicate:
		default:
			t.Errorf("record %s of command %s: %s %v, want executed or duplicate", o.Sequence, o.CommandID, o.Verdict, o.Err)
		}
	}
	return executed
}

// checkFinal asserts that every command under each id is recorded done,
// executed, in the outcomes table: nothing that ran is left to run again.
func checkFinal(t *testing.T, env emulator.Env, table string, ids ...string) {
	t.Helper()
	tab := outcomes.New(env.DynamoDB(t), outcomes.Config{TableName: table})
	for _, id := range ids {
		recs, err := tab.Lookup(t.Context(), id)
		if err != nil {
			t.Errorf("command %s: %v", id, err)
			continue
		}
		for _, r := range recs {
			if r.Status != outcomes.StatusDone || r.Verdict != verdict.Executed {
				t.Errorf("command %s (digest %s) recorded %s/%s, want done/executed", id, r.Digest, r.Status, r.Verdict)
			}
		}
	}
}

// TestIntegrationSameIDOneShard: a producer puts one command twice more
// under its commandId, on the shard's same key and on another key (run
// concurrently), and a different command twice under the same id. The
// vendor receives each command once; the different one is counted as an id
// conflict.
func TestIntegrationSameIDOneShard(t *testing.T) {
	env := useEmulators(t)
	stream := emulator.UniqueName(t, "dup1")
	id := emulator.UniqueName(t, "obs")
	env.CreateStream(t, stream, 1)
	kin := env.Kinesis(t)
	const n = 7
	cmdID := commandID(n)
	for _, r := range []struct{ text, key string }{
		{"first", "a"}, {"first", "b"}, {"first", "a"}, {"other", "c"}, {"other", "d"},
	} {
		put(t, kin, stream, n, r.text, r.key, "")
	}

	col, v, m := &collector{}, newVendorLog(), metrics.New(metrics.Options{})
	stop := startWorker(t, testConfig(id, stream), col, v, m)
	// Each record reports once, after any request it made.
	outs := col.waitFor(t, 5, 60*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"first", "other"} {
		if got := v.received(cmdID, text); got != 1 {
			t.Errorf("the vendor received command %q %d times, want once; all: %s", text, got, v)
		}
	}
	if executed := executedPerCommand(t, outs)[cmdID]; executed != 2 || len(outs) != 5 {
		t.Errorf("%d outcomes, %d executed; want 5 outcomes, 2 executed (one per command): %+v", len(outs), executed, outs)
	}
	if got := conflictsCounted(t, id, m); got != 1 {
		t.Errorf("sauna_command_id_conflicts_total = %v, want 1", got)
	}
	checkFinal(t, env, id+"-commands", cmdID)
}

// TestIntegrationSameIDTwoShards: a producer puts commands twice under one
// commandId with partition keys routed to two shards, read by two workers
// of one observer. The copies on the first shard are put first; the vendor
// refuses the first request of every command (a 503), so each of them takes
// a claim before its retry, and answers nothing more until both workers
// have taken in every record. The copies on the second shard, put while
// their twins are claimed and being sent, meet a live claim, and are
// skipped as done once their twins finish. Each command reaches the vendor
// once; a different command under a reused id runs too, counted as a
// conflict. (Two processes that read the two copies at the very same moment
// may both run them: README's cost model says so; this test puts the
// second copies once the first are claimed.)
func TestIntegrationSameIDTwoShards(t *testing.T) {
	env := useEmulators(t)
	stream := emulator.UniqueName(t, "dup2")
	id := emulator.UniqueName(t, "obs")
	env.CreateStream(t, stream, 2)
	kin := env.Kinesis(t)

	// One shard each, so that the two copies of a command are claimed by
	// different workers, each with its own view of its claims.
	cfg := testConfig(id, stream)
	cfg.ScaleOut.MaxLeasesPerWorker = 1
	col, v := &collector{}, newVendorLog()
	v.gate, v.refuseFirst = make(chan struct{}), func(string) bool { return true }
	ms := []*metrics.Metrics{metrics.New(metrics.Options{}), metrics.New(metrics.Options{})}
	stopA := startWorker(t, cfg, col, v, ms[0])
	stopB := startWorker(t, cfg, col, v, ms[1])
	waitForTable(t, env, id)
	waitForLeases(t, env, id, 2)

	const same, reused = 10, 5
	text := func(n, shard int) string {
		if n >= same {
			return fmt.Sprintf("from shard %d", shard)
		}
		return "same"
	}
	for shard := range 2 {
		for n := range same + reused {
			put(t, kin, stream, n, text(n, shard), fmt.Sprintf("key-%d-%d", n, shard), hashKeyOfShard(shard, 2))
		}
		if shard == 1 {
			break
		}
		// Every first copy refused once and retried: claimed, and held at
		// the vendor.
		deadline := time.Now().Add(60 * time.Second)
		for n := 0; n < same+reused; {
			if v.tried(commandID(n), text(n, 0)) >= 2 {
				n++
				continue
			}
			if time.Now().After(deadline) {
				t.Fatalf("command %d not retried within 60s; all: %s", n, v)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Taken in (and so in flight) by both, before anything has finished.
	deadline := time.Now().Add(60 * time.Second)
	for inFlight(ms[0])+inFlight(ms[1]) < 2*(same+reused) {
		if time.Now().After(deadline) {
			t.Fatalf("records in flight after 60s: %d and %d, want %d in all", inFlight(ms[0]), inFlight(ms[1]), 2*(same+reused))
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(v.gate)
	outs := col.waitFor(t, 2*(same+reused), 90*time.Second)
	for _, stop := range []func() error{stopA, stopB} {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}

	shards := map[string]bool{}
	for _, o := range outs {
		shards[o.Shard] = true
	}
	if len(shards) != 2 {
		t.Fatalf("records came from shards %v, want 2", shards)
	}
	var ids []string
	for n := range same + reused {
		ids = append(ids, commandID(n))
		texts := []string{"same"}
		if n >= same {
			texts = []string{"from shard 0", "from shard 1"}
		}
		for _, text := range texts {
			if got := v.received(commandID(n), text); got != 1 {
				t.Errorf("the vendor received command %s %q %d times, want once; all: %s", commandID(n), text, got, v)
			}
		}
	}
	if len(outs) != 2*(same+reused) {
		t.Errorf("%d outcomes, want %d", len(outs), 2*(same+reused))
	}
	if got := conflictsCounted(t, id, ms...); got != reused {
		t.Errorf("sauna_command_id_conflicts_total = %v, want %d", got, reused)
	}
	checkFinal(t, env, id+"-commands", ids...)
}

// inFlight is the number of records the one observer of m has in flight.
func inFlight(m *metrics.Metrics) int64 {
	var n int64
	for _, o := range m.Observers() {
		n += o.InFlight
	}
	return n
}

// waitForTable waits until the observer has created its lease table.
func waitForTable(t *testing.T, env emulator.Env, table string) {
	t.Helper()
	db := env.DynamoDB(t)
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := db.DescribeTable(t.Context(), &dynamodb.DescribeTableInput{TableName: aws.String(table)})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease table %q not created within 60s: %v", table, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// answerDropper is an HTTP proxy in front of DynamoDB that loses the answer
// to chosen writes: the request reaches DynamoDB and takes effect, then the
// client's connection is closed before any response, as when a network or a
// timeout cuts a call that succeeded.
type answerDropper struct {
	URL string

	table string
	up    *url.URL
	rp    *httputil.ReverseProxy

	mu     sync.Mutex
	nth    map[string][]int // commandId -> the writes mentioning it (1 for the first) whose answers are lost
	writes map[string]int   // commandId -> writes mentioning it so far
	lost   map[string]int   // commandId -> answers lost
}

func newAnswerDropper(t *testing.T, target, table string, nth map[string][]int) *answerDropper {
	t.Helper()
	up, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	d := &answerDropper{table: table, up: up, rp: httputil.NewSingleHostReverseProxy(up),
		nth: nth, writes: map[string]int{}, lost: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(d.serve))
	t.Cleanup(srv.Close)
	d.URL = srv.URL
	return d
}

func (d *answerDropper) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if !d.drops(r.Header.Get("X-Amz-Target"), body) {
		d.rp.ServeHTTP(w, r)
		return
	}
	// Forwarded whole and answered, then the answer is thrown away.
	fwd, err := http.NewRequestWithContext(r.Context(), r.Method, d.up.JoinPath(r.URL.Path).String(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	fwd.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(fwd)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	conn, _, herr := http.NewResponseController(w).Hijack()
	if herr != nil {
		http.Error(w, herr.Error(), http.StatusBadGateway)
		return
	}
	conn.Close()
}

// drops counts a write to the table and tells whether to lose its answer.
func (d *answerDropper) drops(target string, body []byte) bool {
	op := target[strings.LastIndexByte(target, '.')+1:]
	switch op {
	case "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems":
	default:
		return false
	}
	if !bytes.Contains(body, []byte(`"`+d.table+`"`)) {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	drop := false
	for id, nth := range d.nth {
		if bytes.Contains(body, []byte(id)) {
			d.writes[id]++
			if slices.Contains(nth, d.writes[id]) {
				d.lost[id]++
				drop = true
			}
		}
	}
	return drop
}

func (d *answerDropper) answersLost(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lost[id]
}

// TestIntegrationLostWriteAnswer: the answers to writes of the outcomes
// table are lost after the writes took effect. Commands run without a claim
// have one write, their outcome in a bulk write: for command 1 its answer is
// lost once, which the SDK's own retry meets; for command 3 three times in
// a row, which outlasts the SDK's retries (3 attempts) so that the error
// reaches the worker. Command 2 is put twice, on two keys that run
// concurrently: its second write is the claim of its second record (which
// must find it done), answered once too late. Command 4's first attempt is
// refused by the vendor, so it takes a claim (write 1), extends it for the
// retry (write 2) and records its outcome (write 3): the answers to writes 3
// to 5 are lost, so the outcome's error reaches the worker. Each command
// reaches the vendor exactly once and ends recorded as executed: a write of
// unknown fate is neither taken for a finished command (it would be lost)
// nor run again.
func TestIntegrationLostWriteAnswer(t *testing.T) {
	env := useEmulators(t)
	stream := emulator.UniqueName(t, "lost")
	id := emulator.UniqueName(t, "obs")
	table := id + "-commands"
	env.CreateStream(t, stream, 1)
	kin := env.Kinesis(t)
	lose := map[int][]int{1: {1}, 2: {2}, 3: {1, 2, 3}, 4: {3, 4, 5}}
	const control = 5 // nothing lost
	keys := map[int][]string{1: {"a"}, 2: {"a", "b"}, 3: {"a"}, 4: {"a"}, control: {"a", "b"}}
	nth := map[string][]int{}
	for n, writes := range lose {
		nth[commandID(n)] = writes
	}
	dropper := newAnswerDropper(t, env.DynamoDBURL, table, nth)
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", dropper.URL)

	records := 0
	for n := 1; n <= control; n++ {
		for _, key := range keys[n] {
			put(t, kin, stream, n, "text", fmt.Sprintf("%s-%d", key, n), "")
			records++
		}
	}
	cfg := testConfig(id, stream)
	// A claim of unknown fate is waited out: keep that short.
	cfg.Idempotency.ClaimTimeout = 3 * time.Second
	col, v := &collector{}, newVendorLog()
	v.refuseFirst = func(id string) bool { return id == commandID(4) }
	stop := startWorker(t, cfg, col, v, nil)
	outs := col.waitFor(t, records, 120*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for n := range lose {
		// At least one: the writes a command needs may change, not that
		// every command needs one.
		if dropper.answersLost(commandID(n)) == 0 {
			t.Errorf("command %d: no answer lost (the test did not test)", n)
		}
	}
	executed := executedPerCommand(t, outs)
	var ids []string
	for n := 1; n <= control; n++ {
		ids = append(ids, commandID(n))
		if got := v.received(commandID(n), "text"); got != 1 {
			t.Errorf("the vendor received command %d %d times, want once; all: %s", n, got, v)
		}
		if executed[commandID(n)] != 1 {
			t.Errorf("command %d reported executed %d times, want once: %+v", n, executed[commandID(n)], outs)
		}
	}
	checkFinal(t, env, table, ids...)
}
