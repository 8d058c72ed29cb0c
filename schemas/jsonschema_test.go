package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

func decodeJSON(t testing.TB, s string) any {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(s))
	if err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

// selfDescribing is the {schema, data} shape shared by commands, envelopes
// and configs.
type selfDescribing struct {
	Schema string          `json:"schema"`
	Data   json.RawMessage `json:"data"`
}

func readSelfDescribing(t testing.TB, file string) (Key, []byte) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var sd selfDescribing
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sd); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return mustKey(t, sd.Schema), sd.Data
}

// TestValidateJSONExamples walks each example command the way the pipeline
// does: wrapper, then envelope, then the inner command.
func TestValidateJSONExamples(t *testing.T) {
	files, err := filepath.Glob("testdata/commands/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no command fixtures: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			k, data := readSelfDescribing(t, file)
			if err := ValidateJSON(k, decodeJSON(t, string(data))); err != nil {
				t.Fatalf("wrapper: %v", err)
			}
			var parts struct{ Envelope, Command selfDescribing }
			if err := json.Unmarshal(data, &parts); err != nil {
				t.Fatal(err)
			}
			for _, sd := range []selfDescribing{parts.Envelope, parts.Command} {
				if err := ValidateJSON(mustKey(t, sd.Schema), decodeJSON(t, string(sd.Data))); err != nil {
					t.Errorf("%s: %v", sd.Schema, err)
				}
			}
		})
	}
}

const validEnvelope = `{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z",
	"execution":{"semantics":"AT_LEAST_ONCE","timeToLive":1200000},"tags":{"source":"example"}}`

func TestValidateJSONInvalid(t *testing.T) {
	const (
		command   = "iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0"
		envelope  = "iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0"
		slack     = "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0"
		pagerduty = "iglu:com.pagerduty.sauna.commands/create_event/jsonschema/1-0-0"
		hipchat   = "iglu:com.hipchat.sauna.commands/send_room_notification/jsonschema/1-0-0"
	)
	envelopeWith := func(old, new string) string { return strings.Replace(validEnvelope, old, new, 1) }
	tests := []struct {
		name     string
		schema   string
		instance string
		want     []Cause
	}{
		{
			name:     "commandId not a uuid",
			schema:   envelope,
			instance: envelopeWith(`"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44"`, `"build-42"`),
			want:     []Cause{{"/commandId", "'build-42' is not valid uuid: must have 5 elements"}},
		},
		{
			name:     "commandId with a non-hex digit",
			schema:   envelope,
			instance: envelopeWith(`3f2a6c1e`, `3f2a6c1g`),
			want:     []Cause{{"/commandId", `'3f2a6c1g-8d4b-4a7e-9c2f-5b1d0e7a9c44' is not valid uuid: non-hex character 'g'`}},
		},
		{
			name:     "whenCreated without a zone",
			schema:   envelope,
			instance: envelopeWith(`2017-06-29T10:15:00Z`, `2017-06-29T10:15:00`),
			want:     []Cause{{"/whenCreated", "'2017-06-29T10:15:00' is not valid date-time: less than 20 characters long"}},
		},
		{
			name:     "envelope key missing",
			schema:   envelope,
			instance: envelopeWith(`,"tags":{"source":"example"}`, ``),
			want:     []Cause{{"", "missing property 'tags'"}},
		},
		{
			name:     "envelope additional property",
			schema:   envelope,
			instance: envelopeWith(`"tags"`, `"priority":1,"zone":"eu","source":"x","tags"`),
			want:     []Cause{{"", "additional properties 'priority', 'source', 'zone' not allowed"}},
		},
		{
			name:     "unknown semantics and fractional ttl",
			schema:   envelope,
			instance: envelopeWith(`"semantics":"AT_LEAST_ONCE","timeToLive":1200000`, `"semantics":"EXACTLY_ONCE","timeToLive":1.5`),
			want: []Cause{
				{"/execution/semantics", "value must be 'AT_LEAST_ONCE'"},
				{"/execution/timeToLive", "got number, want null or integer"},
			},
		},
		{
			name:     "wrapper without envelope",
			schema:   command,
			instance: `{"command":{"schema":"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0","data":{}}}`,
			want:     []Cause{{"", "missing property 'envelope'"}},
		},
		{
			name:   "wrapper with a bad inner schema URI and extra key",
			schema: command,
			instance: `{"envelope":{"schema":"iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0","data":{}},
				"command":{"schema":"com.slack/send_message/jsonschema/1-0-0","data":{},"x":1}}`,
			want: []Cause{
				{"/command", "additional properties 'x' not allowed"},
				{"/command/schema", `'com.slack/send_message/jsonschema/1-0-0' does not match pattern '^iglu:[a-zA-Z0-9-_.]+/[a-zA-Z0-9-_]+/[a-zA-Z0-9-_]+/[0-9]+-[0-9]+-[0-9]+$'`},
			},
		},
		{
			name:     "slack with neither text nor attachments",
			schema:   slack,
			instance: `{"channel":"#ops"}`,
			want:     []Cause{{"", "missing property 'text'"}, {"", "missing property 'attachments'"}},
		},
		{
			name:     "slack attachment without fallback, bogus field",
			schema:   slack,
			instance: `{"attachments":[{"title":"t"},{"fallback":"f","fields":[{"title":"a"}]}],"colour":"red"}`,
			want: []Cause{
				{"", "additional properties 'colour' not allowed"},
				{"/attachments/0", "missing property 'fallback'"},
				{"/attachments/1/fields/0", "missing property 'value'"},
			},
		},
		{
			name:     "pagerduty resolve without incident_key",
			schema:   pagerduty,
			instance: `{"service_key":"k","event_type":"resolve"}`,
			want: []Cause{
				{"", "missing property 'description'"},
				{"", "missing property 'incident_key'"},
				{"/event_type", "value must be 'trigger'"},
			},
		},
		{
			name:     "hipchat empty message",
			schema:   hipchat,
			instance: `{"roomIdOrName":"ops","message":""}`,
			want:     []Cause{{"/message", "minLength: got 0, want 1"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := mustKey(t, tc.schema)
			err := ValidateJSON(k, decodeJSON(t, tc.instance))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("ValidateJSON = %v, want a *ValidationError", err)
			}
			if ve.Key != k {
				t.Errorf("Key = %v, want %v", ve.Key, k)
			}
			if diff := cmp.Diff(tc.want, ve.Causes); diff != "" {
				t.Errorf("Causes (-want +got):\n%s", diff)
			}
			var lib *jsonschema.ValidationError
			if !errors.As(err, &lib) || lib.BasicOutput() == nil {
				t.Error("the library's error is not reachable with errors.As")
			}
		})
	}
}

