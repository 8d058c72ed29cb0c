package responders_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/sauna-io/sauna/responders"
)

const digestSchema = "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0"

func mustDigest(t *testing.T, schema, data string) string {
	t.Helper()
	d, err := responders.Digest(schema, json.RawMessage(data))
	if err != nil {
		t.Fatalf("Digest(%s, %s): %v", schema, data, err)
	}
	return d
}

func TestDigestCanonical(t *testing.T) {
	base := `{"text":"héllo","channel":"#ops","n":1.5,"list":[1,"a",null,true,{"b":2,"a":1}],"empty":{}}`
	want := mustDigest(t, digestSchema, base)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(want) {
		t.Fatalf("digest %q is not 64 lowercase hex digits", want)
	}
	for name, same := range map[string]string{
		"key order":  `{"empty":{},"list":[1,"a",null,true,{"a":1,"b":2}],"n":1.5,"channel":"#ops","text":"héllo"}`,
		"whitespace": "{ \"text\" :\t\"héllo\",\n \"channel\":\"#ops\", \"n\": 1.5 ,\r\n\"list\":[ 1 , \"a\" , null , true , { \"b\" : 2 , \"a\" : 1 } ] , \"empty\" : { } }\n",
		"escapes":    `{"text":"h\u00e9llo","channel":"\u0023ops","n":1.5,"list":[1,"\u0061",null,true,{"b":2,"a":1}],"empty":{}}`,
		"numbers":    `{"text":"héllo","channel":"#ops","n":1.50,"list":[1.0,"a",null,true,{"b":2e0,"a":10e-1}],"empty":{}}`,
		"exponent":   `{"text":"héllo","channel":"#ops","n":15E-1,"list":[0.1e1,"a",null,true,{"b":0.2e+1,"a":1}],"empty":{}}`,
		"repeat key": `{"text":"bye","text":"héllo","channel":"#ops","n":1.5,"list":[1,"a",null,true,{"b":2,"a":1}],"empty":{}}`,
	} {
		if got := mustDigest(t, digestSchema, same); got != want {
			t.Errorf("%s: digest %s, want %s", name, got, want)
		}
	}
	if a, b := mustDigest(t, digestSchema, `{"n":0}`), mustDigest(t, digestSchema, `{"n":-0.0e5}`); a != b {
		t.Errorf("0 and -0.0e5 differ: %s %s", a, b)
	}
}

func TestDigestChanges(t *testing.T) {
	const base = `{"text":"hello","n":1,"list":[1,2],"flag":true,"obj":{"a":"x"}}`
	want := mustDigest(t, digestSchema, base)
	seen := map[string]string{want: "base"}
	changes := map[string][2]string{
		"schema":            {"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-1", base},
		"schema vendor":     {"iglu:com.other.sauna.commands/send_message/jsonschema/1-0-0", base},
		"string value":      {digestSchema, `{"text":"hello!","n":1,"list":[1,2],"flag":true,"obj":{"a":"x"}}`},
		"string case":       {digestSchema, `{"text":"Hello","n":1,"list":[1,2],"flag":true,"obj":{"a":"x"}}`},
		"number value":      {digestSchema, `{"text":"hello","n":2,"list":[1,2],"flag":true,"obj":{"a":"x"}}`},
		"number as string":  {digestSchema, `{"text":"hello","n":"1","list":[1,2],"flag":true,"obj":{"a":"x"}}`},
		"number fraction":   {digestSchema, `{"text":"hello","n":1.0000000000000000001,"list":[1,2],"flag":true,"obj":{"a":"x"}}`},
		"array order":       {digestSchema, `{"text":"hello","n":1,"list":[2,1],"flag":true,"obj":{"a":"x"}}`},
		"array element":     {digestSchema, `{"text":"hello","n":1,"list":[1,2,3],"flag":true,"obj":{"a":"x"}}`},
		"bool":              {digestSchema, `{"text":"hello","n":1,"list":[1,2],"flag":false,"obj":{"a":"x"}}`},
		"null":              {digestSchema, `{"text":"hello","n":1,"list":[1,2],"flag":null,"obj":{"a":"x"}}`},
		"member added":      {digestSchema, `{"text":"hello","n":1,"list":[1,2],"flag":true,"obj":{"a":"x"},"extra":1}`},
		"member removed":    {digestSchema, `{"text":"hello","n":1,"list":[1,2],"flag":true}`},
		"key renamed":       {digestSchema, `{"Text":"hello","n":1,"list":[1,2],"flag":true,"obj":{"a":"x"}}`},
		"nested value":      {digestSchema, `{"text":"hello","n":1,"list":[1,2],"flag":true,"obj":{"a":"y"}}`},
		"nested key":        {digestSchema, `{"text":"hello","n":1,"list":[1,2],"flag":true,"obj":{"b":"x"}}`},
		"string whitespace": {digestSchema, `{"text":"hello ","n":1,"list":[1,2],"flag":true,"obj":{"a":"x"}}`},
		"big integers":      {digestSchema, `{"text":"hello","n":9007199254740993,"list":[1,2],"flag":true,"obj":{"a":"x"}}`},
	}
	for name, c := range changes {
		got := mustDigest(t, c[0], c[1])
		if prev, dup := seen[got]; dup {
			t.Errorf("%s: same digest as %s", name, prev)
		}
		seen[got] = name
	}
	// Beyond float64: these two differ by one.
	if mustDigest(t, digestSchema, `{"n":9007199254740993}`) == mustDigest(t, digestSchema, `{"n":9007199254740992}`) {
		t.Error("integers beyond float64 precision got the same digest")
	}
	// Member names and values are not interchangeable.
	if mustDigest(t, digestSchema, `{"a":"b"}`) == mustDigest(t, digestSchema, `{"b":"a"}`) {
		t.Error(`{"a":"b"} and {"b":"a"} got the same digest`)
	}
}

