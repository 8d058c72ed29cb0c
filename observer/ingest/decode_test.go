package ingest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sauna-io/sauna/responders"
	_ "github.com/sauna-io/sauna/responders/all"
)

var fixedNow = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func slackInner(text string) string {
	return fmt.Sprintf(`{"schema":"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0","data":{"text":%q,"channel":"#ops"}}`, text)
}

// hipchatInner is a command of a retired module.
const hipchatInner = `{"schema":"iglu:com.hipchat.sauna.commands/send_room_notification/jsonschema/1-0-0","data":{"roomIdOrName":"ops","message":"x"}}`

func fullCommand(id string, created time.Time, ttl string, inner string) string {
	return fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0","data":{`+
		`"envelope":{"schema":"iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0","data":{`+
		`"commandId":%q,"whenCreated":%q,"execution":{"semantics":"AT_LEAST_ONCE","timeToLive":%s},"tags":{}}},`+
		`"command":%s}}`, id, created.UTC().Format(time.RFC3339Nano), ttl, inner)
}

func testDecoder() Decoder {
	n := 0
	return Decoder{MaxCommands: 500, DefaultTTL: time.Hour, Now: func() time.Time { return fixedNow },
		NewID: func() string { n++; return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) }}
}

func TestDecodeFullAndBare(t *testing.T) {
	full := fullCommand("11111111-1111-4111-8111-111111111111", fixedNow, "null", slackInner("full"))
	items, errs := testDecoder().Decode([]byte("  "+full+"\n"), false)
	if errs != nil {
		t.Fatal(errs)
	}
	if items[0].Cmd.ID != "11111111-1111-4111-8111-111111111111" || items[0].Cmd.Module != "slack" {
		t.Errorf("full command decoded as %+v", items[0].Cmd)
	}
	// The record is the command as sent, on one line.
	if strings.Contains(string(items[0].Data), "\n") || !json.Valid(items[0].Data) {
		t.Errorf("record %q", items[0].Data)
	}

	items, errs = testDecoder().Decode([]byte(slackInner("bare")), false)
	if errs != nil {
		t.Fatal(errs)
	}
	c := items[0].Cmd
	if c.ID != "00000000-0000-4000-8000-000000000001" || !c.Created.Equal(fixedNow) || c.TimeToLiveMillis == nil || *c.TimeToLiveMillis != 3600000 {
		t.Errorf("wrapped envelope %+v", c)
	}
	// What is put is exactly what an observer decodes.
	again, err := responders.Decode(items[0].Data)
	if err != nil || again.ID != c.ID || string(again.Data) != `{"text":"bare","channel":"#ops"}` {
		t.Errorf("record %s decodes to %+v, %v", items[0].Data, again, err)
	}

	d := testDecoder()
	d.DefaultTTL = 0
	items, _ = d.Decode([]byte(slackInner("forever")), false)
	if items[0].Cmd.TimeToLiveMillis != nil {
		t.Error("a zero default time to live must write null")
	}
}

func TestDecodeNDJSON(t *testing.T) {
	body := slackInner("a") + "\n\n" + fullCommand("22222222-2222-4222-8222-222222222222", fixedNow, "60000", slackInner("b")) + "\r\n" + slackInner("c") + "\n"
	items, errs := testDecoder().Decode([]byte(body), true)
	if errs != nil {
		t.Fatal(errs)
	}
	if len(items) != 3 || items[1].Cmd.ID != "22222222-2222-4222-8222-222222222222" {
		t.Fatalf("items %+v", items)
	}
	d := testDecoder()
	d.MaxCommands = 2
	if _, errs := d.Decode([]byte(body), true); len(errs) != 1 || !strings.Contains(errs[0].Message, "more than 2") {
		t.Errorf("over the batch limit: %+v", errs)
	}
}

