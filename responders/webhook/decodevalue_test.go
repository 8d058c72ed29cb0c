package webhook

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/responders/delivery/deliverytest"
	"github.com/sauna-io/sauna/schemas"
)

// commandDatas are webhook command data, valid and not, for comparing
// decodeValue with Decode.
var commandDatas = []string{
	`{"body":{"event":"build_failed","build":42,"url":"https://ci.example.com/42"},"headers":{"X-Event":"build_failed"}}`,
	`{"body":1}`,
	` { "body" : "a \"quoted\" } string" , "headers" : { } } `,
	`{"headers":null,"body":null}`,
	`{"body":[1,{"a":"]"},"\\"],"headers":{"X-A":"1","X-B":"two words"}}`,
	`{"body":true}`,
	`{"body":-1.5e3}`,
	`{"body":{}}`,
	`{"body":{"nested":{"deep":[[[]]]}}}`,
	`{"body":1,"body":2}`,
	`{"Body":1}`,
	`{"b\u006fdy":1}`,
	`{"headers":{"X-A":"1"}}`,
	`{"body":1,"headers":{"X-A":1}}`,
	`{"body":1,"headers":{"Host":"evil"}}`,
	`{"body":1,"headers":{"X-Forwarded-For":"1.2.3.4"}}`,
	`{"body":1,"headers":{"bad name":"x"}}`,
	`{"body":1,"headers":{"X-A":"line\nbreak"}}`,
	`{"body":1,"headers":{"X-A":"1","x_a":"2"}}`,
	`{"body":1,"headers":[]}`,
	`{"body":1,"url":"http://internal"}`,
	`[]`,
	`"body"`,
}

// checkDecodeValue fails when decodeValue, given data as the validator
// gets it, gives anything but what Decode gives.
func checkDecodeValue(t *testing.T, data []byte) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return
	}
	got, ok := decodeValue(WebhookV1, responders.CommandData{Raw: data, Value: asMembers(v)})
	want, werr := Decode(WebhookV1, data)
	if !ok {
		return
	}
	if werr != nil {
		t.Fatalf("decodeValue accepted what Decode refuses (%v): %s", werr, data)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeValue gave %#v, Decode %#v: %s", got, want, data)
	}
}

// asMembers is v with its objects, outside arrays, as *schemas.Members:
// decodeValue reads the command's object and its headers, and takes the
// body from the text.
func asMembers(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	ms := make(schemas.Members, 0, len(m))
	for name, e := range m {
		ms = append(ms, schemas.Member{Name: name, Value: asMembers(e)})
	}
	return &ms
}

func TestDecodeValueIsDecode(t *testing.T) {
	accepted := 0
	for _, d := range commandDatas {
		checkDecodeValue(t, []byte(d))
		v, _ := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(d)))
		if _, ok := decodeValue(WebhookV1, responders.CommandData{Raw: []byte(d), Value: asMembers(v)}); ok {
			accepted++
		}
	}
	if accepted < 8 {
		t.Errorf("decodeValue took only %d of the valid commands", accepted)
	}
}

func FuzzDecodeValue(f *testing.F) {
	for _, d := range commandDatas {
		f.Add([]byte(d))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecodeValue(t, data)
	})
}

// TestDecodedRecordIsDecode decodes whole records, so that decodeValue gets
// the data as the record's own parse gives it: the payload must be Decode's
// of the command's data, and the digest the one of that data's second
// parse.
func TestDecodedRecordIsDecode(t *testing.T) {
	accepted := 0
	for _, d := range append(commandDatas,
		`{"body":{"event":"deployed","service":"acme-web","owners":["ops","web"],"ok":true,"durationMs":1200},"headers":{"X-Request-Id":"req-1"}}`,
		`{"headers":{"X-B":"2","X-A":"1"},"body":{"z":1,"a":{"y":[],"b":null}}}`,
		" {\n \"headers\" : {\"X-A\":\"1\"} ,\t\"body\" : [1, {\"a\":\"}\"}, \"\\\"\"] } ",
		`{"body":"a \"q\" \\"}`,
		`{"b\u006fdy":{"x":1}}`,
		`{"body":null}`,
		`{"body":-1.5e3 }`,
	) {
		cmd, err := responders.Decode(deliverytest.Record(WebhookV1.String(), d))
		if err != nil {
			if _, derr := Decode(WebhookV1, []byte(d)); derr == nil && schemas.ValidateJSON(WebhookV1, asMembers(mustValue(t, d))) == nil {
				t.Errorf("record refused (%v), its data is valid: %s", err, d)
			}
			continue
		}
		accepted++
		want, err := Decode(WebhookV1, cmd.Data)
		if err != nil || !reflect.DeepEqual(cmd.Payload, want) {
			t.Errorf("payload %#v, Decode gives %#v (%v): %s", cmd.Payload, want, err, d)
		}
		got, err := cmd.Digest()
		wantDigest, werr := responders.Digest(WebhookV1.String(), cmd.Data)
		if err != nil || werr != nil || got != wantDigest {
			t.Errorf("digest %s (%v), of the data %s (%v): %s", got, err, wantDigest, werr, d)
		}
	}
	if accepted < 10 {
		t.Errorf("only %d records accepted", accepted)
	}
}

func mustValue(t *testing.T, d string) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(d)))
	if err != nil {
		return nil
	}
	return v
}

// Headers read and write as the JSON object encoding/json makes of a
// map[string]string, and hold it in name order.
func TestHeadersJSON(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Headers
		out  string
	}{
		{`{"headers":{"X-B":"2","X-A":"1"}}`, Headers{{"X-A", "1"}, {"X-B", "2"}}, `{"X-A":"1","X-B":"2"}`},
		{`{"headers":{"X-A":"1","X-A":"2"}}`, Headers{{"X-A", "2"}}, `{"X-A":"2"}`},
		{`{"headers":{}}`, Headers{}, `{}`},
		{`{"headers":null}`, nil, `null`},
		{`{}`, nil, `null`},
	} {
		var c2 Command
		if err := json.Unmarshal([]byte(c.in), &c2); err != nil || !reflect.DeepEqual(c2.Headers, c.want) {
			t.Errorf("%s: headers %#v (%v), want %#v", c.in, c2.Headers, err, c.want)
			continue
		}
		if out, err := json.Marshal(c2.Headers); err != nil || string(out) != c.out {
			t.Errorf("%s: written back as %s (%v), want %s", c.in, out, err, c.out)
		}
	}
	var c2 Command
	if err := json.Unmarshal([]byte(`{"headers":{"X-A":1}}`), &c2); err == nil {
		t.Errorf("a header of value 1 was read: %#v", c2.Headers)
	}
}
