package webhook

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

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
	got, ok := decodeValue(WebhookV1, data, asMembers(v))
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

// asMembers is v with its objects as *schemas.Members, as decodeValue is
// given them.
func asMembers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		ms := make(schemas.Members, 0, len(x))
		for k, e := range x {
			ms = append(ms, schemas.Member{Name: k, Value: asMembers(e)})
		}
		return &ms
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = asMembers(e)
		}
		return out
	}
	return v
}

func TestDecodeValueIsDecode(t *testing.T) {
	accepted := 0
	for _, d := range commandDatas {
		checkDecodeValue(t, []byte(d))
		v, _ := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(d)))
		if _, ok := decodeValue(WebhookV1, []byte(d), asMembers(v)); ok {
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
