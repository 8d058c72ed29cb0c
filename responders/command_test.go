package responders_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

var (
	slackCmd   = schemas.Key{Vendor: "com.slack.sauna.commands", Name: "send_message", Format: "jsonschema", Model: 1}
	hipchatCmd = schemas.Key{Vendor: "com.hipchat.sauna.commands", Name: "send_room_notification", Format: "jsonschema", Model: 1}
)

type slackPayload struct {
	Text string `json:"text"`
}

type recorder struct {
	got []*responders.Command
	err error
}

func (r *recorder) Respond(_ context.Context, c *responders.Command) error {
	r.got = append(r.got, c)
	return r.err
}

// The package under test has no responders of its own; these stand in for
// the real ones so that decoding and dispatch are tested in isolation.
func init() {
	responders.Register(responders.Module{
		Name:     "fakeslack",
		Summary:  "test double",
		Commands: []schemas.Key{slackCmd},
		Decode: func(_ schemas.Key, data json.RawMessage) (any, error) {
			var p slackPayload
			if err := json.Unmarshal(data, &p); err != nil {
				return nil, err
			}
			if p.Text == "refuse me" {
				return nil, errors.New("text: refused by the module")
			}
			return p, nil
		},
		New: func(responders.Config) (responders.Responder, error) { return &recorder{}, nil },
	})
	responders.Register(responders.Module{
		Name:     "fakehipchat",
		Commands: []schemas.Key{hipchatCmd},
		Retired:  "the service was shut down",
	})
}

const envelope = `{"schema":"iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0",
 "data":{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":%s,
 "execution":{"semantics":"AT_LEAST_ONCE","timeToLive":%s},"tags":{"source":"test"}}}`

func record(created, ttl, inner string) []byte {
	return []byte(`{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0","data":{"envelope":` +
		fmt.Sprintf(envelope, created, ttl) + `,"command":` + inner + `}}`)
}

const slackInner = `{"schema":"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0","data":{"text":"hello","channel":"#ops"}}`

func TestDecodeValid(t *testing.T) {
	cmd, err := responders.Decode(record(`"2017-06-29T12:15:00+02:00"`, "1200000", slackInner))
	if err != nil {
		t.Fatal(err)
	}
	if cmd.ID != "3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44" || cmd.Module != "fakeslack" || cmd.Schema != slackCmd {
		t.Errorf("got id %q module %q schema %v", cmd.ID, cmd.Module, cmd.Schema)
	}
	if want := time.Date(2017, 6, 29, 10, 15, 0, 0, time.UTC); !cmd.Created.Equal(want) {
		t.Errorf("created %v, want %v", cmd.Created, want)
	}
	if cmd.TimeToLiveMillis == nil || *cmd.TimeToLiveMillis != 1200000 {
		t.Errorf("ttl %v", cmd.TimeToLiveMillis)
	}
	if p, ok := cmd.Payload.(slackPayload); !ok || p.Text != "hello" {
		t.Errorf("payload %#v", cmd.Payload)
	}
	if string(cmd.Data) != `{"text":"hello","channel":"#ops"}` {
		t.Errorf("data not kept as received: %s", cmd.Data)
	}
	if cmd.Tags()["source"] != "test" {
		t.Errorf("tags %v", cmd.Tags())
	}
	// Each call gives a map of its own.
	cmd.Tags()["source"] = "changed"
	if got := cmd.Tags(); len(got) != 1 || got["source"] != "test" {
		t.Errorf("tags after a caller changed its copy: %v", got)
	}
}

