package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
)

// TestEndToEnd runs the binary on a Sauna-format config directory against
// a 4-shard stream: commands put with `sauna publish` and with a plain
// PutRecord reach the Slack webhook; invalid, unknown and expired ones do
// not and are logged with their reason; SIGTERM exits cleanly with the
// finished work checkpointed.
func TestEndToEnd(t *testing.T) {
	env := emulator.Require(t)
	stream := emulator.UniqueName(t, "e2e")
	id := "com.acme." + emulator.UniqueName(t, "obs")
	env.CreateStream(t, stream, 4)

	slack := newWebhookSink(t)
	dir := t.TempDir()
	writeFile(t, dir, "observer.json", observerConfig(id, stream, true))
	writeFile(t, dir, "slack.avro", slackConfig("slack", slack.URL+"/services/T000/B000/SECRETPATH"))
	writeFile(t, dir, "disabled.json", strings.Replace(slackConfig("slack-old", "http://127.0.0.1:1/x"), `"enabled":true`, `"enabled":false`, 1))
	writeFile(t, dir, "notes.txt", "not a config")

	p := startSauna(t, env, dir)
	p.waitLogs(t, 1, giveUp, msgIs("observer started"))

	// Three valid commands through `sauna publish`, one per file, and one that
	// publish must refuse before anything is put.
	now := time.Now()
	var files []string
	for i := 1; i <= 3; i++ {
		files = append(files, writeFile(t, t.TempDir(), fmt.Sprintf("cmd%d.json", i),
			commandRecord(uuidFor(i), now, "600000", slackInner(fmt.Sprintf("published %d", i)))))
	}
	bad := writeFile(t, t.TempDir(), "bad.json", commandRecord(uuidFor(9), now, "null",
		`{"schema":"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0","data":{"channel":"#no-text"}}`))
	code, _, stderr := runCLI(t, env, "", "publish", "--stream", stream, files[0], bad)
	if code != 1 || !strings.Contains(stderr, "bad.json") || !strings.Contains(stderr, "invalid_data") {
		t.Fatalf("publish with an invalid command: exit %d, stderr %q", code, stderr)
	}
	code, stdout, stderr := runCLI(t, env, "", append([]string{"publish", "--stream", stream}, files...)...)
	if code != 0 || strings.Count(stdout, "\n") != 3 {
		t.Fatalf("publish: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}

	// Two valid and three bad records straight through the SDK, as any
	// producer would put them.
	kin := env.Kinesis(t)
	put := func(pk, data string) {
		t.Helper()
		if _, err := kin.PutRecord(t.Context(), &kinesis.PutRecordInput{
			StreamName: aws.String(stream), PartitionKey: aws.String(pk), Data: []byte(data),
		}); err != nil {
			t.Fatal(err)
		}
	}
	put("a", commandRecord(uuidFor(4), now, "null", slackInner("sdk 4")))
	put("b", `{"schema": "not json`)
	put("c", commandRecord(uuidFor(5), now, "600000", `{"schema":"iglu:com.acme/launch_rocket/jsonschema/1-0-0","data":{}}`))
	put("d", commandRecord(uuidFor(6), now.Add(-time.Hour), "1000", slackInner("expired 6")))
	put("e", commandRecord(uuidFor(7), now, "600000", slackInner("sdk 7")))

	want := []string{"published 1", "published 2", "published 3", "sdk 4", "sdk 7"}
	waitFor(t, giveUp, func() bool { return len(slack.received()) >= len(want) },
		func() string { return fmt.Sprintf("%d Slack messages, got %q", len(want), slack.texts()) })
	rejected := p.waitLogs(t, 3, giveUp, msgIs("command rejected"))

	got := slack.texts()
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("Slack received %q, want %q", got, want)
	}
	reasons := map[string]bool{}
	for _, r := range rejected {
		reasons[fmt.Sprint(r["reason"])] = true
		for _, attr := range []string{"observer", "shard", "seq"} {
			if r[attr] == nil || r[attr] == "" {
				t.Errorf("rejection log lacks %q: %v", attr, r)
			}
		}
	}
	for _, reason := range []string{"invalid_json", "unknown_schema", "expired"} {
		if !reasons[reason] {
			t.Errorf("no rejection with reason %s; got %v", reason, reasons)
		}
	}
	if strings.Contains(p.output(), "SECRETPATH") {
		t.Error("the Slack webhook URL appears in the log")
	}

	took, err := p.stop(t)
	if err != nil {
		t.Errorf("sauna exited with %v after SIGTERM", err)
	}
	t.Logf("stopped %s after SIGTERM", took)
	if took > 20*time.Second {
		t.Errorf("shutdown took %s, want under 20s", took)
	}

	// The lease table is named exactly after the observer id and holds a
	// checkpoint for every shard that carried a record.
	db := env.DynamoDB(t)
	out, err := db.Scan(t.Context(), &dynamodb.ScanInput{TableName: aws.String(id), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatalf("lease table %q: %v", id, err)
	}
	checkpointed := 0
	for _, item := range out.Items {
		if s, ok := item["Checkpoint"].(*types.AttributeValueMemberS); ok && s.Value != "" {
			checkpointed++
		}
	}
	if checkpointed == 0 {
		t.Errorf("no checkpoint in lease table %q: %v", id, out.Items)
	}
}