func TestValidationErrorMessage(t *testing.T) {
	k := mustKey(t, "iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0")
	err := ValidateJSON(k, decodeJSON(t, `{"commandId":"x","whenCreated":"2017-06-29T10:15:00Z","execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null}}`))
	want := "invalid against iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0: " +
		"(root): missing property 'tags'; /commandId: 'x' is not valid uuid: must have 5 elements"
	if err == nil || err.Error() != want {
		t.Errorf("Error() =\n%v\nwant\n%s", err, want)
	}
}

func TestValidateJSONAcceptsEncodingJSONValues(t *testing.T) {
	// Values from encoding/json without UseNumber arrive as float64.
	var v any
	if err := json.Unmarshal([]byte(validEnvelope), &v); err != nil {
		t.Fatal(err)
	}
	k := mustKey(t, "iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0")
	if err := ValidateJSON(k, v); err != nil {
		t.Fatal(err)
	}
}

func TestValidateJSONUnknownSchema(t *testing.T) {
	for _, uri := range []string{
		"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-1", // unbundled addition
		"iglu:com.acme/nothing/jsonschema/1-0-0",
		"iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-0", // bundled, not JSON Schema
	} {
		err := ValidateJSON(mustKey(t, uri), map[string]any{})
		if !errors.Is(err, ErrUnknownSchema) {
			t.Errorf("ValidateJSON(%s) = %v, want ErrUnknownSchema", uri, err)
		}
	}
}