func TestDecodeRejections(t *testing.T) {
	wrap := func(inner string) string { return string(record(`"2017-06-29T10:15:00Z"`, "null", inner)) }
	tests := []struct {
		name   string
		record string
		reason responders.Reason
		// want is a fragment the error must contain, naming what is wrong.
		want string
		id   bool
		// pointer is where in the record the fault is, whatever the wording.
		pointer string
	}{
		{"empty", ``, responders.ReasonInvalidJSON, "not a single JSON value", false, ""},
		{"broken json", `{"schema":`, responders.ReasonInvalidJSON, "unexpected EOF", false, ""},
		{"trailing data", wrap(slackInner) + ` {}`, responders.ReasonInvalidJSON, "", false, ""},
		{"not utf-8", "{\"schema\":\"\xff\"}", responders.ReasonInvalidJSON, "UTF-8", false, ""},
		{"array", `[1,2]`, responders.ReasonNotSelfDescribing, "schema", false, ""},
		{"no data", `{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0"}`, responders.ReasonNotSelfDescribing, `missing "data"`, false, ""},
		{"extra field", `{"schema":"iglu:a/b/jsonschema/1-0-0","data":{},"x":1}`, responders.ReasonNotSelfDescribing, `"x"`, false, ""},
		{"bad iglu uri", `{"schema":"http://example.com/x","data":{}}`, responders.ReasonNotSelfDescribing, "command.schema", false, "/schema"},
		{"inner command alone", slackInner, responders.ReasonUnknownSchema, "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0 is an inner command sent alone: a record wraps it, beside an envelope (commandId, whenCreated, execution), in iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-*", false, "/schema"},
		{"other outer schema", `{"schema":"iglu:com.acme/thing/jsonschema/1-0-0","data":{}}`, responders.ReasonUnknownSchema, "com.acme/thing", false, "/schema"},
		{"outer addition not bundled", strings.Replace(wrap(slackInner), "command/jsonschema/1-0-0", "command/jsonschema/1-0-9", 1), responders.ReasonUnknownSchema, "not bundled", false, "/schema"},
		{"outer missing command", `{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0","data":{"envelope":{"schema":"iglu:a/b/jsonschema/1-0-0","data":{}}}}`, responders.ReasonInvalidData, "command", false, "/data"},
		{"bad uuid", strings.Replace(wrap(slackInner), "3f2a6c1e-8d4b", "not-a-uuid", 1), responders.ReasonInvalidData, "commandId", false, "/data/envelope/data"},
		{"bad semantics", strings.Replace(wrap(slackInner), "AT_LEAST_ONCE", "EXACTLY_ONCE", 1), responders.ReasonInvalidData, "semantics", false, "/data/envelope/data"},
		{"bad date", string(record(`"yesterday"`, "null", slackInner)), responders.ReasonInvalidData, "whenCreated", false, "/data/envelope/data"},
		{"unknown command", wrap(`{"schema":"iglu:com.acme/launch/jsonschema/1-0-0","data":{}}`), responders.ReasonUnknownSchema, "com.acme/launch", true, "/data/command/schema"},
		{"command 1-1-0", wrap(strings.Replace(slackInner, "1-0-0", "1-1-0", 1)), responders.ReasonUnknownSchema, "1-1-0", true, "/data/command/schema"},
		{"command addition not bundled", wrap(strings.Replace(slackInner, "1-0-0", "1-0-7", 1)), responders.ReasonUnknownSchema, "not bundled", true, "/data/command/schema"},
		{"invalid data", wrap(`{"schema":"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0","data":{"channel":"#ops"}}`), responders.ReasonInvalidData, "command data", true, "/data/command/data"},
		{"unknown field", wrap(`{"schema":"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0","data":{"text":"x","bogus":1}}`), responders.ReasonInvalidData, "bogus", true, "/data/command/data"},
		{"module refuses", wrap(`{"schema":"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0","data":{"text":"refuse me"}}`), responders.ReasonInvalidData, "refused by the module", true, "/data/command/data"},
		{"bad command uri", wrap(`{"schema":"iglu:com.acme/launch/jsonschema/0-0-0","data":{}}`), responders.ReasonNotSelfDescribing, "command.schema", true, "/data/command/schema"},
		{"leap second", string(record(`"2016-12-31T23:59:60Z"`, "null", slackInner)), responders.ReasonInvalidData, "whenCreated", true, "/data/envelope/data/whenCreated"},
		{"retired", wrap(`{"schema":"iglu:com.hipchat.sauna.commands/send_room_notification/jsonschema/1-0-0","data":{"roomIdOrName":"ops","message":"x"}}`), responders.ReasonRetired, "shut down", true, "/data/command/schema"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := responders.Decode([]byte(tc.record))
			var rej *responders.RejectError
			if !errors.As(err, &rej) {
				t.Fatalf("got %v, want a RejectError", err)
			}
			if rej.Reason != tc.reason {
				t.Errorf("reason %q, want %q (%v)", rej.Reason, tc.reason, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			if rej.Pointer != tc.pointer {
				t.Errorf("pointer %q, want %q (%v)", rej.Pointer, tc.pointer, err)
			}
			if tc.id != (rej.CommandID != "") {
				t.Errorf("command id %q known=%v, want known=%v", rej.CommandID, rej.CommandID != "", tc.id)
			}
			if v, _ := responders.Classify(err); v != responders.Fail {
				t.Errorf("a rejection must be permanent, got %v", v)
			}
		})
	}
}

// Only a schema some responder serves is taken for an inner command sent
// alone: any other outer schema is just not the wrapper.
func TestDecodeSaysAloneOnlyOfServedCommands(t *testing.T) {
	for _, schema := range []string{"iglu:com.acme/thing/jsonschema/1-0-0", "iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0"} {
		_, err := responders.Decode([]byte(`{"schema":"` + schema + `","data":{}}`))
		if err == nil || strings.Contains(err.Error(), "sent alone") {
			t.Errorf("%s: %v", schema, err)
		}
	}
}

func TestExpired(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		created string
		ttl     string
		want    bool
	}{
		{`"2026-11-22T09:59:59Z"`, "1000", false},    // exactly the TTL: not expired
		{`"2026-11-22T09:59:58.999Z"`, "1000", true}, // one ms past
		{`"2026-11-22T11:59:59+02:00"`, "1000", false},
		{`"2026-11-22T11:59:58+02:00"`, "1000", true}, // offset honoured
		{`"2026-11-22t09:59:58z"`, "1000", true},      // lowercase RFC 3339
		{`"2020-01-01T00:00:00Z"`, "null", false},     // null never expires
		{`"2026-11-22T10:00:05Z"`, "0", false},        // created in the future
	}
	for _, tc := range tests {
		cmd, err := responders.Decode(record(tc.created, tc.ttl, slackInner))
		if err != nil {
			t.Fatalf("%s: %v", tc.created, err)
		}
		if got := cmd.Expired(now); got != tc.want {
			t.Errorf("created %s ttl %s: expired=%v, want %v", tc.created, tc.ttl, got, tc.want)
		}
	}
}

