package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/kinesis/leases"
)

// arrivals records when each Slack message text reached a webhook sink.
type arrivals struct {
	mu sync.Mutex
	at map[string][]time.Time
}

func recordArrivals(s *webhookSink) *arrivals {
	a := &arrivals{at: map[string][]time.Time{}}
	s.status = func(body []byte) (int, string) {
		var m struct {
			Text string `json:"text"`
		}
		_ = json.Unmarshal(body, &m)
		a.mu.Lock()
		a.at[m.Text] = append(a.at[m.Text], time.Now())
		a.mu.Unlock()
		return 200, "ok"
	}
	return a
}

func (a *arrivals) times(text string) []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.at[text])
}

func (a *arrivals) waitFor(t *testing.T, texts ...string) {
	t.Helper()
	var missing []string
	waitFor(t, giveUp, func() bool {
		missing = missing[:0]
		for _, s := range texts {
			if len(a.times(s)) == 0 {
				missing = append(missing, s)
			}
		}
		return len(missing) == 0
	}, func() string { return fmt.Sprintf("Slack messages %q", missing) })
}

// fastSlackConfig is a SlackConfig without the client-side rate limit, so
// that a burst of commands is not paced to Slack's one per second.
func fastSlackConfig(id, webhookURL string) string {
	return fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-1",
 "data":{"enabled":true,"id":%q,"parameters":{"sendMessageEnabled":true,"webhookUrl":%q,"rateLimitPerSecond":null,"rateLimitBurst":1}}}`, id, webhookURL)
}

func removeConfig(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func logAt(t *testing.T, m map[string]any) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, fmt.Sprint(m["time"]))
	if err != nil {
		t.Fatalf("log record time: %v", err)
	}
	return ts
}

func fileLog(msg, file string) func(map[string]any) bool {
	return func(m map[string]any) bool { return m["msg"] == msg && m["file"] == file }
}

// leaseOwners returns the AssignedTo of every shard row of a lease table.
func leaseOwners(t *testing.T, env emulator.Env, table string) map[string]string {
	t.Helper()
	out, err := env.DynamoDB(t).Scan(t.Context(), &dynamodb.ScanInput{TableName: aws.String(table), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatalf("lease table %q: %v", table, err)
	}
	owners := map[string]string{}
	for _, item := range out.Items {
		shard, _ := item["ShardID"].(*types.AttributeValueMemberS)
		if shard == nil || !leases.IsLeaseKey(shard.Value) {
			continue
		}
		owner := ""
		if s, ok := item["AssignedTo"].(*types.AttributeValueMemberS); ok {
			owner = s.Value
		}
		owners[shard.Value] = owner
	}
	return owners
}

func allOwnedBy(owners map[string]string, shards int, worker string) bool {
	if len(owners) != shards {
		return false
	}
	for _, o := range owners {
		if o != worker {
			return false
		}
	}
	return true
}

// TestReloadEndToEnd drives one `sauna run` through config changes made
// while it runs: an observer file added, a responder's webhook changed, an
// invalid observer version, an observer replaced under load, files removed
// and added back, a change only SIGHUP reveals. The process is never
// restarted.
func TestReloadEndToEnd(t *testing.T) {
	env := emulator.Require(t)
	const shards = 2
	stream := emulator.UniqueName(t, "reload")
	id := "com.acme." + emulator.UniqueName(t, "obs")
	env.CreateStream(t, stream, shards)
	kin := env.Kinesis(t)
	seq := 0
	put := func(text string) {
		t.Helper()
		seq++
		rec := commandRecord(uuidFor(seq), time.Now(), "600000", slackInner(text))
		if _, err := kin.PutRecord(t.Context(), &kinesis.PutRecordInput{
			StreamName: aws.String(stream), PartitionKey: aws.String(text), Data: []byte(rec),
		}); err != nil {
			t.Fatal(err)
		}
	}

	sinkA, sinkB := newWebhookSink(t), newWebhookSink(t)
	gotA, gotB := recordArrivals(sinkA), recordArrivals(sinkB)
	dir := t.TempDir()
	slackFile := writeFile(t, dir, "slack.json", slackConfig("slack", sinkA.URL+"/services/A"))
	obsFile := filepath.Join(dir, "observer.json")
	obsV1 := observerConfig(id, stream, true)
	obsV2 := strings.Replace(obsV1, `"maxRecords":100`, `"maxRecords":50`, 1)

	// No periodic rescan within the test: events and SIGHUP do the work.
	p := startSauna(t, env, dir, "--reload-quiet", "200ms", "--rescan-interval", "10m")
	p.waitLogs(t, 1, giveUp, fileLog("config added", slackFile))
	p.waitLogs(t, 1, giveUp, msgIs("no observer or ingest endpoint is configured; waiting for a KinesisObserverConfig or HttpIngestConfig file in the config directory"))
	observerStarted := func(m map[string]any) bool { return m["msg"] == "observer started" && m["observer"] == id }
	observerStopped := func(m map[string]any) bool { return m["msg"] == "observer stopped" && m["observer"] == id }

	// An observer file dropped in starts consuming.
	writeFile(t, dir, "observer.json", obsV1)
	added := p.waitLogs(t, 1, giveUp, fileLog("config added", obsFile))
	if added[0]["id"] != id || added[0]["kind"] != "observer" {
		t.Errorf("config added line: %v", added[0])
	}
	worker1 := fmt.Sprint(p.waitLogs(t, 1, giveUp, observerStarted)[0]["worker"])
	put("one")
	gotA.waitFor(t, "one")

	// A new webhook URL applies to the next command, the observer untouched.
	writeFile(t, dir, "slack.json", fastSlackConfig("slack", sinkB.URL+"/services/B"))
	p.waitLogs(t, 1, giveUp, fileLog("config changed", slackFile))
	put("two")
	gotB.waitFor(t, "two")
	if n := len(gotA.times("two")); n != 0 {
		t.Errorf("the old webhook got command two %d times", n)
	}
	if n := len(p.logsMatching(observerStopped)); n != 0 {
		t.Errorf("the observer was restarted by a responder change (%d stops)", n)
	}

	// An invalid version is refused, logged with file and field; the last
	// good one keeps consuming.
	writeFile(t, dir, "observer.json", strings.Replace(obsV1, `"maxRecords":100`, `"maxRecords":0`, 1))
	refused := p.waitLogs(t, 1, giveUp, fileLog("config refused; the last good version keeps running", obsFile))
	if refused[0]["field"] != "data.parameters.kinesis.maxRecords" || refused[0]["running_id"] != id {
		t.Errorf("refusal line: %v", refused[0])
	}
	put("three")
	gotB.waitFor(t, "three")
	if n := len(p.logsMatching(observerStopped)); n != 0 {
		t.Errorf("an invalid version stopped the observer (%d stops)", n)
	}

	// A config file that cannot be read is not a removed one: a symlink loop
	// in place of slack.json is refused and the responder keeps working.
	removeConfig(t, slackFile)
	if err := os.Symlink("slack.json", slackFile); err != nil {
		t.Fatal(err)
	}
	loop := p.waitLogs(t, 1, giveUp, fileLog("config refused; the last good version keeps running", slackFile))
	if !strings.Contains(fmt.Sprint(loop[0]["problem"]), "too many levels of symbolic links") {
		t.Errorf("refusal line: %v", loop[0])
	}
	put("three-b")
	gotB.waitFor(t, "three-b")
	removeConfig(t, slackFile)
	writeFile(t, dir, "slack.json", fastSlackConfig("slack", sinkB.URL+"/services/B"))
	// The deprecated SlackConfig 1-0-1 was warned about once, through all
	// the rescans since.
	if w := p.logsMatching(fileLog("config warning", slackFile)); len(w) != 1 || !strings.Contains(fmt.Sprint(w[0]["problem"]), "name iglu:io.sauna.responders/SlackConfig/avro/1-0-0 instead") {
		t.Errorf("deprecation warnings: %v", w)
	}

	// A changed observer hands its leases over while commands keep coming:
	// the old worker stops (final checkpoints) before the new one starts on
	// the same lease table, and every command is executed.
	waitFor(t, giveUp, func() bool { return allOwnedBy(leaseOwners(t, env, id), shards, worker1) },
		func() string { return fmt.Sprintf("leases held by %s: %v", worker1, leaseOwners(t, env, id)) })
	var during []string
	producing := make(chan struct{})
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 1; ; i++ {
			text := fmt.Sprintf("handover %d", i)
			rec := commandRecord(fmt.Sprintf("00000000-0000-4000-9000-%012d", i), time.Now(), "600000", slackInner(text))
			if _, err := kin.PutRecord(t.Context(), &kinesis.PutRecordInput{
				StreamName: aws.String(stream), PartitionKey: aws.String(text), Data: []byte(rec),
			}); err != nil {
				t.Error(err)
				return
			}
			during = append(during, text)
			select {
			case <-producing:
				return
			case <-tick.C:
			}
		}
	}()
	writeFile(t, dir, "observer.json", obsV2)
	changed := p.waitLogs(t, 1, giveUp, fileLog("config changed", obsFile))
	starts := p.waitLogs(t, 2, giveUp, observerStarted)
	worker2 := fmt.Sprint(starts[1]["worker"])
	stops := p.logsMatching(observerStopped)
	if worker2 == worker1 || len(stops) != 1 || logAt(t, stops[0]).After(logAt(t, starts[1])) {
		t.Errorf("want the old worker stopped before the new one started: stops %v, starts %v", stops, starts)
	}
	if changed[0]["id"] != id {
		t.Errorf("config changed line: %v", changed[0])
	}
	waitFor(t, giveUp, func() bool { return allOwnedBy(leaseOwners(t, env, id), shards, worker2) },
		func() string { return fmt.Sprintf("leases held by %s: %v", worker2, leaseOwners(t, env, id)) })
	close(producing)
	<-produced
	gotB.waitFor(t, during...)
	for _, text := range []string{"one", "two", "three"} {
		if n := len(gotA.times(text)) + len(gotB.times(text)); n != 1 {
			t.Errorf("%q executed %d times; the handover should resume from the final checkpoints", text, n)
		}
	}
	t.Logf("%d commands put during the handover, all executed", len(during))

	// Removing the file stops the observer; a command put meanwhile waits
	// in the stream until the file is back.
	removeConfig(t, obsFile)
	p.waitLogs(t, 1, giveUp, fileLog("config removed", obsFile))
	p.waitLogs(t, 2, giveUp, observerStopped)
	put("four")
	writeFile(t, dir, "observer.json", obsV2)
	restarted := p.waitLogs(t, 3, giveUp, observerStarted)
	gotB.waitFor(t, "four")
	if at := gotB.times("four")[0]; at.Before(logAt(t, restarted[2])) {
		t.Errorf("command four was executed at %s, before the observer was back at %s", at, logAt(t, restarted[2]))
	}

	// A command for a responder whose config was removed is rejected with
	// that reason.
	removeConfig(t, slackFile)
	p.waitLogs(t, 1, giveUp, fileLog("config removed", slackFile))
	put("five")
	p.waitLogs(t, 1, giveUp, func(m map[string]any) bool {
		return m["msg"] == "command rejected" && m["reason"] == "no_responder" && m["command_id"] == uuidFor(seq)
	})
	if n := len(gotA.times("five")) + len(gotB.times("five")); n != 0 {
		t.Errorf("command five was sent %d times after its responder was removed", n)
	}

	// A change no event reports — the target of a link that lives outside
	// the directory — is picked up on SIGHUP.
	target := writeFile(t, t.TempDir(), "slack.json", fastSlackConfig("slack", sinkB.URL+"/services/B"))
	if err := os.Symlink(target, slackFile); err != nil {
		t.Fatal(err)
	}
	p.waitLogs(t, 2, giveUp, fileLog("config added", slackFile))
	writeFile(t, filepath.Dir(target), "slack.json", fastSlackConfig("slack", sinkA.URL+"/services/A"))
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLogs(t, 1, giveUp, func(m map[string]any) bool {
		return m["msg"] == "rescanning the config directory" && m["signal"] == "hangup"
	})
	p.waitLogs(t, 2, giveUp, fileLog("config changed", slackFile))
	put("six")
	gotA.waitFor(t, "six")

	if took, err := p.stop(t); err != nil {
		t.Errorf("sauna exited with %v after SIGTERM (%s)", err, took)
	}
}
