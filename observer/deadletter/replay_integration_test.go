package deadletter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
	_ "github.com/sauna-io/sauna/responders/pagerduty" // Decode needs its schema
)

// These tests run against kinesalite. Its AT_TIMESTAMP iterator never
// answers for a shard without a record at or after the time (AWS answers
// with an iterator at the tip), so every shard read from a time gets a
// later record.

const pdSchema = "iglu:com.pagerduty.sauna.commands/create_event/jsonschema/1-0-0"

// testCommand is a valid PagerDuty command with the given id and tags.
func testCommand(id string, created time.Time, tags map[string]string) []byte {
	tagJSON, _ := json.Marshal(tags)
	return []byte(fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0","data":{`+
		`"envelope":{"schema":"iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0","data":{`+
		`"commandId":%q,"whenCreated":%q,"execution":{"semantics":"AT_LEAST_ONCE","timeToLive":60000},"tags":%s}},`+
		`"command":{"schema":%q,"data":{"service_key":"PAGERDUTY_SERVICE_KEY","event_type":"trigger","description":"disk full"}}}}`,
		id, created.UTC().Format(time.RFC3339), tagJSON, pdSchema))
}

func cmdID(i int) string { return fmt.Sprintf("20000000-0000-4000-8000-%012d", i) }

// putAt puts data under key; hashKey, when set, picks the shard.
func putAt(t *testing.T, kin *kinesis.Client, stream, key, hashKey string, data []byte) time.Time {
	t.Helper()
	in := &kinesis.PutRecordInput{StreamName: aws.String(stream), PartitionKey: aws.String(key), Data: data}
	if hashKey != "" {
		in.ExplicitHashKey = aws.String(hashKey)
	}
	if _, err := kin.PutRecord(t.Context(), in); err != nil {
		t.Fatalf("put to %s: %v", stream, err)
	}
	return time.Now()
}

// tick waits until the clock has passed the current millisecond, so that
// records put before and after get different arrival times, and returns
// the time in between.
func tick() time.Time {
	start := time.Now()
	for time.Since(start) < 3*time.Millisecond {
		time.Sleep(time.Millisecond)
	}
	mid := time.Now()
	for time.Since(mid) < 3*time.Millisecond {
		time.Sleep(time.Millisecond)
	}
	return mid
}

func runReplay(t *testing.T, kin ReplayClient, o Options) (Stats, []map[string]string) {
	t.Helper()
	var out bytes.Buffer
	o.Out = &out
	r := newReplayer(kin, o)
	r.pollGap = 10 * time.Millisecond
	stats, err := r.run(t.Context())
	if err != nil {
		t.Fatalf("Replay(%+v): %v", o, err)
	}
	return stats, jsonLines(t, out.String())
}

type envelopeView struct {
	CommandID   string            `json:"commandId"`
	WhenCreated string            `json:"whenCreated"`
	Tags        map[string]string `json:"tags"`
}

