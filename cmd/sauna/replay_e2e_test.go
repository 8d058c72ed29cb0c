package main

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
)

// TestReplayAfterConfigFix is the documented way to run commands again
// that failed for good because of a bad responder config: find them with
// `sauna outcomes`, fix the config, and replay them from the dead-letter
// stream with new ids. Without new ids the fixed observer would run them
// too (dead-lettered commands may run again), but a command that had run
// would be skipped; new ids make the replay independent of what ran.
func TestReplayAfterConfigFix(t *testing.T) {
	parallel(t)
	env := emulator.Require(t)
	stream, dlq := emulator.UniqueName(t, "live"), emulator.UniqueName(t, "dlq")
	id := "com.acme." + emulator.UniqueName(t, "obs")
	env.CreateStream(t, stream, 1)
	env.CreateStream(t, dlq, 1)
	kin := env.Kinesis(t)

	wrong, right := newWebhookSink(t), newWebhookSink(t)
	wrong.status = func([]byte) (int, string) { return 404, "no such hook" }
	dir := t.TempDir()
	cfg := writeFile(t, dir, "observer.json", dlvObserverConfig(id, stream, "TRIM_HORIZON", 300000, dlq))
	writeFile(t, dir, "webhook.json", dlvWebhookConfig(wrong.URL+"/hook"))
	p := startSauna(t, env, dir)
	p.waitLogs(t, 1, 30*time.Second, msgIs("observer started"))
	ids := dgIDs(2)
	for i, cid := range ids {
		if _, err := kin.PutRecord(t.Context(), &kinesis.PutRecordInput{StreamName: aws.String(stream),
			PartitionKey: aws.String("k"), Data: dgCommand(cid, i)}); err != nil {
			t.Fatal(err)
		}
	}
	p.waitLogs(t, 2, 60*time.Second, msgIs("command dead-lettered"))
	if _, err := p.stop(t); err != nil {
		t.Fatalf("stop: %v", err)
	}

	outcomeIDs := func(args ...string) []string {
		t.Helper()
		code, stdout, stderr := runCLI(t, env, "", append([]string{"outcomes", "--observer-config", cfg, "--since", "10m"}, args...)...)
		if code != 0 {
			t.Fatalf("sauna outcomes %v: exit %d\n%s", args, code, stderr)
		}
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
			var o struct{ CommandID, Status, Responder string }
			if l == "" {
				continue
			}
			if err := json.Unmarshal([]byte(l), &o); err != nil {
				t.Fatalf("outcomes line %q: %v", l, err)
			}
			if o.Responder != "webhook" {
				t.Errorf("outcome %+v: responder is not webhook", o)
			}
			got = append(got, o.CommandID)
		}
		slices.Sort(got)
		return got
	}
	if got := outcomeIDs("--status", "dead_lettered,failed"); !slices.Equal(got, ids) {
		t.Fatalf("dead-lettered outcomes %v, want %v", got, ids)
	}

	// The fix, then the replay onto the live stream.
	writeFile(t, dir, "webhook.json", dlvWebhookConfig(right.URL+"/hook"))
	code, stdout, stderr := runCLI(t, env, "", "replay", "--from", dlq, "--to", stream, "--reason", "failed_permanently", "--new-ids")
	if code != 0 {
		t.Fatalf("sauna replay: exit %d\n%s", code, stderr)
	}
	var newIDs []string
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var r struct{ CommandID, ReplayOf string }
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("replay line %q: %v", l, err)
		}
		if !slices.Contains(ids, r.ReplayOf) || slices.Contains(ids, r.CommandID) {
			t.Errorf("replay line %q: want a new id replaying one of %v", l, ids)
		}
		newIDs = append(newIDs, r.CommandID)
	}
	slices.Sort(newIDs)
	if len(newIDs) != 2 {
		t.Fatalf("replayed %d commands, want 2:\n%s", len(newIDs), stdout)
	}

	p = startSauna(t, env, dir)
	waitFor(t, 60*time.Second, func() bool { return len(right.received()) >= 2 },
		func() string { return "the replayed commands at the fixed webhook" })
	if got := outcomeIDs("--status", "executed"); !slices.Equal(got, newIDs) {
		t.Errorf("executed outcomes %v, want the replayed ids %v", got, newIDs)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	<-ctx.Done() // a redelivery would arrive well within this
	if n := len(right.received()); n != 2 {
		t.Errorf("fixed webhook received %d commands, want 2", n)
	}
	if _, err := p.stop(t); err != nil {
		t.Fatalf("stop: %v", err)
	}
}
