package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sauna-io/sauna/observer/deadletter"
	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/verdict"
)

// dlvReadLetters reads every dead letter on a stream, oldest first per shard.
func dlvReadLetters(t *testing.T, kin *kinesis.Client, stream string) []deadletter.Letter {
	t.Helper()
	shards, err := kin.ListShards(t.Context(), &kinesis.ListShardsInput{StreamName: aws.String(stream)})
	if err != nil {
		t.Fatalf("list shards of %s: %v", stream, err)
	}
	var letters []deadletter.Letter
	for _, sh := range shards.Shards {
		it, err := kin.GetShardIterator(t.Context(), &kinesis.GetShardIteratorInput{
			StreamName: aws.String(stream), ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
		})
		if err != nil {
			t.Fatalf("iterator of %s/%s: %v", stream, aws.ToString(sh.ShardId), err)
		}
		for iter := it.ShardIterator; iter != nil; {
			out, err := kin.GetRecords(t.Context(), &kinesis.GetRecordsInput{ShardIterator: iter})
			if err != nil {
				t.Fatalf("read %s: %v", stream, err)
			}
			for _, r := range out.Records {
				l, err := deadletter.Decode(r.Data)
				if err != nil {
					t.Errorf("record %s on the dead-letter stream is not a dead letter: %v\n%s", aws.ToString(r.SequenceNumber), err, r.Data)
					continue
				}
				letters = append(letters, l)
			}
			if len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0 {
				break
			}
			iter = out.NextShardIterator
		}
	}
	return letters
}

func dlvWaitLetter(t *testing.T, kin *kinesis.Client, stream, commandID string) deadletter.Letter {
	t.Helper()
	var found []deadletter.Letter
	waitFor(t, giveUp, func() bool {
		found = found[:0]
		for _, l := range dlvReadLetters(t, kin, stream) {
			if l.CommandID == commandID {
				found = append(found, l)
			}
		}
		return len(found) > 0
	}, func() string { return fmt.Sprintf("a dead letter for %s on %s", commandID, stream) })
	if len(found) != 1 {
		t.Errorf("command %s was dead-lettered %d times, want once: %+v", commandID, len(found), found)
	}
	return found[0]
}