// TestJSONValidatorOfIsParseKey holds the lookup by URI to what ParseKey and
// ValidateJSON say of the same string: a validator exactly for the URIs of
// bundled JSON Schemas, and the one ValidateJSON uses.
func TestJSONValidatorOfIsParseKey(t *testing.T) {
	uris := []string{"", "iglu:", "iglu:com.acme/nothing/jsonschema/1-0-0"}
	for _, k := range Keys() {
		u := k.String()
		uris = append(uris, u, u+" ", " "+u, strings.ToUpper(u), strings.Replace(u, "iglu:", "IGLU:", 1),
			u[:len(u)-1]+"01", strings.Replace(u, "/jsonschema/", "/jsonschema//", 1), "iglu:"+k.Path()+"/")
	}
	found := 0
	for _, u := range uris {
		v, ok := JSONValidatorOf(u)
		k, err := ParseKey(u)
		want := err == nil && !errors.Is(ValidateJSON(k, nil), ErrUnknownSchema)
		if ok != want || ok && v.Key() != k {
			t.Errorf("JSONValidatorOf(%q) = %v, %v; ParseKey gives %v, %v", u, v, ok, k, err)
			continue
		}
		if ok {
			found++
			instance := decodeJSON(t, `{"a":[1,"x",null]}`)
			if got, want := fmt.Sprint(v.Validate(instance)), fmt.Sprint(ValidateJSON(k, instance)); got != want {
				t.Errorf("%s: Validate = %s, ValidateJSON = %s", u, got, want)
			}
		}
	}
	if found < 10 {
		t.Errorf("only %d validators found", found)
	}
}

// TestBundledJSONSchemasAgainstMetaSchema enforces what compiling alone does
// not: each schema's "self" block names the path it is bundled under.
func TestBundledJSONSchemasAgainstMetaSchema(t *testing.T) {
	n := 0
	for _, k := range Keys() {
		if k.Format != "jsonschema" {
			continue
		}
		n++
		t.Run(k.Path(), func(t *testing.T) {
			raw, _ := Raw(k)
			doc := decodeJSON(t, string(raw))
			if err := ValidateJSON(metaSchemaKey, doc); err != nil {
				t.Fatal(err)
			}
			self, _ := doc.(map[string]any)["self"].(map[string]any)
			got := mustKey(t, "iglu:"+strings.Join([]string{
				str(self["vendor"]), str(self["name"]), str(self["format"]), str(self["version"])}, "/"))
			if got != k {
				t.Errorf("self names %s, but the file is bundled as %s", got, k)
			}
		})
	}
	if n < 8 {
		t.Errorf("validated %d JSON Schemas, want at least the 8 published ones", n)
	}
}

func str(v any) string { s, _ := v.(string); return s }

func TestMetaSchemaRejects(t *testing.T) {
	tests := []struct {
		name   string
		schema string
		want   []Cause
	}{
		{"no self", `{"type":"object"}`, []Cause{{"", "missing property 'self'"}}},
		{"dotted version",
			`{"self":{"vendor":"com.acme","name":"x","format":"jsonschema","version":"1.0.0"},"type":"object"}`,
			[]Cause{{"/self/version", "'1.0.0' does not match pattern '^[0-9]+-[0-9]+-[0-9]+$'"}}},
		{"not draft-04",
			`{"self":{"vendor":"com.acme","name":"x","format":"jsonschema","version":"1-0-0"},"required":[]}`,
			[]Cause{{"/required", "minItems: got 0, want 1"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ve *ValidationError
			if err := ValidateJSON(metaSchemaKey, decodeJSON(t, tc.schema)); !errors.As(err, &ve) {
				t.Fatalf("got %v, want a *ValidationError", err)
			}
			if diff := cmp.Diff(tc.want, ve.Causes); diff != "" {
				t.Errorf("Causes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOfflineLoaderRefusesEverything(t *testing.T) {
	c := jsonschema.NewCompiler()
	c.UseLoader(offlineLoader{})
	for _, url := range []string{
		"http://iglucentral.com/schemas/com.acme/x/jsonschema/1-0-0",
		"file:///etc/passwd",
	} {
		_, err := c.Compile(url)
		var le *jsonschema.LoadURLError
		if !errors.As(err, &le) || !errors.Is(le.Err, ErrUnknownSchema) {
			t.Errorf("Compile(%s) = %v, want a load error wrapping ErrUnknownSchema", url, err)
		}
	}
}
