package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/observer/verdict"
)

// writeObserverConfig writes a minimal observer config for observer id.
func writeObserverConfig(t *testing.T, id, stream string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "observer.json")
	cfg := fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.observers/AmazonKinesisConfig/avro/1-0-0",
 "data":{"enabled":true,"id":%q,"parameters":{
   "aws":{"accessKeyId":"test","secretAccessKey":"test"},
   "kinesis":{"region":"us-east-1","streamName":%q,"maxRecords":100,
              "initialPosition":"TRIM_HORIZON","initialPositionModifiers":null}}}}`, id, stream)
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestOutcomesCommand searches through a counting proxy in front of
// dynalite: every search is answered by Query, never by Scan.
func TestOutcomesCommand(t *testing.T) {
	env := cliEmulators(t)
	proxy := emulator.NewOpCounter(t, env.DynamoDBURL)
	t.Setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.URL)
	db := env.DynamoDB(t)
	id := emulator.UniqueName(t, "obs")
	table := id + "-commands"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})
	now := time.Now().UTC().Truncate(time.Millisecond)
	at := now.Add(-3 * time.Hour)
	clock := func() time.Time { return at }
	tbl := outcomes.New(db, outcomes.Config{TableName: table, Observer: id, WorkerID: "host-1", Now: clock,
		Logger: slog.New(slog.DiscardHandler)})
	ctx := t.Context()
	if err := tbl.Init(ctx); err != nil {
		t.Fatal(err)
	}
	const pd = "iglu:com.pagerduty.sauna.commands/create_event/jsonschema/1-0-0"
	ids := []string{
		"10000000-0000-4000-8000-000000000001", "10000000-0000-4000-8000-000000000002",
		"10000000-0000-4000-8000-000000000003", "10000000-0000-4000-8000-000000000004",
	}
	for i, v := range []verdict.Outcome{verdict.Executed, verdict.DeadLettered, verdict.Executed} {
		resp, schema := "pagerduty", pd
		if i == 2 {
			resp, schema = "slack", "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0"
		}
		if err := tbl.Claim(ctx, outcomes.Claim{CommandID: ids[i], Digest: "d", Shard: "s", Sequence: fmt.Sprint(i), Responder: resp, Schema: schema}); err != nil {
			t.Fatal(err)
		}
		if err := tbl.Finish(ctx, outcomes.Identity{CommandID: ids[i], Digest: "d"}, outcomes.Final{Verdict: v, Reason: map[bool]string{true: "failed_permanently: 400 bad key"}[v != verdict.Executed]}); err != nil {
			t.Fatal(err)
		}
		at = at.Add(time.Hour)
	}
	if err := tbl.Reject(ctx, outcomes.Rejection{CommandID: ids[3], Shard: "s", Sequence: "3", Responder: "pagerduty", Schema: pd, Reason: "no_responder: no pagerduty responder configured"}); err != nil {
		t.Fatal(err)
	}
	show := func(ts time.Time) string { return ts.Format("2006-01-02T15:04:05.000Z07:00") }
	line := func(i int, status, resp, reason string, attempts int) string {
		schema := pd
		if resp == "slack" {
			schema = "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0"
		}
		ts := show(now.Add(time.Duration(i-3) * time.Hour))
		b, _ := json.Marshal(outcomeLine{CommandID: ids[i], Status: status, Responder: resp, Schema: schema, Attempts: attempts,
			Reason: reason, FirstAttempt: ts, LastAttempt: ts})
		return string(b) + "\n"
	}
	l0 := line(0, "executed", "pagerduty", "", 1)
	l1 := line(1, "dead_lettered", "pagerduty", "failed_permanently: 400 bad key", 1)
	l2 := line(2, "executed", "slack", "", 1)
	l3 := line(3, "rejected", "pagerduty", "no_responder: no pagerduty responder configured", 0)
	cfg := writeObserverConfig(t, id, "orders")
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string
		wantErrSub string
	}{
		{name: "last 4h", args: []string{"--since", "4h"}, wantOut: l0 + l1 + l2 + l3},
		{name: "window", args: []string{"--since", show(now.Add(-2*time.Hour - time.Minute)), "--until", show(now.Add(-time.Hour))}, wantOut: l1},
		{name: "failures", args: []string{"--since", "4h", "--status", "dead_lettered,failed", "--status", "rejected"}, wantOut: l1 + l3},
		{name: "responder", args: []string{"--since", "4h", "--responder", "slack"}, wantOut: l2},
		{name: "schema", args: []string{"--since", "4h", "--schema", "com.pagerduty.sauna.commands/create_event"}, wantOut: l0 + l1 + l3},
		{name: "limit", args: []string{"--since", "4h", "--limit", "1"}, wantOut: l0},
		{name: "default window is 24h", args: nil, wantOut: l0 + l1 + l2 + l3},
		{name: "bad status", args: []string{"--status", "exploded"}, wantCode: 2, wantErrSub: `sauna outcomes: --status: unknown status "exploded"`},
		{name: "bad time", args: []string{"--since", "yesterday"}, wantCode: 2, wantErrSub: "sauna outcomes: --since: want an RFC 3339 time"},
		{name: "empty window", args: []string{"--since", "1h", "--until", "2h"}, wantCode: 2, wantErrSub: "must be before --until"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"outcomes", "--observer-config", cfg}, tc.args...)
			code, stdout, stderr := runInProcess(t, args...)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, stderr)
			}
			if diff := cmp.Diff(tc.wantOut, stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if !strings.Contains(stderr, tc.wantErrSub) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantErrSub, stderr)
			}
		})
	}
	t.Run("table", func(t *testing.T) {
		code, stdout, stderr := runInProcess(t, "outcomes", "--observer-config", cfg, "--format", "table", "--responder", "slack")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		rows := strings.Split(strings.TrimSpace(stdout), "\n")
		if len(rows) != 2 || !strings.HasPrefix(rows[0], "COMMAND ID") || !strings.Contains(rows[1], ids[2]+"  executed  slack") {
			t.Errorf("table:\n%s", stdout)
		}
	})
	t.Run("lookup of the rejected command", func(t *testing.T) {
		code, stdout, stderr := runInProcess(t, "outcome", "--observer-config", cfg, ids[3])
		if code != 0 || !strings.Contains(stdout, "verdict:       rejected") {
			t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
	})
	if n := proxy.Count("Scan"); n != 0 {
		t.Errorf("%d Scan calls went to DynamoDB; searches must Query", n)
	}
	if proxy.Count("Query") == 0 {
		t.Errorf("no Query went through the proxy")
	}
}