func TestDispatch(t *testing.T) {
	now := time.Date(2017, 6, 29, 10, 15, 1, 0, time.UTC)
	d := responders.NewDispatcher(func() time.Time { return now })
	cmd, err := responders.Decode(record(`"2017-06-29T10:15:00Z"`, "1000", slackInner))
	if err != nil {
		t.Fatal(err)
	}
	var rej *responders.RejectError
	if _, err := d.Dispatch(t.Context(), cmd); !errors.As(err, &rej) || rej.Reason != responders.ReasonNoResponder || rej.Pointer != "/data/command/schema" {
		t.Fatalf("without responder: %v (pointer %q)", err, rej.Pointer)
	}
	r := &recorder{}
	d.Replace(map[string]responders.Enabled{"fakeslack": {ID: "slack", Module: "fakeslack", Responder: r}})
	if e, err := d.Dispatch(t.Context(), cmd); err != nil || e.ID != "slack" || len(r.got) != 1 {
		t.Fatalf("dispatch: %v %v %d", e, err, len(r.got))
	}
	now = now.Add(time.Millisecond)
	if _, err := d.Dispatch(t.Context(), cmd); !errors.As(err, &rej) || rej.Reason != responders.ReasonExpired || rej.Pointer != "/data/envelope/data/execution/timeToLive" {
		t.Fatalf("expired: %v (pointer %q)", err, rej.Pointer)
	}
	if len(r.got) != 1 {
		t.Errorf("an expired command reached the responder")
	}
}

// A resolved route is sent as resolved while the responders stay; after a
// reload it follows the new set: a retry reaches the module's new config, or
// is rejected once none is enabled. The TTL is checked at every send.
func TestSendFollowsReplace(t *testing.T) {
	now := time.Date(2017, 6, 29, 10, 15, 0, 0, time.UTC)
	d := responders.NewDispatcher(func() time.Time { return now })
	cmd, err := responders.Decode(record(`"2017-06-29T10:15:00Z"`, "1000", slackInner))
	if err != nil {
		t.Fatal(err)
	}
	old, repl := &recorder{}, &recorder{}
	d.Replace(map[string]responders.Enabled{"fakeslack": {ID: "old", Module: "fakeslack", Responder: old}})
	r, err := d.Resolve(cmd)
	if err != nil || r.ID != "old" || r.Command != cmd {
		t.Fatalf("Resolve = %+v, %v", r, err)
	}
	if err := d.Send(t.Context(), &r); err != nil || len(old.got) != 1 {
		t.Fatalf("Send: %v, %d calls", err, len(old.got))
	}
	d.Replace(map[string]responders.Enabled{"fakeslack": {ID: "new", Module: "fakeslack", Responder: repl}})
	if err := d.Send(t.Context(), &r); err != nil || len(repl.got) != 1 || len(old.got) != 1 || r.ID != "new" {
		t.Fatalf("Send after a reload: %v; calls old %d new %d; route %s", err, len(old.got), len(repl.got), r.ID)
	}
	d.Replace(nil)
	var rej *responders.RejectError
	if err := d.Send(t.Context(), &r); !errors.As(err, &rej) || rej.Reason != responders.ReasonNoResponder {
		t.Fatalf("Send once no responder is enabled: %v", err)
	}
	d.Replace(map[string]responders.Enabled{"fakeslack": {ID: "new", Module: "fakeslack", Responder: repl}})
	if r, err = d.Resolve(cmd); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second + time.Millisecond)
	if err := d.Send(t.Context(), &r); !errors.As(err, &rej) || rej.Reason != responders.ReasonExpired || len(repl.got) != 1 {
		t.Fatalf("Send after the TTL: %v, %d calls", err, len(repl.got))
	}
}