func TestDecodeErrors(t *testing.T) {
	expired := fullCommand("33333333-3333-4333-8333-333333333333", fixedNow.Add(-time.Hour), "1000", slackInner("old"))
	for _, tc := range []struct {
		name, body string
		ndjson     bool
		want       []ItemError
	}{
		{"empty", "", false, []ItemError{{Index: 0, Field: "", Message: "no command in the body"}}},
		{"not JSON", `{"schema":`, false, []ItemError{{Index: 0, Field: "", Message: "invalid JSON: unexpected end of JSON input"}}},
		{"not an object", `[1]`, false, []ItemError{{Index: 0, Field: "", Message: "not a JSON object"}}},
		{"two values as JSON", slackInner("a") + slackInner("b"), false, []ItemError{{Index: 0, Field: ""}}},
		{"no schema", `{"data":{}}`, false, []ItemError{{Index: 0, Field: "/schema"}}},
		{"bare without text", `{"schema":"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0","data":{"channel":"#ops"}}`, false,
			// Slack needs text or attachments: both causes are reported.
			[]ItemError{{Index: 0, Field: "/data"}, {Index: 0, Field: "/data"}}},
		{"unknown command", `{"schema":"iglu:com.acme/launch/jsonschema/1-0-0","data":{}}`, false, []ItemError{{Index: 0, Field: "/schema"}}},
		{"full with bad inner", fullCommand("44444444-4444-4444-8444-444444444444", fixedNow, "null",
			`{"schema":"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0","data":{"text":5}}`), false,
			[]ItemError{{Index: 0, Field: "/data/command/data/text"}}},
		{"full with bad envelope", strings.Replace(fullCommand("not-a-uuid", fixedNow, "null", slackInner("x")), "not-a-uuid", "nope", 1), false,
			[]ItemError{{Index: 0, Field: "/data/envelope/data/commandId"}}},
		{"long number in a bare command", `{"schema":"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0","data":{"text":"x","n":` + strings.Repeat("9", 100) + `}}`, false,
			[]ItemError{{Index: 0, Field: "/data/n"}}},
		{"long number in a full command", strings.Replace(fullCommand("55555555-5555-4555-8555-555555555555", fixedNow, "null", slackInner("x")), `"timeToLive":null`, `"timeToLive":`+strings.Repeat("1", 80), 1), false,
			[]ItemError{{Index: 0, Field: "/data/envelope/data/execution/timeToLive"}}},
		{"full with a leap second", strings.Replace(fullCommand("66666666-6666-4666-8666-666666666666", fixedNow, "null", slackInner("x")), "2026-12-06T12:00:00Z", "2016-12-31T23:59:60Z", 1), false,
			[]ItemError{{Index: 0, Field: "/data/envelope/data/whenCreated"}}},
		{"full with a bad inner schema", fullCommand("77777777-7777-4777-8777-777777777777", fixedNow, "null", `{"schema":"iglu:com.acme/launch/jsonschema/0-0-0","data":{}}`), false,
			[]ItemError{{Index: 0, Field: "/data/command/schema"}}},
		{"full with an unknown inner", fullCommand("88888888-8888-4888-8888-888888888888", fixedNow, "null", `{"schema":"iglu:com.acme/launch/jsonschema/1-0-0","data":{}}`), false,
			[]ItemError{{Index: 0, Field: "/data/command/schema"}}},
		{"full with a retired inner", fullCommand("99999999-9999-4999-8999-999999999999", fixedNow, "null", hipchatInner), false,
			[]ItemError{{Index: 0, Field: "/data/command/schema"}}},
		{"bare retired", hipchatInner, false, []ItemError{{Index: 0, Field: "/schema"}}},
		{"wrapper revision not bundled", strings.Replace(fullCommand("aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa", fixedNow, "null", slackInner("x")), "command/jsonschema/1-0-0", "command/jsonschema/1-0-9", 1), false,
			[]ItemError{{Index: 0, Field: "/schema"}}},
		{"expired", expired, false, []ItemError{{Index: 0, Field: "/data/envelope/data/execution/timeToLive"}}},
		{"second line bad", slackInner("ok") + "\n" + `{"schema":"iglu:com.acme/launch/jsonschema/1-0-0","data":{}}`, true,
			[]ItemError{{Index: 1, Field: "/schema"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items, errs := testDecoder().Decode([]byte(tc.body), tc.ndjson)
			if items != nil {
				t.Errorf("items returned with errors: %+v", items)
			}
			if len(errs) != len(tc.want) {
				t.Fatalf("errors %+v, want %+v", errs, tc.want)
			}
			for i, w := range tc.want {
				if errs[i].Index != w.Index || errs[i].Field != w.Field || errs[i].Message == "" {
					t.Errorf("error %d: %+v, want index %d field %q", i, errs[i], w.Index, w.Field)
				}
				if w.Message != "" && errs[i].Message != w.Message {
					t.Errorf("message %q, want %q", errs[i].Message, w.Message)
				}
			}
		})
	}
}

// FuzzDecode: whatever the body, the decoder either returns only valid
// items, each of which an observer accepts as is, or only errors with an
// index inside the request.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(slackInner("hello")), false)
	f.Add([]byte(fullCommand("11111111-1111-4111-8111-111111111111", fixedNow, "null", slackInner("x"))), false)
	f.Add([]byte(slackInner("a")+"\n"+slackInner("b")+"\n"), true)
	f.Add([]byte(`{"schema":"iglu:com.acme/launch/jsonschema/1-0-0","data":{}}`), false)
	f.Add([]byte(`{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0","data":{"envelope":{}}}`), false)
	f.Add([]byte("\n\n"), true)
	f.Add([]byte(`[1,2]`), false)
	f.Add([]byte("{\"schema\":\"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0\",\"data\":{\"text\":\"\xff\"}}"), false)
	f.Fuzz(func(t *testing.T, body []byte, ndjson bool) {
		d := testDecoder()
		d.MaxCommands = 5
		items, errs := d.Decode(body, ndjson)
		if (items == nil) == (errs == nil) {
			t.Fatalf("items %v and errors %v", items, errs)
		}
		for _, e := range errs {
			if e.Index < 0 || e.Index > d.MaxCommands || e.Message == "" {
				t.Fatalf("bad error %+v", e)
			}
		}
		for _, it := range items {
			c, err := responders.Decode(it.Data)
			if err != nil {
				t.Fatalf("an accepted record is rejected by observers: %v\n%s", err, it.Data)
			}
			if c.ID != it.Cmd.ID || c.Expired(fixedNow) {
				t.Fatalf("record %s decodes to %+v", it.Data, c)
			}
		}
	})
}

// A record is its data and its partition key: with X-Sauna-Partition-Key
// set, the commandId is not part of it, so a command that fits with that key
// exactly is taken, and one byte more is refused.
func TestDecodeRecordLimitCountsThePartitionKeyUsed(t *testing.T) {
	d := testDecoder()
	d.PartitionKey = "k"
	items, errs := d.Decode([]byte(slackInner("")), false)
	if errs != nil {
		t.Fatal(errs)
	}
	overhead := len(items[0].Data) + len(d.PartitionKey)
	fits := slackInner(strings.Repeat("x", maxRecordBytes-overhead))
	if _, errs := d.Decode([]byte(fits), false); errs != nil {
		t.Errorf("a command of exactly the record limit with its partition key: %+v", errs)
	}
	over := slackInner(strings.Repeat("x", maxRecordBytes-overhead+1))
	if _, errs := d.Decode([]byte(over), false); len(errs) != 1 || !strings.Contains(errs[0].Message, "over the Kinesis record limit") {
		t.Errorf("one byte over the record limit: %+v", errs)
	}
}
