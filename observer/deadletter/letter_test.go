package deadletter

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

const slackCommand = `{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0","data":{"envelope":{"schema":"iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0","data":{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}},"command":{"schema":"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0","data":{"text":"hi"}}}}`

func fullLetter() Letter {
	at := time.Date(2026, 11, 22, 10, 15, 0, 123456789, time.UTC)
	return Letter{
		Observer:       "orders",
		Stream:         "orders-commands",
		Shard:          "shardId-000000000001",
		SequenceNumber: "49590338271490256608559692538361571095921575989136588818",
		PartitionKey:   "customer-42",
		CommandID:      "3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44",
		CommandSchema:  "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0",
		Responder:      "slack",
		Reason:         verdict.FailedPermanently,
		Error:          "slack: 400 invalid_payload",
		Attempts:       3,
		FirstAttempt:   at.Add(-time.Minute),
		LastAttempt:    at.Add(-time.Second),
		DeadLetteredAt: at,
		Record:         []byte(slackCommand),
		RecordSize:     len(slackCommand),
	}
}

func TestRoundTrip(t *testing.T) {
	rejected := Letter{
		Observer: "orders", Stream: "s", Shard: "shardId-000000000000", SequenceNumber: "1", PartitionKey: "k",
		Reason: verdict.RejectedBecause(responders.ReasonInvalidJSON), Error: "record is not a single JSON value",
		DeadLetteredAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Record:         []byte{0xff, 0x00, '{'}, RecordSize: 3,
	}
	empty := rejected
	empty.Record, empty.RecordSize = []byte{}, 0
	omitted := fullLetter()
	omitted.Record, omitted.RecordSize = nil, 2<<20
	for name, l := range map[string]Letter{"full": fullLetter(), "rejected, nulls": rejected, "empty record": empty, "record omitted": omitted} {
		t.Run(name, func(t *testing.T) {
			b, err := Encode(l)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v\n%s", err, b)
			}
			if diff := cmp.Diff(l, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEncodeWireForm(t *testing.T) {
	l := fullLetter()
	l.CommandSchema, l.Responder, l.FirstAttempt = "", "", time.Time{}
	b, err := Encode(l)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Schema string         `json:"schema"`
		Data   map[string]any `json:"data"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Schema != "iglu:io.sauna.observers/dead_letter/jsonschema/1-0-0" {
		t.Errorf("schema %q", doc.Schema)
	}
	want := map[string]any{
		"observer": "orders", "stream": "orders-commands", "shard": "shardId-000000000001",
		"sequenceNumber": l.SequenceNumber, "partitionKey": "customer-42",
		"commandId": l.CommandID, "commandSchema": nil, "responder": nil,
		"reason": "failed_permanently", "error": "slack: 400 invalid_payload", "attempts": 3.0,
		"firstAttempt": nil, "lastAttempt": "2026-11-22T10:14:59.123456789Z", "deadLetteredAt": "2026-11-22T10:15:00.123456789Z",
		"record":     "eyJzY2hlbWEiOiJpZ2x1OmNvbS5zbm93cGxvd2FuYWx5dGljcy5zYXVuYS5jb21tYW5kcy9jb21tYW5kL2pzb25zY2hlbWEvMS0wLTAiLCJkYXRhIjp7ImVudmVsb3BlIjp7InNjaGVtYSI6ImlnbHU6Y29tLnNub3dwbG93YW5hbHl0aWNzLnNhdW5hLmNvbW1hbmRzL2VudmVsb3BlL2pzb25zY2hlbWEvMS0wLTAiLCJkYXRhIjp7ImNvbW1hbmRJZCI6IjNmMmE2YzFlLThkNGItNGE3ZS05YzJmLTViMWQwZTdhOWM0NCIsIndoZW5DcmVhdGVkIjoiMjAxNy0wNi0yOVQxMDoxNTowMFoiLCJleGVjdXRpb24iOnsic2VtYW50aWNzIjoiQVRfTEVBU1RfT05DRSIsInRpbWVUb0xpdmUiOm51bGx9LCJ0YWdzIjp7fX19LCJjb21tYW5kIjp7InNjaGVtYSI6ImlnbHU6Y29tLnNsYWNrLnNhdW5hLmNvbW1hbmRzL3NlbmRfbWVzc2FnZS9qc29uc2NoZW1hLzEtMC0wIiwiZGF0YSI6eyJ0ZXh0IjoiaGkifX19fQ==",
		"recordSize": float64(len(slackCommand)),
	}
	if diff := cmp.Diff(want, doc.Data); diff != "" {
		t.Errorf("data (-want +got):\n%s", diff)
	}
	// What Encode writes is valid against the bundled schema on its own.
	var inst any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&inst); err != nil {
		t.Fatal(err)
	}
	if err := schemas.ValidateJSON(SchemaV100, inst.(map[string]any)["data"]); err != nil {
		t.Errorf("encoded letter invalid: %v", err)
	}
}

func TestEncodeErrors(t *testing.T) {
	for name, mut := range map[string]func(*Letter){
		"no reason":         func(l *Letter) { l.Reason = "" },
		"no time":           func(l *Letter) { l.DeadLetteredAt = time.Time{} },
		"negative attempts": func(l *Letter) { l.Attempts = -1 },
	} {
		l := fullLetter()
		mut(&l)
		if _, err := Encode(l); err == nil {
			t.Errorf("%s: Encode succeeded", name)
		}
	}
}

func TestEncodeTruncatesError(t *testing.T) {
	l := fullLetter()
	l.Error = strings.Repeat("é", 5000) // 2 bytes each
	b, err := Encode(l)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Error) > maxErrorLen || !strings.HasSuffix(got.Error, "…") || !strings.HasPrefix(got.Error, "éé") {
		t.Errorf("error of %d bytes, ends %q", len(got.Error), got.Error[len(got.Error)-8:])
	}
}

func TestDecodeRejects(t *testing.T) {
	valid, err := Encode(fullLetter())
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(data map[string]any)) []byte {
		var doc map[string]any
		if err := json.Unmarshal(valid, &doc); err != nil {
			t.Fatal(err)
		}
		f(doc["data"].(map[string]any))
		b, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := map[string]struct {
		in   []byte
		want string
	}{
		"not JSON":          {[]byte("\x00\x01garbage"), "not a JSON object"},
		"JSON array":        {[]byte(`[1,2]`), "not a JSON object"},
		"a Sauna command":   {[]byte(slackCommand), "is not a dead letter schema"},
		"no schema":         {[]byte(`{"data":{}}`), `no "schema"`},
		"bad schema":        {[]byte(`{"schema":"dead_letter","data":{}}`), "schema:"},
		"unbundled version": {bytes.Replace(valid, []byte("1-0-0"), []byte("1-0-9"), 1), "unknown schema"},
		"other model":       {bytes.Replace(valid, []byte("1-0-0"), []byte("2-0-0"), 1), "is not a dead letter schema"},
		"extra field":       {edit(func(d map[string]any) { d["extra"] = 1 }), "additional"},
		"missing reason":    {edit(func(d map[string]any) { delete(d, "reason") }), "reason"},
		"empty reason":      {edit(func(d map[string]any) { d["reason"] = "" }), "/reason"},
		"bad base64":        {edit(func(d map[string]any) { d["record"] = "not base64!" }), "/record"},
		"bad time":          {edit(func(d map[string]any) { d["deadLetteredAt"] = "yesterday" }), "/deadLetteredAt"},
		"extra wrapper key": {bytes.Replace(valid, []byte(`{"schema"`), []byte(`{"x":1,"schema"`), 1), `exactly "schema" and "data"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(tc.in)
			if !errors.Is(err, ErrNotALetter) {
				t.Fatalf("Decode = %v, want ErrNotALetter", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

func TestFilter(t *testing.T) {
	l := fullLetter()
	c := candidate{letter: true, id: l.CommandID, schema: l.CommandSchema, reason: l.Reason, tags: map[string]string{"team": "ops", "env": "prod"}}
	tests := []struct {
		name string
		f    Filter
		want bool
	}{
		{"empty", Filter{}, true},
		{"reason exact", Filter{Reason: "failed_permanently"}, true},
		{"reason prefix", Filter{Reason: "failed"}, true},
		{"reason other", Filter{Reason: "rejected"}, false},
		{"schema exact", Filter{Schema: "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0"}, true},
		{"schema vendor", Filter{Schema: "iglu:com.slack."}, true},
		{"schema without iglu:", Filter{Schema: "com.slack.sauna.commands/send_message"}, true},
		{"schema other", Filter{Schema: "com.pagerduty"}, false},
		{"tag", Filter{Tags: map[string]string{"team": "ops"}}, true},
		{"tags all", Filter{Tags: map[string]string{"team": "ops", "env": "prod"}}, true},
		{"tag other value", Filter{Tags: map[string]string{"team": "dev"}}, false},
		{"tag missing", Filter{Tags: map[string]string{"owner": ""}}, false},
		{"all", Filter{Reason: "failed", Schema: "com.slack", Tags: map[string]string{"env": "prod"}}, true},
	}
	for _, tc := range tests {
		if got := tc.f.match(c); got != tc.want {
			t.Errorf("%s: match = %v, want %v", tc.name, got, tc.want)
		}
	}
	noSchema := c
	noSchema.schema = ""
	if (Filter{Schema: "iglu:"}).match(noSchema) {
		t.Error("a schema filter matched a command without a schema")
	}
	plain := c
	plain.letter, plain.reason = false, ""
	if (Filter{Reason: "f"}).match(plain) {
		t.Error("a reason filter matched a command that is not a dead letter")
	}
}