func TestClassify(t *testing.T) {
	base := errors.New("boom")
	tests := []struct {
		err   error
		want  responders.Verdict
		after time.Duration
	}{
		{nil, responders.Done, 0},
		{base, responders.Retry, 0},
		{responders.Permanent(base), responders.Fail, 0},
		{fmt.Errorf("slack: %w", responders.Permanent(base)), responders.Fail, 0},
		{responders.Retryable(base, 3*time.Second), responders.Retry, 3 * time.Second},
		{fmt.Errorf("wrapped: %w", responders.Retryable(base, time.Second)), responders.Retry, time.Second},
		{context.DeadlineExceeded, responders.Retry, 0},
	}
	for _, tc := range tests {
		v, after := responders.Classify(tc.err)
		if v != tc.want || after != tc.after {
			t.Errorf("Classify(%v) = %v, %v; want %v, %v", tc.err, v, after, tc.want, tc.after)
		}
	}
	if !errors.Is(responders.Permanent(base), base) {
		t.Error("Permanent must keep the cause for errors.Is")
	}
}

// A number of many digits is refused, naming its field, before the JSON
// Schema validator spends seconds on it; the error does not quote it.
func TestDecodeRefusesHugeNumbers(t *testing.T) {
	huge := strings.Repeat("9", 300_000)
	tests := map[string]struct {
		raw     []byte
		want    string
		pointer string
	}{
		"timeToLive": {record(`"2017-06-29T10:15:00Z"`, huge, slackInner),
			"invalid_data: record: /data/envelope/data/execution/timeToLive: a number of 300000 characters; at most 64 are accepted",
			"/data/envelope/data/execution/timeToLive"},
		"a fraction in the command data": {record(`"2017-06-29T10:15:00Z"`, "null",
			`{"schema":"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0","data":{"text":"hi","n~/":[1,-0.`+strings.Repeat("1", 64)+`]}}`),
			"invalid_data: record: /data/command/data/n~0~1/1: a number of 67 characters; at most 64 are accepted",
			"/data/command/data/n~0~1/1"},
		"the record itself": {[]byte(huge), "invalid_data: record: (root): a number of 300000 characters", ""},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := responders.Decode(tt.raw)
			var rej *responders.RejectError
			if !errors.As(err, &rej) || rej.Reason != responders.ReasonInvalidData || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Decode = %.300v\nwant %s", err, tt.want)
			}
			if rej.Pointer != tt.pointer {
				t.Errorf("pointer %q, want %q", rej.Pointer, tt.pointer)
			}
			if want := "3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44"; name != "the record itself" && rej.CommandID != want {
				t.Errorf("the rejection names command %q, want %q", rej.CommandID, want)
			}
		})
	}
	// The longest number accepted still decodes.
	max := "1" + strings.Repeat("0", 17) + "." + strings.Repeat("0", responders.MaxNumberLen-19)
	inner := `{"schema":"iglu:io.sauna.commands/webhook/jsonschema/1-0-0","data":{"body":{"n":` + max + `}}}`
	if _, err := responders.Decode(record(`"2017-06-29T10:15:00Z"`, "null", inner)); err != nil && strings.Contains(err.Error(), "characters") {
		t.Errorf("a %d-character number is refused: %v", len(max), err)
	}
}

// Values quoted in a rejection are clipped: a commandId of 64 KiB must not
// make a log line, dead letter or outcome of that size.
func TestDecodeClipsQuotedValues(t *testing.T) {
	long := strings.Repeat("a", 64<<10)
	raws := map[string][]byte{
		"commandId":     []byte(strings.Replace(string(record(`"2017-06-29T10:15:00Z"`, "null", slackInner)), "3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44", long, 1)),
		"whenCreated":   record(`"`+long+`"`, "null", slackInner),
		"schema":        record(`"2017-06-29T10:15:00Z"`, "null", `{"schema":"iglu:`+long+`","data":{}}`),
		"unknown field": record(`"2017-06-29T10:15:00Z"`, "null", `{"schema":"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0","data":{"text":"x"},"`+long+`":1}`),
	}
	for name, raw := range raws {
		_, err := responders.Decode(raw)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if msg := err.Error(); len(msg) > 1024 || !strings.Contains(msg, " bytes)") {
			t.Errorf("%s: a rejection of %d bytes, want the value clipped: %.400s", name, len(msg), msg)
		}
	}
}

func BenchmarkDecodeHugeNumber(b *testing.B) {
	raw := record(`"2017-06-29T10:15:00Z"`, strings.Repeat("9", 300_000), slackInner)
	for b.Loop() {
		if _, err := responders.Decode(raw); err == nil {
			b.Fatal("accepted")
		}
	}
}
