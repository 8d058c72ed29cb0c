package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/deadletter"
	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
)

// streamData reads a one-shard stream from its start until caught up.
func streamData(t *testing.T, kin *kinesis.Client, stream string) []string {
	t.Helper()
	it, err := kin.GetShardIterator(t.Context(), &kinesis.GetShardIteratorInput{
		StreamName: aws.String(stream), ShardId: aws.String("shardId-000000000000"), ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for iter := it.ShardIterator; iter != nil; {
		out, err := kin.GetRecords(t.Context(), &kinesis.GetRecordsInput{ShardIterator: iter})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Records) == 0 {
			break
		}
		for _, r := range out.Records {
			got = append(got, aws.ToString(r.PartitionKey)+" "+string(r.Data))
		}
		iter = out.NextShardIterator
	}
	return got
}

func TestReplayCommand(t *testing.T) {
	env := cliEmulators(t)
	kin := env.Kinesis(t)
	dlq, target := emulator.UniqueName(t, "dlq"), emulator.UniqueName(t, "target")
	env.CreateStream(t, dlq, 1)
	env.CreateStream(t, target, 1)

	at := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	w := deadletter.NewWriter(kin, dlq, nil)
	for _, l := range []deadletter.Letter{
		{Observer: "obs", Stream: "orders", Shard: "shardId-000000000000", SequenceNumber: "1", PartitionKey: "k1",
			CommandID: "3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44", CommandSchema: "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0",
			Responder: "slack", Reason: verdict.FailedPermanently, Error: "400", Attempts: 1,
			FirstAttempt: at, LastAttempt: at, DeadLetteredAt: at, Record: []byte(`{"slack":1}`)},
		{Observer: "obs", Stream: "orders", Shard: "shardId-000000000000", SequenceNumber: "2", PartitionKey: "k2",
			Reason: verdict.RejectedBecause(responders.ReasonInvalidJSON), Error: "not JSON",
			DeadLetteredAt: at.Add(time.Hour), Record: []byte("garbage")},
	} {
		if err := w.Put(t.Context(), l); err != nil {
			t.Fatal(err)
		}
	}

	code, stdout, stderr := runInProcess(t, "replay", "--from", dlq, "--to", target, "--dry-run")
	if code != 0 {
		t.Fatalf("dry run: exit %d\n%s", code, stderr)
	}
	if n := strings.Count(stdout, `"reason":`); n != 2 || strings.Count(stdout, "\n") != 2 {
		t.Errorf("dry run printed %d dead letters, want 2 JSON lines:\n%s", n, stdout)
	}
	if !strings.Contains(stderr, "2 records read (2 dead letters, 0 unreadable); 2 selected, 0 replayed") ||
		!strings.Contains(stderr, "by reason: failed_permanently=1 rejected:invalid_json=1") {
		t.Errorf("dry-run summary:\n%s", stderr)
	}
	if got := streamData(t, kin, target); len(got) != 0 {
		t.Fatalf("dry run put %v", got)
	}

	code, stdout, stderr = runInProcess(t, "replay", "--from", dlq, "--to", target, "--reason", "rejected", "--since", "1h")
	if code != 0 {
		t.Fatalf("replay: exit %d\n%s", code, stderr)
	}
	if !strings.HasPrefix(stdout, `{"commandId":"","schema":"","shard":"shardId-000000000000",`) || !strings.Contains(stdout, `"reason":"rejected:invalid_json"`) ||
		strings.Count(stdout, "\n") != 1 {
		t.Errorf("replay output:\n%s", stdout)
	}
	code, _, stderr = runInProcess(t, "replay", "--from", dlq, "--to", target, "--schema", "com.slack.sauna.commands", "--until", time.Now().Add(time.Minute).Format(time.RFC3339))
	if code != 0 {
		t.Fatalf("replay: exit %d\n%s", code, stderr)
	}
	if diff := cmp.Diff([]string{"k2 garbage", `k1 {"slack":1}`}, streamData(t, kin, target)); diff != "" {
		t.Errorf("target stream (-want +got):\n%s", diff)
	}

	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no --from", []string{"--to", target}, 2, "sauna replay: --from is required"},
		{"no --to", []string{"--from", dlq}, 2, "sauna replay: --to is required"},
		{"bad --since", []string{"--from", dlq, "--to", target, "--since", "yesterday"}, 2, "--since: want an RFC 3339 time"},
		{"empty window", []string{"--from", dlq, "--to", target, "--since", "2026-01-02T00:00:00Z", "--until", "2026-01-01T00:00:00Z"}, 2, "must be before --until"},
		{"bad tag", []string{"--from", dlq, "--to", target, "--tag", "team"}, 2, "--tag: want KEY=VALUE"},
		{"missing stream", []string{"--from", dlq + "-nope", "--to", target}, 1, "ResourceNotFoundException"},
		{"stray argument", []string{"--from", dlq, "--to", target, "extra"}, 2, `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runInProcess(t, append([]string{"replay"}, tc.args...)...)
			if code != tc.wantCode || !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("exit %d, want %d with %q; stderr:\n%s", code, tc.wantCode, tc.wantErr, stderr)
			}
		})
	}
}

// TestReplayInterrupted: a replay cut short says how far it got.
func TestReplayInterrupted(t *testing.T) {
	env := cliEmulators(t)
	live, target := emulator.UniqueName(t, "live"), emulator.UniqueName(t, "target")
	env.CreateStream(t, live, 1)
	env.CreateStream(t, target, 1)
	var recs []emulator.Record
	for i := range 5 {
		recs = append(recs, emulator.Record{PartitionKey: "k", Data: []byte(fmt.Sprintf(
			`{"data":{"envelope":{"data":{"commandId":"c%d","tags":{}}},"command":{"schema":"iglu:com.acme/x/jsonschema/1-0-0"}}}`, i))})
	}
	env.PutRecords(t, live, recs)
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr bytes.Buffer
	// One put per second: the first put ends the run's context.
	w := &cancelAfterFirstLine{w: &stdout, cancel: cancel}
	code := run(ctx, []string{"replay", "--from", live, "--to", target, "--rate", "1"}, strings.NewReader(""), w, &stderr)
	if code != 130 {
		t.Fatalf("exit %d, want 130; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "interrupted; handled up to shardId-000000000000 at ") || !strings.Contains(stderr.String(), "resume with --since ") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
	if n := strings.Count(stdout.String(), "\n"); n != 1 {
		t.Errorf("%d puts printed, want 1:\n%s", n, stdout.String())
	}
}

// TestReplayTagWithComma: a --tag value is taken whole, commas included.
func TestReplayTagWithComma(t *testing.T) {
	env := cliEmulators(t)
	live := emulator.UniqueName(t, "live")
	env.CreateStream(t, live, 1)
	var recs []emulator.Record
	for i, team := range []string{"a,b", "a"} {
		recs = append(recs, emulator.Record{PartitionKey: "k", Data: []byte(fmt.Sprintf(
			`{"data":{"envelope":{"data":{"commandId":"c%d","tags":{"team":%q}}},"command":{"schema":"iglu:com.acme/x/jsonschema/1-0-0"}}}`, i, team))})
	}
	env.PutRecords(t, live, recs)
	code, stdout, stderr := runInProcess(t, "replay", "--from", live, "--dry-run", "--tag", "team=a,b")
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stdout, `"commandId":"c0"`) || strings.Count(stdout, "\n") != 1 {
		t.Errorf("want only c0 selected; stdout:\n%s", stdout)
	}
}

type cancelAfterFirstLine struct {
	w      io.Writer
	cancel context.CancelFunc
}

func (c *cancelAfterFirstLine) Write(p []byte) (int, error) {
	defer c.cancel()
	return c.w.Write(p)
}
