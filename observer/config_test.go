package observer

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/kinesis"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const kinesisV100 = `{"schema":"iglu:com.snowplowanalytics.sauna.observers/AmazonKinesisConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"com.acme.commands","parameters":{
   "aws":{"accessKeyId":"AKIAEXAMPLE","secretAccessKey":"s3cr3t"},
   "kinesis":{"region":"us-east-1","streamName":"acme-sauna-commands","maxRecords":100,
              "initialPosition":"TRIM_HORIZON","initialPositionModifiers":null}}}}`

func withKinesis(field, value string) string {
	return strings.Replace(kinesisV100, field, value, 1)
}

func TestParseObserverConfig(t *testing.T) {
	ts := time.UnixMilli(1486998718968).UTC()
	atTS := func(mods string) string {
		return withKinesis(`"initialPosition":"TRIM_HORIZON","initialPositionModifiers":null`,
			`"initialPosition":"AT_TIMESTAMP","initialPositionModifiers":`+mods)
	}
	defaults := kinesis.Config{
		ID: "com.acme.commands", Region: "us-east-1", StreamName: "acme-sauna-commands",
		AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "s3cr3t", MaxRecords: 100,
		InitialPosition: kinesis.PositionTrimHorizon,
		// From the 1-0-1 schema's defaults: a 1-0-0 file predates them.
		ShardSyncInterval: 2 * time.Second, IdleBetweenReads: 250 * time.Millisecond,
		LeaseDuration: 10 * time.Second, LeaseRefresh: 2500 * time.Millisecond, ParentShardPoll: time.Second,
		MaxInFlight: 64, RetryBudget: 5 * time.Minute,
		Idempotency: kinesis.Idempotency{Enabled: true, TableName: "com.acme.commands-commands", Retention: 7 * 24 * time.Hour, ClaimTimeout: 2 * time.Minute},
		CloudWatch:  kinesis.CloudWatch{Enabled: true, Namespace: "com.acme.commands", FlushInterval: 10 * time.Second},
		ScaleOut:    kinesis.ScaleOut{Balance: true, TakesPerPass: 1},
	}
	tests := []struct {
		name    string
		content string
		want    func(c *kinesis.Config)
	}{
		{"sauna 1-0-0 as published", kinesisV100, func(*kinesis.Config) {}},
		{"avro-json wrapped timestamp", atTS(`{"com.snowplowanalytics.sauna.observers.InitialPositionModifiers_1_0_0":{"timestamp":{"long":1486998718968}}}`),
			func(c *kinesis.Config) { c.InitialPosition, c.Timestamp = kinesis.PositionAtTimestamp, ts }},
		{"plain json timestamp", atTS(`{"timestamp":1486998718968}`),
			func(c *kinesis.Config) { c.InitialPosition, c.Timestamp = kinesis.PositionAtTimestamp, ts }},
		{"wiki string timestamp", atTS(`{"timestamp":"1486998718968"}`),
			func(c *kinesis.Config) { c.InitialPosition, c.Timestamp = kinesis.PositionAtTimestamp, ts }},
		{"LATEST", withKinesis(`"TRIM_HORIZON"`, `"LATEST"`),
			func(c *kinesis.Config) { c.InitialPosition = kinesis.PositionLatest }},
		{"1-0-1 with settings and default credentials", `{"schema":"iglu:com.snowplowanalytics.sauna.observers/AmazonKinesisConfig/avro/1-0-1",
 "data":{"enabled":true,"id":"com.acme.commands","parameters":{"aws":{},
   "kinesis":{"region":"us-east-1","streamName":"acme-sauna-commands","maxRecords":100,
              "initialPosition":"TRIM_HORIZON","shardSyncIntervalMillis":500,"idleTimeBetweenReadsMillis":1000}}}}`,
			func(c *kinesis.Config) {
				c.AccessKeyID, c.SecretAccessKey = "", ""
				c.ShardSyncInterval, c.IdleBetweenReads = 500*time.Millisecond, time.Second
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, probs := ParseFile("obs.json", []byte(tc.content), quiet)
			if probs = errorsOf(probs); len(probs) > 0 {
				t.Fatalf("problems: %v", probs)
			}
			want := defaults
			want.File = "obs.json"
			tc.want(&want)
			if e.Kind != KindObserver || e.ID != want.ID || !e.Enabled {
				t.Errorf("entry %+v", e)
			}
			if diff := cmp.Diff(want, e.Observer); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseFileProblems(t *testing.T) {
	tests := []struct {
		name    string
		content string
		// want lists the expected problems as "field: message fragment".
		want []string
	}{
		{"not json", `{"schema": `, []string{": not a self-describing JSON object"}},
		{"trailing bytes", kinesisV100 + ` {"x":1}`, []string{": trailing data"}},
		{"array", `[]`, []string{": not a self-describing JSON object"}},
		{"unknown top field", `{"schema":"iglu:a/b/avro/1-0-0","data":{},"extra":1}`, []string{"extra: unknown field"}},
		{"no schema", `{"data":{}}`, []string{"schema: missing required field"}},
		{"bad iglu uri", `{"schema":"com.acme/x","data":{}}`, []string{"schema: "}},
		{"unknown schema", `{"schema":"iglu:com.acme/FooConfig/avro/1-0-0","data":{"enabled":true}}`, []string{`schema: unknown config schema "iglu:com.acme/FooConfig/avro/1-0-0" (forgotten import?)`}},
		{"unsupported sauna observer", `{"schema":"iglu:com.snowplowanalytics.sauna.observers/AmazonS3Config/avro/1-0-0","data":{"enabled":true}}`, []string{"schema: iglu:com.snowplowanalytics.sauna.observers/AmazonS3Config/avro/1-0-0 is recognised but not supported"}},
		{"unsupported logger", `{"schema":"iglu:com.snowplowanalytics.sauna.loggers/HipchatConfig/avro/1-0-0","data":{"enabled":true}}`, []string{"schema: ", "shut down"}},
		{"missing field named", strings.Replace(kinesisV100, `"maxRecords":100,`, "", 1), []string{"data.parameters.kinesis.maxRecords: missing required field"}},
		{"several missing", strings.Replace(strings.Replace(kinesisV100, `"maxRecords":100,`, "", 1), `"region":"us-east-1",`, "", 1),
			[]string{"data.parameters.kinesis.maxRecords: missing", "data.parameters.kinesis.region: missing"}},
		{"unknown field", withKinesis(`"maxRecords":100,`, `"maxRecords":100,"bogus":1,`), []string{"data.parameters.kinesis.bogus: unknown field"}},
		{"wrong type", withKinesis(`"maxRecords":100`, `"maxRecords":"100"`), []string{"data.parameters.kinesis.maxRecords: expected int"}},
		{"bad enum", withKinesis(`"TRIM_HORIZON"`, `"AT_SEQUENCE_NUMBER"`), []string{"data.parameters.kinesis.initialPosition: ", "TRIM_HORIZON"}},
		{"maxRecords too big", withKinesis(`"maxRecords":100`, `"maxRecords":10001`), []string{"data.parameters.kinesis.maxRecords: must be between 1 and 10000"}},
		{"maxRecords zero", withKinesis(`"maxRecords":100`, `"maxRecords":0`), []string{"data.parameters.kinesis.maxRecords: must be between 1 and 10000"}},
		{"AT_TIMESTAMP without timestamp", withKinesis(`"TRIM_HORIZON"`, `"AT_TIMESTAMP"`), []string{"data.parameters.kinesis.initialPositionModifiers.timestamp: required when initialPosition is AT_TIMESTAMP"}},
		{"AT_TIMESTAMP with null timestamp", withKinesis(`"TRIM_HORIZON","initialPositionModifiers":null`, `"AT_TIMESTAMP","initialPositionModifiers":{"timestamp":null}`), []string{"data.parameters.kinesis.initialPositionModifiers.timestamp: required"}},
		{"id not a table name", withKinesis(`"com.acme.commands"`, `"acme commands/1"`), []string{`data.id: "acme commands/1" is not usable as a DynamoDB table name`}},
		{"id too short", withKinesis(`"com.acme.commands"`, `"ab"`), []string{"data.id: "}},
		{"half credentials", withKinesis(`"secretAccessKey":"s3cr3t"`, `"secretAccessKey":""`), []string{"data.parameters.aws: set both"}},
		{"bad stream name", withKinesis(`"acme-sauna-commands"`, `"acme sauna"`), []string{"data.parameters.kinesis.streamName: "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, probs := ParseFile("dir/obs.json", []byte(tc.content), quiet)
			if e != nil {
				t.Fatalf("accepted: %+v", e)
			}
			var lines []string
			for _, p := range probs {
				if p.Warning {
					t.Errorf("an enabled file's problem is a warning: %v", p)
				}
				lines = append(lines, p.String())
			}
			all := strings.Join(lines, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, "dir/obs.json: "+w) && !strings.Contains(all, w) {
					t.Errorf("problems do not mention %q:\n%s", w, all)
				}
				if !strings.HasPrefix(all, "dir/obs.json: ") {
					t.Errorf("problem does not start with the file: %s", all)
				}
			}
			if strings.Contains(all, "s3cr3t") {
				t.Errorf("secret in problem: %s", all)
			}
		})
	}
}

// A file that is not JSON is refused at the line and column of the fault,
// as an editor counts them: a byte offset points nowhere in a long file.
func TestParseFileNamesWhereTheJSONBreaks(t *testing.T) {
	tests := []struct {
		name, content, want string
	}{
		{"trailing comma", strings.Replace(kinesisV100, `"maxRecords":100,`, `"maxRecords":100,}`, 1),
			`dir/obs.json: invalid JSON at line 4, column 88: invalid character '}' looking for beginning of object key string`},
		{"first line", `{"schema" "iglu:a/b/avro/1-0-0"}`,
			`dir/obs.json: invalid JSON at line 1, column 11: invalid character '"' after object key`},
		{"columns count characters", "{\"data\":\n {\"id\":\"é\" x}}",
			`dir/obs.json: invalid JSON at line 2, column 12: invalid character 'x' after object key:value pair`},
		{"after a BOM", "\xef\xbb\xbf{\n,}",
			`dir/obs.json: invalid JSON at line 2, column 1: invalid character ',' looking for beginning of object key string`},
		{"trailing bytes", kinesisV100 + "\n\n  {\"x\":1}",
			`dir/obs.json: trailing data after the JSON object, at line 7, column 3`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, probs := ParseFile("dir/obs.json", []byte(tc.content), quiet)
			if e != nil {
				t.Fatalf("accepted: %+v", e)
			}
			if len(probs) != 1 || probs[0].String() != tc.want {
				t.Errorf("problems %q\nwant [%q]", probs, tc.want)
			}
		})
	}
}

func TestDisabledFilesAreSkipped(t *testing.T) {
	for _, enabled := range []string{`false`, `"true"`, `1`} {
		content := withKinesis(`"enabled":true`, `"enabled":`+enabled)
		content = withKinesis(`"maxRecords":100`, `"maxRecords":0`)
		content = strings.Replace(content, `"enabled":true`, `"enabled":`+enabled, 1)
		e, probs := ParseFile("obs.json", []byte(content), quiet)
		if e != nil {
			t.Errorf("enabled=%s: entry returned for a disabled invalid file", enabled)
		}
		if len(probs) == 0 || !probs[0].Warning {
			t.Errorf("enabled=%s: want a warning, got %v", enabled, probs)
		}
	}
	e, probs := ParseFile("obs.json", []byte(withKinesis(`"enabled":true`, `"enabled":false`)), quiet)
	if len(probs) > 0 || e == nil || e.Enabled {
		t.Errorf("valid disabled file: %v %+v", probs, e)
	}
}

// errorsOf drops the warnings.
func errorsOf(probs []Problem) []Problem {
	var out []Problem
	for _, p := range probs {
		if !p.Warning {
			out = append(out, p)
		}
	}
	return out
}

func TestParseObserverConfigCurrent(t *testing.T) {
	v102 := func(delivery string) string {
		return `{"schema":"iglu:io.sauna.observers/KinesisObserverConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"com.acme.commands","parameters":{"aws":{},
   "kinesis":{"region":"us-east-1","streamName":"acme-sauna-commands","maxRecords":100,"initialPosition":"TRIM_HORIZON"},
   "delivery":` + delivery + `,"cloudwatch":{"enabled":false}}}}`
	}
	e, probs := ParseFile("obs.json", []byte(v102(`{"maxInFlightPerShard":8,"retryBudgetMillis":60000,"deadLetterStream":{"string":"acme-dead-letters"},"idempotency":{"tableName":"acme-outcomes","retentionDays":2}}`)), quiet)
	if len(probs) > 0 {
		t.Fatalf("problems: %v", probs)
	}
	c := e.Observer
	want := kinesis.Config{MaxInFlight: 8, RetryBudget: time.Minute, DeadLetterStream: "acme-dead-letters",
		Idempotency: kinesis.Idempotency{Enabled: true, TableName: "acme-outcomes", Retention: 48 * time.Hour, ClaimTimeout: 2 * time.Minute},
		CloudWatch:  kinesis.CloudWatch{Enabled: false, Namespace: "com.acme.commands", FlushInterval: 10 * time.Second}}
	got := kinesis.Config{MaxInFlight: c.MaxInFlight, RetryBudget: c.RetryBudget, DeadLetterStream: c.DeadLetterStream, Idempotency: c.Idempotency, CloudWatch: c.CloudWatch}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("delivery settings (-want +got):\n%s", diff)
	}

	e, probs = ParseFile("obs.json", []byte(strings.Replace(v102(`{}`), `"cloudwatch"`, `"scaleOut":{"balance":false,"maxLeasesPerWorker":4,"takesPerPass":3},"cloudwatch"`, 1)), quiet)
	if len(probs) > 0 {
		t.Fatalf("problems: %v", probs)
	}
	if got, want := e.Observer.ScaleOut, (kinesis.ScaleOut{Balance: false, MaxLeasesPerWorker: 4, TakesPerPass: 3}); got != want {
		t.Errorf("scaleOut = %+v, want %+v", got, want)
	}
	for _, tc := range []struct{ scaleOut, want string }{
		{`{"takesPerPass":0}`, "data.parameters.scaleOut.takesPerPass: must be between 1 and 100"},
		{`{"maxLeasesPerWorker":-1}`, "data.parameters.scaleOut.maxLeasesPerWorker: must not be negative"},
	} {
		_, probs := ParseFile("obs.json", []byte(strings.Replace(v102(`{}`), `"cloudwatch"`, `"scaleOut":`+tc.scaleOut+`,"cloudwatch"`, 1)), quiet)
		if len(probs) == 0 || !strings.Contains(probs[0].String(), tc.want) {
			t.Errorf("scaleOut %s: problems %v, want %q", tc.scaleOut, probs, tc.want)
		}
	}

	for _, tc := range []struct{ delivery, want string }{
		{`{"maxInFlightPerShard":0}`, "data.parameters.delivery.maxInFlightPerShard: must be between 1 and 10000"},
		{`{"deadLetterStream":"acme-sauna-commands"}`, "data.parameters.delivery.deadLetterStream: must not be the observed stream"},
		{`{"idempotency":{"tableName":"com.acme.commands"}}`, "data.parameters.delivery.idempotency.tableName: must differ from the observer id"},
		{`{"idempotency":{"retentionDays":0}}`, "data.parameters.delivery.idempotency.retentionDays: must be at least 1"},
		{`{"bogus":1}`, "data.parameters.delivery.bogus: unknown field"},
	} {
		_, probs := ParseFile("obs.json", []byte(v102(tc.delivery)), quiet)
		if len(probs) == 0 || !strings.Contains(probs[0].String(), tc.want) {
			t.Errorf("delivery %s: problems %v, want %q", tc.delivery, probs, tc.want)
		}
	}
}