// TestDeliveryOutage runs the binary against a webhook receiver that
// answers 503 for a while, then 429 with Retry-After: 1, then recovers (15 s
// of outage; 60 s with SAUNA_SOAK=1), while commands keep arriving. Nothing
// is lost and each key keeps its order. A command the receiver refuses with
// 400 is dead-lettered with the receiver's reason, its attempts and its
// original bytes, and the commands after it on its key still flow; a command
// that keeps failing on an observer with a 2 s retry budget is dead-lettered
// as retry_budget_exhausted, and a record that is not JSON as rejected.
// `sauna replay` then lists the refused command in a dry run and
// re-publishes it, and the receiver, now willing, gets it. The two observers
// share the process, so their lease log lines must name the right one.
func TestDeliveryOutage(t *testing.T) {
	env := emulator.Require(t)
	started := time.Now()
	// After a long outage each key's command may sit in the observer's
	// backoff (capped at 30 s) before its next try.
	down, limited, recovery := 10*time.Second, 5*time.Second, giveUp
	if os.Getenv("SAUNA_SOAK") == "1" {
		down, limited = 45*time.Second, 15*time.Second
	}
	stream := emulator.UniqueName(t, "outage")
	budgetStream := emulator.UniqueName(t, "budget")
	dlq := emulator.UniqueName(t, "dlq")
	mainID := "com.acme." + emulator.UniqueName(t, "obs")
	budgetID := "com.acme." + emulator.UniqueName(t, "obs-budget")
	env.CreateStream(t, stream, 2)
	env.CreateStream(t, budgetStream, 1)
	env.CreateStream(t, dlq, 1)
	kin := env.Kinesis(t)

	// The refused command leads its key, so that its first attempts fall in
	// the outage; the two after it must not wait for it.
	refused := dlvWebhookCommand(uuidFor(29_000_000), "refused-key", 0)
	refusedKey := []dlvCommand{refused, dlvWebhookCommand(uuidFor(29_000_001), "refused-key", 1), dlvWebhookCommand(uuidFor(29_000_002), "refused-key", 2)}
	hopeless := dlvWebhookCommand(uuidFor(29_000_100), "hopeless-key", 0)
	const refusal = "invalid_customer: acme-400 is not a customer of this receiver"

	var outageStart atomic.Pointer[time.Time]
	var acceptRefused atomic.Bool
	srv := newDlvServer(t)
	srv.setReply(func(r dlvRequest) (int, string, string) {
		if r.ID == hopeless.ID {
			return http.StatusServiceUnavailable, "", "this one never works"
		}
		if at := outageStart.Load(); at != nil {
			switch since := time.Since(*at); {
			case since < down:
				return http.StatusServiceUnavailable, "", "down for maintenance"
			case since < down+limited:
				return http.StatusTooManyRequests, "1", "slow down"
			}
		}
		if r.ID == refused.ID && !acceptRefused.Load() {
			return http.StatusBadRequest, "", refusal
		}
		return http.StatusOK, "", "ok"
	})

	dir := t.TempDir()
	writeFile(t, dir, "observer.json", dlvObserverConfig(mainID, stream, "TRIM_HORIZON", 300000, dlq))
	writeFile(t, dir, "observer-budget.json", dlvObserverConfig(budgetID, budgetStream, "TRIM_HORIZON", 2000, dlq))
	writeFile(t, dir, "webhook.json", dlvWebhookConfig(srv.URL+"/hook"))
	p := startSauna(t, env, dir)
	p.waitLogs(t, 2, giveUp, msgIs("observer started"))

	var keys []string
	for k := range 20 {
		keys = append(keys, fmt.Sprintf("key-%02d", k))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The shards are owned and the receiver reached before the outage.
	prod := dlvStartProducer(ctx, kin, stream, keys, 20_000_000, 250*time.Millisecond)
	defer func() {
		select {
		case <-prod.stop:
		default:
			close(prod.stop)
		}
		prod.wg.Wait()
	}()
	waitFor(t, giveUp, func() bool { return len(srv.accepted()) >= 2*len(keys) },
		func() string { return fmt.Sprintf("deliveries before the outage, got %d", len(srv.accepted())) })

	now := time.Now()
	outageStart.Store(&now)
	outageEnd := now.Add(down + limited)
	t.Logf("outage starts after %d commands put: 503 for %s, then 429 for %s", prod.count(), down, limited)
	if err := dlvPut(t.Context(), kin, budgetStream, hopeless); err != nil {
		t.Fatal(err)
	}
	for _, c := range refusedKey {
		if err := dlvPut(t.Context(), kin, stream, c); err != nil {
			t.Fatal(err)
		}
	}
	// A record no responder could run is dead-lettered too, without waiting
	// for the receiver.
	garbage := dlvCommand{Key: "garbage-key", Data: []byte(`{"schema": "not json`)}
	if err := dlvPut(t.Context(), kin, stream, garbage); err != nil {
		t.Fatal(err)
	}

	// The commands on the budget observer give up within the outage.
	budgetLetter := dlvWaitLetter(t, kin, dlq, hopeless.ID)
	if budgetLetter.Reason != verdict.RetryBudgetExhausted {
		t.Errorf("budget letter reason %q, want %q", budgetLetter.Reason, verdict.RetryBudgetExhausted)
	}
	if !bytes.Equal(budgetLetter.Record, hopeless.Data) {
		t.Errorf("budget letter carries %q, want the original record %q", budgetLetter.Record, hopeless.Data)
	}
	if budgetLetter.Attempts < 1 || !strings.Contains(budgetLetter.Error, "503") {
		t.Errorf("budget letter: %d attempts, error %q; want attempts and the 503", budgetLetter.Attempts, budgetLetter.Error)
	}
	if spent := budgetLetter.LastAttempt.Sub(budgetLetter.FirstAttempt); spent < 2*time.Second {
		t.Errorf("budget letter: dead-lettered after %s of attempts, within the 2 s retry budget", spent)
	}
	if budgetLetter.Observer != budgetID || budgetLetter.Stream != budgetStream || budgetLetter.PartitionKey != hopeless.Key {
		t.Errorf("budget letter source %s/%s key %s, want %s/%s key %s", budgetLetter.Observer, budgetLetter.Stream,
			budgetLetter.PartitionKey, budgetID, budgetStream, hopeless.Key)
	}

	// Commands keep coming through the outage; the producer stops with it.
	waitFor(t, down+limited+10*time.Second, func() bool { return time.Now().After(outageEnd) },
		func() string { return "the end of the outage" })
	published := prod.finish(t)
	t.Logf("outage over after %d commands put", prod.count())
	if n := len(srv.requests()); n == 0 {
		t.Fatal("no requests at all")
	}

	var all []dlvCommand
	for _, cmds := range published {
		all = append(all, cmds...)
	}
	all = append(all, refusedKey[1:]...)
	var missing []string
	waitFor(t, recovery, func() bool {
		got := srv.accepted()
		missing = missing[:0]
		for _, c := range all {
			if got[c.ID] == 0 {
				missing = append(missing, fmt.Sprintf("%s#%d", c.Key, c.N))
			}
		}
		return len(missing) == 0
	}, func() string {
		return fmt.Sprintf("every one of %d commands after the outage; %d missing, e.g. %v", len(all), len(missing), missing[:min(len(missing), 10)])
	})
	t.Logf("all %d commands accepted %s after the outage ended", len(all), time.Since(outageEnd).Round(time.Millisecond))

	reqs := srv.requests()
	repeats := dlvCheckKeyOrder(t, reqs, published)
	dlvExplainRepeats(t, env, mainID+"-commands", repeats)
	var outage503, outage429 int
	for _, r := range reqs {
		switch r.Status {
		case http.StatusServiceUnavailable:
			outage503++
		case http.StatusTooManyRequests:
			outage429++
		}
	}
	if outage503 == 0 || outage429 == 0 {
		t.Errorf("the receiver answered 503 %d times and 429 %d times; the outage did not happen as planned", outage503, outage429)
	}
	dlvCheckRetryAfter(t, reqs)

	// The refused command went to the dead-letter stream with the receiver's
	// reason, and the commands after it on its key were not held by it.
	var rejected []deadletter.Letter
	for _, l := range dlvReadLetters(t, kin, dlq) {
		if l.PartitionKey == garbage.Key {
			rejected = append(rejected, l)
		}
	}
	if len(rejected) != 1 || rejected[0].Reason != "rejected:invalid_json" || !bytes.Equal(rejected[0].Record, garbage.Data) || rejected[0].Attempts != 0 {
		t.Errorf("dead letters for the record that is not JSON: %+v; want one, rejected:invalid_json, no attempts, with its bytes", rejected)
	}
	letter := dlvWaitLetter(t, kin, dlq, refused.ID)
	var refusedTries, refusedAt400 int
	for _, r := range reqs {
		if r.ID == refused.ID {
			refusedTries++
			if r.Status == http.StatusBadRequest {
				refusedAt400++
			}
		}
	}
	if refusedAt400 != 1 {
		t.Errorf("the refused command was answered 400 %d times, want once (a 400 is final)", refusedAt400)
	}
	if letter.Reason != verdict.FailedPermanently {
		t.Errorf("letter reason %q, want %q", letter.Reason, verdict.FailedPermanently)
	}
	if !strings.Contains(letter.Error, "400") || !strings.Contains(letter.Error, refusal) {
		t.Errorf("letter error %q does not carry the 400 and the receiver's reason %q", letter.Error, refusal)
	}
	// The letter counts the observer's attempts, each of which makes one
	// request at most (none while the receiver's Retry-After holds the
	// URL), so it counts every request the receiver saw.
	if letter.Attempts < refusedTries {
		t.Errorf("letter attempts %d; the receiver saw %d requests, %d of them during the outage", letter.Attempts, refusedTries, refusedTries-refusedAt400)
	}
	if !bytes.Equal(letter.Record, refused.Data) {
		t.Errorf("letter carries %q, want the original record %q", letter.Record, refused.Data)
	}
	if letter.Observer != mainID || letter.Stream != stream || letter.PartitionKey != refused.Key || letter.Responder != "webhook" ||
		letter.CommandSchema != "iglu:io.sauna.commands/webhook/jsonschema/1-0-0" {
		t.Errorf("letter source: %+v", letter)
	}
	var order []string
	for _, r := range reqs {
		if r.Key == refused.Key && r.Status != http.StatusServiceUnavailable && r.Status != http.StatusTooManyRequests {
			order = append(order, fmt.Sprintf("%d:%d", r.N, r.Status))
		}
	}
	if want := "0:400 1:200 2:200"; strings.Join(order, " ") != want {
		t.Errorf("key %s: the receiver's final answers were %v, want %s", refused.Key, order, want)
	}

	// A dry run lists the refused command alone (the budget one has another
	// reason) and sends nothing.
	code, stdout, stderr := runCLI(t, env, "", "replay", "--from", dlq, "--to", stream, "--reason", "failed_permanently", "--dry-run")
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if code != 0 || len(lines) != 1 || !strings.Contains(lines[0], `"commandId":"`+refused.ID+`"`) || !strings.Contains(lines[0], `"reason":"failed_permanently"`) {
		t.Fatalf("replay --dry-run: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	if strings.Contains(stdout, hopeless.ID) {
		t.Errorf("replay --reason failed_permanently lists the retry_budget_exhausted command: %s", stdout)
	}
	if n := srv.accepted()[refused.ID]; n != 0 {
		t.Errorf("the refused command was accepted %d times before the replay", n)
	}

	acceptRefused.Store(true)
	code, stdout, stderr = runCLI(t, env, "", "replay", "--from", dlq, "--to", stream, "--reason", "failed_permanently")
	if code != 0 || !strings.Contains(stdout, `"toSequenceNumber":`) || !strings.Contains(stdout, `"commandId":"`+refused.ID+`"`) || strings.Count(stdout, "\n") != 1 {
		t.Fatalf("replay: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
	waitFor(t, giveUp, func() bool { return srv.accepted()[refused.ID] > 0 },
		func() string { return fmt.Sprintf("the replayed command %s at the receiver", refused.ID) })
	code, stdout, stderr = runCLI(t, env, "", "outcome", "--table", mainID+"-commands", refused.ID)
	if code != 0 || !strings.Contains(stdout, "executed") {
		t.Errorf("outcome of the replayed command: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}

	stopCleanly(t, p)
	if n := srv.accepted()[refused.ID]; n != 1 {
		t.Errorf("the replayed command was accepted %d times, want once", n)
	}
	if n := srv.accepted()[hopeless.ID]; n != 0 {
		t.Errorf("the hopeless command was accepted %d times", n)
	}
	dlvCheckWorkerAttribution(t, p)
	t.Logf("%d commands, %d requests (%d answered 503, %d answered 429), %d repeats, in %s",
		len(all)+1, len(reqs), outage503, outage429, len(repeats), time.Since(started).Round(time.Millisecond))
}

// dlvCheckWorkerAttribution checks that log lines about a KCL worker's leases
// carry the observer that worker belongs to: with two observers in one
// process, an operator must be able to tell whose lease failed.
func dlvCheckWorkerAttribution(t *testing.T, p *process) {
	t.Helper()
	owner := map[string]string{}
	for _, m := range p.logsMatching(msgIs("observer started")) {
		owner[fmt.Sprint(m["worker"])] = fmt.Sprint(m["observer"])
	}
	if len(owner) != 2 {
		t.Errorf("%d workers started, want 2: %v", len(owner), owner)
		return
	}
	wrong := 0
	for _, m := range p.logsMatching(func(m map[string]any) bool { return strings.Contains(fmt.Sprint(m["msg"]), "for worker: ") }) {
		msg := fmt.Sprint(m["msg"])
		for worker, obs := range owner {
			if strings.Contains(msg, "for worker: "+worker) && m["observer"] != obs {
				if wrong++; wrong <= 3 {
					t.Errorf("a line about worker %s (observer %s) is attributed to observer %v: %q", worker, obs, m["observer"], msg)
				}
			}
		}
	}
	if wrong > 3 {
		t.Errorf("%d lines about one observer's worker attributed to another observer", wrong)
	}
}

// dlvCheckRetryAfter checks that a 429 with Retry-After: 1 held the command
// it answered: that command's next request comes a second after the 429 at
// the earliest. What the receiver sees of other commands cannot show the
// destination-wide pause without timing luck (a request that left before
// sauna read the 429 may arrive at any time on a busy machine), so that
// half is TestVendorDelayHoldsTheWholeDestination's, with a fake clock.
func dlvCheckRetryAfter(t *testing.T, reqs []dlvRequest) {
	t.Helper()
	// The receiver's clock and sauna's are the same wall clock; the margin
	// only covers its rounding.
	const atLeast = time.Second - 10*time.Millisecond
	limitedAt := map[string]time.Time{} // ID -> its latest 429
	checked, early := 0, 0
	for _, r := range reqs {
		if at, ok := limitedAt[r.ID]; ok {
			checked++
			if gap := r.At.Sub(at); gap < atLeast {
				if early++; early <= 3 {
					t.Errorf("request for %s#%d came %s after its 429 with Retry-After: 1", r.Key, r.N, gap.Round(time.Millisecond))
				}
			}
			delete(limitedAt, r.ID)
		}
		if r.Status == http.StatusTooManyRequests {
			limitedAt[r.ID] = r.At
		}
	}
	if early > 3 {
		t.Errorf("%d commands came again sooner than a second after their 429 with Retry-After: 1", early)
	}
	if checked == 0 {
		t.Error("no command answered 429 was sent again; the Retry-After check saw nothing")
	}
}