func TestDigestErrors(t *testing.T) {
	for _, data := range []string{``, `{`, `{"a":1} {"b":2}`, `nope`} {
		if d, err := responders.Digest(digestSchema, json.RawMessage(data)); err == nil {
			t.Errorf("Digest(%q) = %s, want an error", data, d)
		}
	}
}

// The decoded command and a record read without validation get the same
// digest, and the envelope does not count.
func TestCommandDigestAndIdentify(t *testing.T) {
	raw := record(`"2017-06-29T12:15:00+02:00"`, "1200000", slackInner)
	cmd, err := responders.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	d, err := cmd.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if want := mustDigest(t, slackCmd.String(), `{"channel":"#ops","text":"hello"}`); d != want {
		t.Errorf("Command.Digest = %s, want %s", d, want)
	}
	id, d2, err := responders.Identify(raw)
	if err != nil || id != cmd.ID || d2 != d {
		t.Errorf("Identify = %q, %s, %v; want %q, %s", id, d2, err, cmd.ID, d)
	}
	other := record(`"2020-01-01T00:00:00Z"`, "null", slackInner)
	other = []byte(strings.Replace(string(other), `"tags":{"source":"test"}`, `"tags":{}`, 1))
	if _, d3, err := responders.Identify(other); err != nil || d3 != d {
		t.Errorf("another envelope changed the digest: %s, %v; want %s", d3, err, d)
	}
	for _, bad := range []string{`{}`, `{"data":{"envelope":{"data":{"commandId":"x"}}}}`, `[`} {
		if _, _, err := responders.Identify([]byte(bad)); err == nil {
			t.Errorf("Identify(%s): no error", bad)
		}
	}
}

// The canonical form, and so every digest already stored in an outcomes
// table, must not change with the way it is computed.
func TestDigestGolden(t *testing.T) {
	for _, c := range []struct{ data, digest string }{
		{"{\"text\":\"héllo\",\"channel\":\"#ops\",\"n\":1.5,\"list\":[1,\"a\",null,true,{\"b\":2,\"a\":1}],\"empty\":{}}", "7d9cbbc9d57c712666d64dd3da2b951dc22991c4fcc860725aaebedf2a2e9727"},
		{"{\"n\":0,\"m\":-0.0e5,\"a\":[100,1e2,1E+2,0.00120,-12.5e-3,123456789012345678901234567890,1e-400,7e999999999999999999999]}", "b561dff5670a2af23e9af3861f21b1225fe5452f9adada72891c37286bc1c434"},
		{"{\"s\":\"tab\\there \\\"q\\\" back\\\\slash \\u0001 \\u001f \\u007f é 😀 \\ud83d\\ude00 \\u2028\",\"\\u00e9\":\"k\"}", "97fe4936fe987dc269980e83968f5075562e854446b3ea870c362e05c8ffda54"},
		{"[\"x\",{\"z\":{\"y\":[[],{}]},\"a\":false},null,-1.0,3.25e10]", "f1e4dacdc5c3ed018ebffee89d7a92f2c702caee6ae72b68c1b9d55ad817b046"},
		{"\"just a string\"", "e5fbc8446d771a121c75d9f2fc88597924ebad7d4dfac93cd51d403171e0e816"},
		{"12.000e-2", "6d9f9f8ff4fbc5563638376415aa6f3ea37d004e8ea536a1842624ad1bb24792"},
		{"{\"body\":{\"event\":\"deployed\",\"service\":\"acme-web\",\"version\":\"2.4.1\",\"region\":\"eu-west-1\",\"ok\":true,\"durationMs\":1001,\"owners\":[\"ops\",\"web\"]},\"headers\":{\"X-Request-Id\":\"req-00000001\"}}", "55d9cd4680f3e930994b620f5e7a9894995f307b72c107aa04570373f62a0525"},
	} {
		if got := mustDigest(t, digestSchema, c.data); got != c.digest {
			t.Errorf("Digest(%s) = %s, want %s", c.data, got, c.digest)
		}
	}
}