func envelopeOf(t *testing.T, data []byte) envelopeView {
	t.Helper()
	var c struct {
		Data struct {
			Envelope struct {
				Data envelopeView `json:"data"`
			} `json:"envelope"`
		} `json:"data"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatalf("replayed record %q: %v", data, err)
	}
	return c.Data.Envelope.Data
}

// TestITReplayWindow selects exactly the commands that arrived in a window
// of a live stream, and replays them onto a second stream with new ids.
func TestITReplayWindow(t *testing.T) {
	env := emulator.Require(t)
	kin := env.Kinesis(t)
	live, target := env.NewStream(t, "live", 1), env.NewStream(t, "target", 1)
	created := time.Now().Add(-time.Hour)
	put := func(i int, tags map[string]string) {
		putAt(t, kin, live, fmt.Sprintf("k%d", i%2), "", testCommand(cmdID(i), created, tags))
	}
	put(1, nil)
	put(2, map[string]string{"team": "ops"})
	since := tick()
	put(3, map[string]string{"team": "ops"})
	put(4, nil)
	put(5, map[string]string{"team": "ops"})
	kin.PutRecord(t.Context(), &kinesis.PutRecordInput{StreamName: aws.String(live), PartitionKey: aws.String("x"), Data: []byte("not a command")})
	put(6, map[string]string{"team": "ops"})
	until := tick()
	put(7, map[string]string{"team": "ops"})
	put(8, nil)

	ids := func(lines []map[string]string) []string {
		var got []string
		for _, l := range lines {
			got = append(got, l["commandId"])
		}
		return got
	}
	stats, lines := runReplay(t, kin, Options{From: live, DryRun: true, Filter: Filter{Since: since, Until: until}})
	if diff := cmp.Diff([]string{cmdID(3), cmdID(4), cmdID(5), cmdID(6)}, ids(lines)); diff != "" {
		t.Errorf("window selected (-want +got):\n%s", diff)
	}
	if stats.Unreadable != 1 || stats.Later != 1 || stats.BySchema[pdSchema] != 4 {
		t.Errorf("stats %+v", stats)
	}
	for _, l := range lines {
		at, err := time.Parse(time.RFC3339Nano, l["arrival"])
		if err != nil || at.Before(since) || !at.Before(until) || l["shard"] != "shardId-000000000000" || l["schema"] != pdSchema || l["sequenceNumber"] == "" {
			t.Errorf("line %v outside [%s, %s) or incomplete", l, since, until)
		}
	}
	if got := readAll(t, kin, target); len(got) != 0 {
		t.Fatalf("dry run put %d records", len(got))
	}

	// By tag, with new ids, onto the second stream.
	stats, lines = runReplay(t, kin, Options{From: live, To: target, NewIDs: true, RefreshTTL: true,
		Filter: Filter{Since: since, Until: until, Tags: map[string]string{"team": "ops"}}})
	if stats.Replayed != 3 || len(lines) != 3 {
		t.Fatalf("replayed %d (%d lines), want 3: %+v", stats.Replayed, len(lines), stats)
	}
	recs := readAll(t, kin, target)
	var got []string
	for i, rec := range recs {
		e := envelopeOf(t, rec.Data)
		got = append(got, aws.ToString(rec.PartitionKey)+" "+e.Tags[TagReplayOf]+" "+e.Tags["team"])
		if e.CommandID == e.Tags[TagReplayOf] || e.CommandID != lines[i]["commandId"] || lines[i]["replayOf"] != e.Tags[TagReplayOf] {
			t.Errorf("record %d: id %s, replayOf %s; line %v", i, e.CommandID, e.Tags[TagReplayOf], lines[i])
		}
		if wc, err := time.Parse(time.RFC3339Nano, e.WhenCreated); err != nil || wc.Before(since) {
			t.Errorf("whenCreated %q not refreshed", e.WhenCreated)
		}
		cmd, err := responders.Decode(rec.Data)
		if err != nil {
			t.Errorf("replayed command does not decode: %v", err)
		} else if cmd.Expired(time.Now()) {
			t.Errorf("refreshed command already expired")
		}
	}
	want := []string{"k1 " + cmdID(3) + " ops", "k1 " + cmdID(5) + " ops", "k0 " + cmdID(6) + " ops"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("target records (-want +got):\n%s", diff)
	}
}

// TestITReplayReshard reads a window across a split: the closed parent
// first, then both children, each from the window's start.
func TestITReplayReshard(t *testing.T) {
	env := emulator.Require(t)
	kin := env.Kinesis(t)
	live, target := env.NewStream(t, "live", 1), env.NewStream(t, "target", 1)
	created := time.Now()
	putAt(t, kin, live, "a", "", testCommand(cmdID(1), created, nil))
	since := tick()
	putAt(t, kin, live, "a", "", testCommand(cmdID(2), created, nil))
	mid := new(big.Int).Lsh(big.NewInt(1), 127)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := kin.SplitShard(ctx, &kinesis.SplitShardInput{StreamName: aws.String(live),
		ShardToSplit: aws.String("shardId-000000000000"), NewStartingHashKey: aws.String(mid.String())}); err != nil {
		t.Fatalf("SplitShard: %v", err)
	}
	w := kinesis.NewStreamExistsWaiter(kin, func(o *kinesis.StreamExistsWaiterOptions) { o.MinDelay, o.MaxDelay = 50*time.Millisecond, time.Second })
	if err := w.Wait(ctx, &kinesis.DescribeStreamInput{StreamName: aws.String(live)}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	low, high := "1", new(big.Int).Add(mid, big.NewInt(1)).String()
	putAt(t, kin, live, "a", high, testCommand(cmdID(3), created, nil))
	putAt(t, kin, live, "b", low, testCommand(cmdID(4), created, nil))
	putAt(t, kin, live, "a", high, testCommand(cmdID(5), created, nil))

	// kinesalite stamps a new shard's records from a second after the split
	// on: the replay, which leaves records newer than itself, starts after.
	for _, rec := range readAll(t, kin, live) {
		for time.Now().Before(aws.ToTime(rec.ApproximateArrivalTimestamp).Add(time.Millisecond)) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	_, lines := runReplay(t, kin, Options{From: live, To: target, Filter: Filter{Since: since}})
	var got []string
	for _, l := range lines {
		got = append(got, l["shard"]+" "+l["commandId"])
	}
	want := []string{
		"shardId-000000000000 " + cmdID(2),
		"shardId-000000000001 " + cmdID(4),
		"shardId-000000000002 " + cmdID(3),
		"shardId-000000000002 " + cmdID(5),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("replayed (-want +got):\n%s", diff)
	}
	var keys []string
	for _, rec := range readAll(t, kin, target) {
		keys = append(keys, aws.ToString(rec.PartitionKey)+" "+envelopeOf(t, rec.Data).CommandID)
	}
	// Per key, the order of the stream read: the parent's "a" before the
	// child's.
	wantKeys := []string{"a " + cmdID(2), "b " + cmdID(4), "a " + cmdID(3), "a " + cmdID(5)}
	if diff := cmp.Diff(wantKeys, keys); diff != "" {
		t.Errorf("target (-want +got):\n%s", diff)
	}
}

// TestITReplayDeadLetters unwraps dead letters to their original records,
// filtered by reason and schema.
func TestITReplayDeadLetters(t *testing.T) {
	env := emulator.Require(t)
	kin := env.Kinesis(t)
	dlq, target := env.NewStream(t, "dlq", 2), env.NewStream(t, "target", 1)

	now := time.Now().UTC()
	slack := "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0"
	mk := func(key, reason, schema string, original []byte) Letter {
		l := letterWith(key, reason, "", now)
		l.CommandSchema, l.Record = schema, original
		return l
	}
	letters := []Letter{
		mk("k1", verdict.FailedPermanently, pdSchema, testCommand(cmdID(1), now, nil)),
		mk("k2", verdict.RejectedBecause("invalid_json"), "", []byte("\xff not json")),
		mk("k1", verdict.RetryBudgetExhausted, pdSchema, testCommand(cmdID(2), now, nil)),
		mk("k3", verdict.FailedPermanently, slack, []byte(`{"slack":1}`)),
	}
	letters[1].CommandID = ""
	wr := NewWriter(kin, dlq, nil)
	for _, l := range letters {
		if err := wr.Put(t.Context(), l); err != nil {
			t.Fatal(err)
		}
	}
	tooBig := mk("k4", verdict.FailedPermanently, slack, nil)
	tooBig.RecordSize = 3 << 20
	if err := wr.Put(t.Context(), tooBig); err != nil {
		t.Fatal(err)
	}
	env.PutRecords(t, dlq, []emulator.Record{{PartitionKey: "x", Data: []byte(`{"hello":"world"}`)}})

	stats, lines := runReplay(t, kin, Options{From: dlq, DryRun: true})
	if stats.Records != 6 || stats.Letters != 5 || stats.Unreadable != 1 || stats.Selected != 5 || stats.NoRecord != 1 || len(lines) != 5 {
		t.Errorf("dry run: %+v, %d lines", stats, len(lines))
	}
	for _, l := range lines {
		if l["reason"] == "" || l["deadLetterOf"] == "" {
			t.Errorf("dead letter line without reason or origin: %v", l)
		}
	}
	if diff := cmp.Diff(map[string]int{verdict.FailedPermanently: 3, verdict.RetryBudgetExhausted: 1, "rejected:invalid_json": 1}, stats.ByReason); diff != "" {
		t.Errorf("by reason (-want +got):\n%s", diff)
	}

	stats, _ = runReplay(t, kin, Options{From: dlq, To: target, Filter: Filter{Reason: "failed", Schema: "com.pagerduty"}})
	if stats.Replayed != 1 {
		t.Errorf("replayed %+v", stats)
	}
	stats, _ = runReplay(t, kin, Options{From: dlq, To: target, Filter: Filter{Reason: "rejected:"}})
	if stats.Replayed != 1 {
		t.Errorf("rejected replay %+v", stats)
	}
	var got []string
	for _, rec := range readAll(t, kin, target) {
		got = append(got, aws.ToString(rec.PartitionKey)+" "+string(rec.Data))
	}
	want := []string{"k1 " + string(testCommand(cmdID(1), now, nil)), "k2 \xff not json"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("target (-want +got):\n%s", diff)
	}
	if strings.Contains(strings.Join(got, ""), "dead_letter") {
		t.Error("a dead letter was put instead of its original record")
	}
}
