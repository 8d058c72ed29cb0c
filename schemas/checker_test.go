package schemas

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// checkerCorpus is every command kept as testdata in the repository
// (Sauna's own test commands among them), whole.
func checkerCorpus(t testing.TB) [][]byte {
	t.Helper()
	var out [][]byte
	for _, pattern := range []string{
		"testdata/commands/*.json",
		"../testdata/commands/*.json",
		"../cmd/sauna/testdata/sauna-commands/*.json",
		"../responders/*/testdata/*.json",
	} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
	}
	if len(out) < 20 {
		t.Fatalf("only %d files in the checker corpus", len(out))
	}
	return out
}

// checkerCases are instances on the edges of what the bundled command
// schemas say; each is checked against every schema.
var checkerCases = []string{
	// Integers however written, and non-integers.
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":1.0},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":12e3},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":1.25e1},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":1250e-2},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":1200e-2},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":-0.0},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":0.000e5},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":1E-1000000},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":0.00E+99999},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":0e99999999999999999999},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":0e9999999},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":12e9999999},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":1.5e1000001},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":123456789012345678901234567890},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":"1"},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{"a":1}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":null,"timeToLive":null},"tags":{}}`,
	// UUIDs.
	`{"commandId":"3F2A6C1E-8D4B-4A7E-9C2F-5B1D0E7A9C44","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}`,
	`{"commandId":"3f2a6c1e8d4b-4a7e-9c2f-5b1d0e7a9c44-","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}`,
	`{"commandId":"3f2a6c1é-8d4b-4a7e-9c2f-5b1d0e7a9c4","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}`,
	// Date-times: offsets, fractions, lowercase, leap days and seconds.
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2016-02-29t23:59:60.123456789+00:00","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2016-12-31T22:59:60-01:00","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:60Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-02-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2000-02-29T10:15:00.5z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"1900-02-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"0000-01-01T00:00:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T24:00:00+23:59","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00.+01:00","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00+1:000","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}`,
	`{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29 10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}`,
	// Lengths count characters, not bytes.
	`{"roomIdOrName":"é","message":"x"}`,
	`{"roomIdOrName":"` + strings.Repeat("é", 100) + `","message":"x","color":"RED","notify":false,"messageFormat":"TEXT"}`,
	`{"roomIdOrName":"` + strings.Repeat("é", 101) + `","message":"x"}`,
	`{"roomIdOrName":"ops","message":"x","color":"red"}`,
	`{"roomIdOrName":"ops","message":"x","notify":"yes"}`,
	// anyOf, items as a schema and as a tuple.
	`{"service_key":"k","event_type":"trigger","description":"d","contexts":[{"type":"link","href":"h"},{"type":"image","src":"s"}]}`,
	`{"service_key":"k","event_type":"trigger","description":"d","contexts":[{"type":"image","href":"h"}]}`,
	`{"service_key":"k","event_type":"acknowledge","incident_key":"i","details":{"a":[1,{}]}}`,
	`{"service_key":"k","event_type":"resolve","incident_key":"i","contexts":[]}`,
	`{"personalizations":[{"to":[{"email":"a"},{"bogus":1}]},"anything"],"from":{"email":"f"},"categories":["a",1]}`,
	`{"personalizations":[{"to":[{"email":1}]}],"from":{"email":"f"}}`,
	`{"personalizations":[],"from":{"email":"f"},"asm":{"group_id":1.5}}`,
	`{"text":"t","attachments":[]}`,
	`{"attachments":[{"fallback":"f","ts":1e2}]}`,
	`{"attachments":[{"fallback":"f","ts":1.5}]}`,
	// Patterns: header names and values.
	`{"body":null,"headers":{"X-A":"1","x_b.c~":"ok"}}`,
	`{"body":[1,2],"headers":{"X A":"1"}}`,
	`{"body":{},"headers":{"X-A":"line\nbreak"}}`,
	`{"body":{},"headers":{"X-A":"nul\u0000"}}`,
	`{"body":{},"headers":{"":"v"}}`,
	`{"body":{},"headers":{"X-A":1}}`,
	`{"headers":{}}`,
	// Wrappers.
	`{"schema":"iglu:a/b/c/1-0-0","data":null}`,
	`{"schema":"iglu:a/b/c/1-0-0\n","data":null}`,
	`{"schema":"iglu:a.b/c/d/1-0","data":1}`,
	`{"envelope":{"schema":"iglu:a/b/c/1-0-0","data":{}},"command":{"schema":"iglu:a/b/c/1-0-0"}}`,
	// Other types everywhere.
	`[]`, `"s"`, `1`, `1.5`, `true`, `null`, `{}`,
}

// checkerKeys are the bundled schemas that have a checker.
func checkerKeys(t testing.TB) []Key {
	t.Helper()
	js := jsonSchemas()
	if js.err != nil {
		t.Fatal(js.err)
	}
	var out []Key
	for _, k := range Keys() {
		if v := js.byKey[k]; v != nil && v.checker != nil {
			out = append(out, k)
		}
	}
	return out
}

// sameAsLibrary fails unless the checker of every schema in keys gives,
// for doc and every value within it, the library's answer: valid or
// invalid, never unsure, for values of jsonschema.UnmarshalJSON and of
// encoding/json (numbers as float64).
func sameAsLibrary(t testing.TB, keys []Key, doc []byte) {
	t.Helper()
	exact, err := jsonschema.UnmarshalJSON(strings.NewReader(string(doc)))
	if err != nil {
		return
	}
	roots := []any{exact}
	// encoding/json refuses numbers beyond float64's range.
	var floats any
	if json.Unmarshal(doc, &floats) == nil {
		roots = append(roots, floats)
	}
	js := jsonSchemas()
	for _, root := range roots {
		walkValues(root, func(v any) {
			members := asMembers(v)
			for _, k := range keys {
				libErr := js.byKey[k].schema.Validate(v)
				for _, in := range []any{v, members} {
					got := js.byKey[k].checker.check(in, 0)
					if got == unsure || (got == valid) != (libErr == nil) {
						b, _ := json.Marshal(v)
						t.Fatalf("%s: the checker says %v, the library %v, for %s (%T)", k, got, libErr, b, in)
					}
				}
			}
		})
	}
}

func (v verdict) String() string {
	return [...]string{valid: "valid", unsure: "unsure", invalid: "invalid"}[v]
}

// asMembers is v with every object as Members, and every string and
// json.Number as a pointer to it, as a decoder may give them.
func asMembers(v any) any {
	switch x := v.(type) {
	case string:
		return &x
	case json.Number:
		return &x
	case map[string]any:
		out := make(Members, 0, len(x))
		for k, e := range x {
			out = append(out, Member{Name: k, Value: asMembers(e)})
		}
		return &out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = asMembers(e)
		}
		return out
	}
	return v
}

// TestValidateJSONMembers: objects given as Members validate, and fail with
// the words, of the same objects as maps.
func TestValidateJSONMembers(t *testing.T) {
	for _, doc := range checkerCases {
		v := decodeJSON(t, doc)
		members := asMembers(v)
		for _, k := range checkerKeys(t) {
			want := ValidateJSON(k, v)
			got := ValidateJSON(k, members)
			if (want == nil) != (got == nil) || want != nil && want.Error() != got.Error() {
				t.Errorf("%s: %s\nas maps: %v\nas Members: %v", k, doc, want, got)
			}
		}
	}
	// The library is handed maps: the instance itself is left as it was.
	v := map[string]any{"a": []any{&Members{{Name: "b", Value: "c"}}}}
	if p, changed := plainJSON(v); !changed || p.(map[string]any)["a"].([]any)[0].(map[string]any)["b"] != "c" {
		t.Errorf("plainJSON(%v) = %v", v, p)
	}
	if _, ok := v["a"].([]any)[0].(*Members); !ok {
		t.Error("plainJSON changed its argument")
	}
}

func walkValues(v any, f func(any)) {
	f(v)
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			walkValues(e, f)
		}
	case []any:
		for _, e := range x {
			walkValues(e, f)
		}
	}
}

// TestEveryCommandSchemaHasAChecker keeps the fast path: a keyword the
// checker does not know would silently send every command to the library.
func TestEveryCommandSchemaHasAChecker(t *testing.T) {
	js := jsonSchemas()
	for _, k := range Keys() {
		if k.Format != "jsonschema" || k == metaSchemaKey {
			continue
		}
		if _, err := newChecker(js.byKey[k].schema); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	// The meta-schema uses dependencies: the library alone validates
	// against it, which shows that an unsupported keyword is refused.
	if js.byKey[metaSchemaKey].checker != nil {
		t.Error("the meta-schema has a checker")
	}
}

func TestCheckerMatchesLibrary(t *testing.T) {
	keys := checkerKeys(t)
	for _, doc := range checkerCorpus(t) {
		sameAsLibrary(t, keys, doc)
	}
	for _, doc := range checkerCases {
		sameAsLibrary(t, keys, []byte(doc))
	}
}

// TestCheckerUnsure: values the checker cannot judge go to the library.
func TestCheckerUnsure(t *testing.T) {
	js := jsonSchemas()
	env := js.byKey[Key{Vendor: "com.snowplowanalytics.sauna.commands", Name: "envelope", Format: "jsonschema", Model: 1}].checker
	for _, v := range []any{
		int64(1),
		map[string]any{"commandId": 1.5, "x": struct{}{}},
	} {
		if got := env.check(v, 0); got == valid {
			t.Errorf("check(%#v) = valid", v)
		}
	}
	if got := env.check(int64(1), 0); got != unsure {
		t.Errorf("check(int64) = %v, want unsure", got)
	}
	for lit, want := range map[string]verdict{
		"1e1234567": invalid, "1e-1234567": invalid, "0.0e-1234567": valid, "100e-2": valid, "101e-2": invalid,
		"1e1000000": valid, "1.5e1000001": valid, "1e1000001": invalid, "0e99999999999999999999": invalid,
		"1.": unsure, "01": unsure, "0x10": unsure, "1e": unsure, "": unsure,
	} {
		if got := integerLiteral(lit); got != want {
			t.Errorf("integerLiteral(%q) = %v, want %v", lit, got, want)
		}
	}
}

func TestValidateJSONValidDoesNotAllocate(t *testing.T) {
	n := 0
	for _, doc := range checkerCorpus(t) {
		var sd selfDescribing
		if json.Unmarshal(doc, &sd) != nil {
			continue
		}
		k, err := ParseKey(sd.Schema)
		if err != nil {
			continue
		}
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(doc)))
		if err != nil {
			t.Fatal(err)
		}
		data := v.(map[string]any)["data"]
		if ValidateJSON(k, data) != nil {
			continue
		}
		if a := testing.AllocsPerRun(10, func() { _ = ValidateJSON(k, data) }); a != 0 {
			t.Errorf("validating a valid %s allocates %v times", k, a)
		}
		members := asMembers(data)
		if a := testing.AllocsPerRun(10, func() { _ = ValidateJSON(k, members) }); a != 0 {
			t.Errorf("validating a valid %s as Members and pointers allocates %v times", k, a)
		}
		n++
	}
	if n < 10 {
		t.Errorf("only %d valid wrappers in the corpus", n)
	}
}

// FuzzCheckerMatchesLibrary: on any JSON document, every checker agrees
// with the library on the document and on every value within it.
func FuzzCheckerMatchesLibrary(f *testing.F) {
	for _, doc := range checkerCorpus(f) {
		f.Add(doc)
	}
	for _, doc := range checkerCases {
		f.Add([]byte(doc))
	}
	keys := checkerKeys(f)
	f.Fuzz(func(t *testing.T, doc []byte) {
		sameAsLibrary(t, keys, doc)
	})
}

// TestCheckerOtherKeywords holds the keywords no bundled schema uses yet to
// the library's answers, on schemas written here.
func TestCheckerOtherKeywords(t *testing.T) {
	docs := map[string]string{
		"combinations": `{"allOf":[{"type":"object"},{"minProperties":1,"maxProperties":2}],
			"oneOf":[{"required":["a"]},{"required":["b"]}],"not":{"required":["c"]}}`,
		"arrays": `{"type":"array","minItems":1,"maxItems":3,"items":[{"type":"string"},{"enum":[null,true,"x"]}],
			"additionalItems":false}`,
		"tuple-rest":  `{"type":"array","items":[{"type":"string"}],"additionalItems":{"type":"integer"}}`,
		"bounds":      `{"$schema":"http://json-schema.org/draft-07/schema#","type":"number","minimum":2,"properties":{"a":false,"b":true}}`,
		"recursive":   `{"definitions":{"node":{"type":"object","properties":{"next":{"$ref":"#/definitions/node"}},"additionalProperties":false}},"$ref":"#/definitions/node"}`,
		"number-enum": `{"enum":[1,"1",{"a":1}]}`,
	}
	instances := []string{
		`{"a":1}`, `{"b":1}`, `{"a":1,"b":2}`, `{"a":1,"c":1}`, `{}`, `{"a":1,"b":2,"d":3}`, `[]`, `["s"]`, `["s",null]`,
		`["s",true,1]`, `["s",false]`, `[1]`, `["s","x"]`, `["s","x","y","z"]`, `["s",1,2.0,2.5]`, `1`, `2`, `2.5`, `"1"`,
		`{"next":{"next":{}}}`, `{"next":{"next":{"x":1}}}`, `{"next":1}`, `{"a":1.0}`, `true`, `null`,
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft4)
	for name, doc := range docs {
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(doc))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AddResource("http://example.com/"+name, v); err != nil {
			t.Fatal(err)
		}
	}
	for name := range docs {
		s, err := c.Compile("http://example.com/" + name)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := newChecker(s)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		sure := 0
		for _, doc := range instances {
			walkValues(decodeJSON(t, doc), func(v any) {
				got, libErr := ch.check(v, 0), s.Validate(v)
				if got == unsure {
					return
				}
				sure++
				if (got == valid) != (libErr == nil) {
					b, _ := json.Marshal(v)
					t.Errorf("%s: the checker says %v, the library %v, for %s", name, got, libErr, b)
				}
			})
		}
		if sure == 0 {
			t.Errorf("%s: the checker was never sure", name)
		}
	}
}
