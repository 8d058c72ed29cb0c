package cli

import (
	"bytes"
	"context"
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

// cliEmulators points the SDK's standard variables at the emulators, as an
// operator would, for commands run in process through run().
func cliEmulators(t *testing.T) emulator.Env {
	t.Helper()
	env := emulator.Require(t)
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL_KINESIS":    env.KinesisURL,
		"AWS_ENDPOINT_URL_DYNAMODB":   env.DynamoDBURL,
		"AWS_REGION":                  emulator.Region,
		"AWS_ACCESS_KEY_ID":           emulator.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":       emulator.SecretAccessKey,
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_CONFIG_FILE":             os.DevNull,
		"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
	} {
		t.Setenv(k, v)
	}
	return env
}

func runInProcess(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestOutcomeCommand(t *testing.T) {
	env := cliEmulators(t)
	db := env.DynamoDB(t)
	id := emulator.UniqueName(t, "obs")
	table := id + "-commands"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})
	now := time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC)
	clock := func() time.Time { return now }
	tbl := outcomes.New(db, outcomes.Config{TableName: table, Observer: id, WorkerID: "host-1", Now: clock, ClaimTimeout: time.Minute,
		Logger: slog.New(slog.DiscardHandler)})
	ctx := t.Context()
	if err := tbl.Init(ctx); err != nil {
		t.Fatal(err)
	}
	done := "3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44"
	running := "0b8e4c1a-2d3f-4a5b-8c7d-9e0f1a2b3c4d"
	slackDigest, pdDigest, hookDigest := strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64)
	const slackSchema = "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0"
	const pdSchema = "iglu:com.pagerduty.sauna.commands/create_event/jsonschema/1-0-0"
	if err := tbl.Claim(ctx, outcomes.Claim{CommandID: done, Digest: slackDigest, Schema: slackSchema, Shard: "shardId-000000000001", Sequence: "4959", Responder: "slack"}); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Finish(ctx, outcomes.Identity{CommandID: done, Digest: slackDigest}, outcomes.Final{Verdict: verdict.DeadLettered, Attempts: 3, LastAttempt: now.Add(2 * time.Second), Reason: "failed_permanently: 400 invalid_payload"}); err != nil {
		t.Fatal(err)
	}
	// Another command under the same id.
	if err := tbl.Claim(ctx, outcomes.Claim{CommandID: done, Digest: pdDigest, Schema: pdSchema, Shard: "shardId-000000000001", Sequence: "4960", Responder: "pagerduty"}); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Finish(ctx, outcomes.Identity{CommandID: done, Digest: pdDigest}, outcomes.Final{Verdict: verdict.Executed}); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Claim(ctx, outcomes.Claim{CommandID: running, Digest: hookDigest, Shard: "shardId-000000000000", Sequence: "17", Responder: "webhook"}); err != nil {
		t.Fatal(err)
	}
	wantDone := fmt.Sprintf(`command %s (1 of 2 different commands under this id)
  status:        done
  verdict:       dead_lettered
  observer:      %s
  shard:         shardId-000000000001
  sequence:      4959
  responder:     slack
  schema:        %s
  digest:        %s
  attempts:      3
  first attempt: 2026-01-02T03:04:05.678Z
  last attempt:  2026-01-02T03:04:07.678Z
  reason:        failed_permanently: 400 invalid_payload
  worker:        host-1
  expires:       2026-01-09T03:04:05.000Z

command %s (2 of 2 different commands under this id)
  status:        done
  verdict:       executed
  observer:      %s
  shard:         shardId-000000000001
  sequence:      4960
  responder:     pagerduty
  schema:        %s
  digest:        %s
  attempts:      1
  first attempt: 2026-01-02T03:04:05.678Z
  last attempt:  2026-01-02T03:04:05.678Z
  reason:        -
  worker:        host-1
  expires:       2026-01-09T03:04:05.000Z
`, done, id, slackSchema, slackDigest, done, id, pdSchema, pdDigest)
	wantRunning := fmt.Sprintf(`command %s
  status:        in_progress
  verdict:       -
  observer:      %s
  shard:         shardId-000000000000
  sequence:      17
  responder:     webhook
  schema:        -
  digest:        %s
  attempts:      1
  first attempt: 2026-01-02T03:04:05.678Z
  last attempt:  2026-01-02T03:04:05.678Z
  reason:        -
  worker:        host-1
  claimed until: 2026-01-02T03:05:05.678Z
  expires:       2026-01-09T03:04:05.000Z
`, running, id, hookDigest)

	cfgFile := filepath.Join(t.TempDir(), "observer.json")
	cfg := fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.observers/AmazonKinesisConfig/avro/1-0-0",
 "data":{"enabled":true,"id":%q,"parameters":{
   "aws":{"accessKeyId":"test","secretAccessKey":"test"},
   "kinesis":{"region":"us-east-1","streamName":"orders","maxRecords":100,
              "initialPosition":"TRIM_HORIZON","initialPositionModifiers":null}}}}`, id)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	responderFile := filepath.Join(t.TempDir(), "slack.json")
	if err := os.WriteFile(responderFile, []byte(`{"schema":"iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"slack","parameters":{"sendMessageEnabled":true,"webhookUrl":"https://hooks.slack.invalid/x"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantOut    string
		wantErrSub string
	}{
		{name: "by table", args: []string{"--table", table, done, running}, wantOut: wantDone + "\n" + wantRunning},
		{name: "by observer config", args: []string{"--observer-config", cfgFile, done}, wantOut: wantDone},
		{name: "one missing", args: []string{"--table", table, "no-such-command", done}, wantCode: 1, wantOut: wantDone,
			wantErrSub: "no-such-command: not found in table " + table},
		{name: "no table", args: []string{"--table", table + "-nope", done}, wantCode: 1, wantErrSub: "does not exist"},
		{name: "no ids", args: []string{"--table", table}, wantCode: 2, wantErrSub: "usage: sauna outcome"},
		{name: "table and config", args: []string{"--table", table, "--observer-config", cfgFile, done}, wantCode: 2, wantErrSub: "one of --table and --observer-config"},
		{name: "neither", args: []string{done}, wantCode: 2, wantErrSub: "one of --table and --observer-config"},
		{name: "not an observer config", args: []string{"--observer-config", responderFile, done}, wantCode: 2, wantErrSub: "not an observer config"},
		{name: "unreadable config", args: []string{"--observer-config", cfgFile + ".missing", done}, wantCode: 1, wantErrSub: "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runInProcess(t, append([]string{"outcome"}, tc.args...)...)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, stderr)
			}
			if diff := cmp.Diff(tc.wantOut, stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if !strings.Contains(stderr, tc.wantErrSub) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantErrSub, stderr)
			}
			if strings.Contains(stdout+stderr, emulator.SecretAccessKey+`"`) {
				t.Errorf("output shows the secret key")
			}
		})
	}
}
