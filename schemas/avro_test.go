package schemas

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/linkedin/goavro/v2"
)

const (
	kinesis100 = "iglu:com.snowplowanalytics.sauna.observers/AmazonKinesisConfig/avro/1-0-0"
	kinesis101 = "iglu:com.snowplowanalytics.sauna.observers/AmazonKinesisConfig/avro/1-0-1"
)

func TestAvroSchemasCompile(t *testing.T) {
	n := 0
	for _, k := range Keys() {
		if k.Format != "avro" {
			continue
		}
		n++
		t.Run(k.Path(), func(t *testing.T) {
			raw, _ := Raw(k)
			if _, err := goavro.NewCodecForStandardJSONFull(string(raw)); err != nil {
				t.Errorf("plain-JSON codec: %v", err)
			}
			if _, err := goavro.NewCodec(string(raw)); err != nil {
				t.Errorf("Avro-JSON codec: %v", err)
			}
			if e := avroSchemas()[k]; e == nil || e.err != nil {
				t.Errorf("bundled entry: %+v", e)
			}
		})
	}
	// The 16 published Avro schemas at least; later additions add to them.
	if n < 16 {
		t.Errorf("compiled %d Avro schemas, want at least the 16 published ones", n)
	}
}

// TestNewAvroSchemaConventions checks the rules for every Avro schema added
// here (not copied from elsewhere): documented fields, optional fields with a
// default, and versioned record names so that two versions never share a
// union branch name.
func TestNewAvroSchemaConventions(t *testing.T) {
	published := map[string]bool{}
	f, err := os.Open("testdata/published.sha256")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		_, path, _ := strings.Cut(sc.Text(), "  ")
		published[path] = true
	}
	checked := 0
	for _, k := range Keys() {
		if k.Format != "avro" || published[k.Path()] {
			continue
		}
		checked++
		t.Run(k.Path(), func(t *testing.T) {
			raw, _ := Raw(k)
			var doc any
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			suffix := fmt.Sprintf("_%d_%d_%d", k.Model, k.Revision, k.Addition)
			var walk func(s any, where string)
			walk = func(s any, where string) {
				switch s := s.(type) {
				case []any:
					for _, b := range s {
						walk(b, where)
					}
				case map[string]any:
					if name, ok := s["name"].(string); ok && s["type"] != nil && !strings.HasSuffix(name, suffix) {
						t.Errorf("%s: type name %q lacks the version suffix %s", where, name, suffix)
					}
					if doc, _ := s["doc"].(string); doc == "" && (s["type"] == "record" || s["type"] == "enum") {
						t.Errorf("%s: type %v has no doc", where, s["name"])
					}
					fields, _ := s["fields"].([]any)
					for _, fv := range fields {
						fm := fv.(map[string]any)
						fw := where + "." + fm["name"].(string)
						if doc, _ := fm["doc"].(string); doc == "" {
							t.Errorf("%s: field has no doc", fw)
						}
						if u, ok := fm["type"].([]any); ok && len(u) > 0 {
							if _, hasDefault := fm["default"]; !hasDefault {
								t.Errorf("%s: optional (union) field has no default", fw)
							}
						}
						walk(fm["type"], fw)
					}
					if typ, ok := s["type"].(map[string]any); ok {
						walk(typ, where)
					}
				}
			}
			walk(doc, "(root)")
		})
	}
	if checked == 0 {
		t.Error("no new Avro schema found; expected at least AmazonKinesisConfig 1-0-1")
	}
}

func readConfig(t testing.TB, name string) (Key, []byte) {
	t.Helper()
	return readSelfDescribing(t, "testdata/configs/"+name)
}

// AT_TIMESTAMP at 2017-02-13T15:11:58.968Z, as every spelling below normalizes.
const kinesisAtTimestamp = `{"enabled":true,"id":"com.acme.commands","parameters":{
	"aws":{"accessKeyId":"AKIA...","secretAccessKey":"..."},
	"kinesis":{"region":"us-east-1","streamName":"acme-sauna-commands","maxRecords":100,
		"initialPosition":"AT_TIMESTAMP","initialPositionModifiers":{"timestamp":1486998718968}}}}`

func TestDecodeAvroJSONFixtures(t *testing.T) {
	tests := []struct {
		file string
		want string // normalized JSON; "" means the input data itself
	}{
		{file: "kinesis-1-0-0.json"},
		{file: "slack-1-0-0.json"},
		{file: "pagerduty-1-0-0.json"},
		{file: "sendgrid-1-0-1.json"},
		{file: "kinesis-1-0-0-avro-json.json", want: kinesisAtTimestamp},
		{file: "kinesis-1-0-0-plain-timestamp.json", want: kinesisAtTimestamp},
		{file: "kinesis-1-0-0-wiki-timestamp.json", want: kinesisAtTimestamp},
		{file: "kinesis-1-0-1-full.json", want: `{"enabled":true,"id":"com.acme.commands","parameters":{
			"aws":{"accessKeyId":"AKIA...","secretAccessKey":"..."},
			"kinesis":{"region":"us-east-1","streamName":"acme-sauna-commands","maxRecords":500,
				"initialPosition":"AT_TIMESTAMP","initialPositionModifiers":{"timestamp":1486998718968},
				"shardSyncIntervalMillis":5000,"idleTimeBetweenReadsMillis":1000,"failoverTimeMillis":20000,
				"leaseRefreshMillis":5000,"parentShardPollMillis":500}}}`},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			k, data := readConfig(t, tc.file)
			got, err := DecodeAvroJSON(k, data)
			if err != nil {
				t.Fatalf("DecodeAvroJSON: %v", err)
			}
			want := tc.want
			if want == "" {
				want = string(data)
			}
			assertSameJSON(t, want, got)
		})
	}
}

func assertSameJSON(t *testing.T, want string, got []byte) {
	t.Helper()
	var w, g any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation: %v", err)
	}
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, got)
	}
	if diff := cmp.Diff(w, g); diff != "" {
		t.Errorf("normalized output (-want +got):\n%s", diff)
	}
}

// TestDecodeAvroJSONDefaults pins the exact bytes: the output is
// deterministic (schema field order) and every default comes from the
// schema file.
func TestDecodeAvroJSONDefaults(t *testing.T) {
	k, data := readConfig(t, "kinesis-1-0-1-minimal.json")
	got, err := DecodeAvroJSON(k, data)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/configs/kinesis-1-0-1-minimal.normalized.json")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(bytes.TrimSpace(want)), string(got)); diff != "" {
		t.Errorf("normalized output (-want +got):\n%s", diff)
	}
}

// TestDecodeAvroJSONPlain100IsValid101 checks the compatibility promised by
// the ADDITION bump: plain-JSON 1-0-0 configs decode under 1-0-1.
func TestDecodeAvroJSONPlain100IsValid101(t *testing.T) {
	k101 := mustKey(t, kinesis101)
	for _, file := range []string{"kinesis-1-0-0.json", "kinesis-1-0-0-plain-timestamp.json", "kinesis-1-0-0-wiki-timestamp.json"} {
		t.Run(file, func(t *testing.T) {
			_, data := readConfig(t, file)
			if _, err := DecodeAvroJSON(k101, data); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// kinesisData builds a 1-0-0 Kinesis config with kinesis replaced.
func kinesisData(kinesis string) string {
	return `{"enabled":true,"id":"com.acme.commands","parameters":{"aws":{"accessKeyId":"a","secretAccessKey":"b"},"kinesis":` + kinesis + `}}`
}

func TestDecodeAvroJSON(t *testing.T) {
	const kin = `"region":"us-east-1","streamName":"s","maxRecords":100,"initialPosition":"AT_TIMESTAMP"`
	ok := func(modifiers string) string {
		return kinesisData(`{"region":"us-east-1","streamName":"s","maxRecords":100,"initialPosition":"AT_TIMESTAMP","initialPositionModifiers":` + modifiers + `}`)
	}
	tests := []struct {
		name    string
		schema  string
		data    string
		want    string        // normalized output, when the call succeeds
		wantErr []pathMessage // field errors, when it does not
	}{
		{
			name:   "null modifiers",
			schema: kinesis100,
			data:   kinesisData(`{` + kin + `,"initialPositionModifiers":null}`),
			want:   ok(`null`),
		},
		{
			name:   "absent modifiers are null",
			schema: kinesis100,
			data:   kinesisData(`{` + kin + `}`),
			want:   ok(`null`),
		},
		{
			name:   "Avro-JSON wrapped modifiers",
			schema: kinesis100,
			data:   ok(`{"com.snowplowanalytics.sauna.observers.InitialPositionModifiers_1_0_0":{"timestamp":{"long":1486998718968}}}`),
			want:   ok(`{"timestamp":1486998718968}`),
		},
		{
			name:   "Avro-JSON wrapped null timestamp",
			schema: kinesis100,
			data:   ok(`{"com.snowplowanalytics.sauna.observers.InitialPositionModifiers_1_0_0":{"timestamp":null}}`),
			want:   ok(`{"timestamp":null}`),
		},
		{
			name:   "plain timestamp",
			schema: kinesis100,
			data:   ok(`{"timestamp":1486998718968}`),
			want:   ok(`{"timestamp":1486998718968}`),
		},
		{
			name:   "wiki string timestamp",
			schema: kinesis100,
			data:   ok(`{"timestamp":"1486998718968"}`),
			want:   ok(`{"timestamp":1486998718968}`),
		},
		{
			name:   "wrapped string timestamp",
			schema: kinesis100,
			data:   ok(`{"timestamp":{"long":"1486998718968"}}`),
			want:   ok(`{"timestamp":1486998718968}`),
		},
		{
			name:   "plain object without timestamp",
			schema: kinesis100,
			data:   ok(`{}`),
			want:   ok(`{"timestamp":null}`),
		},
		{
			name:   "integral number in exponent form",
			schema: kinesis100,
			data:   kinesisData(`{"region":"us-east-1","streamName":"s","maxRecords":1e2,"initialPosition":"AT_TIMESTAMP"}`),
			want:   ok(`null`),
		},
		{
			name:   "1-0-1 omitted optional fields get their defaults",
			schema: kinesis101,
			data:   `{"enabled":false,"id":"x","parameters":{"aws":{},"kinesis":{"region":"r","streamName":"s","maxRecords":1,"initialPosition":"LATEST","initialPositionModifiers":{}}}}`,
			want: `{"enabled":false,"id":"x","parameters":{"aws":{"accessKeyId":"","secretAccessKey":""},"kinesis":{"region":"r","streamName":"s","maxRecords":1,"initialPosition":"LATEST",
				"initialPositionModifiers":{"timestamp":null},"shardSyncIntervalMillis":2000,"idleTimeBetweenReadsMillis":250,
				"failoverTimeMillis":10000,"leaseRefreshMillis":2500,"parentShardPollMillis":1000}}}`,
		},
		{
			name:    "missing field named",
			schema:  kinesis100,
			data:    kinesisData(`{"region":"us-east-1","streamName":"s","initialPosition":"TRIM_HORIZON"}`),
			wantErr: []pathMessage{{"parameters.kinesis.maxRecords", "missing required field"}},
		},
		{
			name:   "several missing fields all named",
			schema: kinesis100,
			data:   `{"id":"x","parameters":{"aws":{},"kinesis":{"region":"r"}}}`,
			wantErr: []pathMessage{
				{"enabled", "missing required field"},
				{"parameters.aws.accessKeyId", "missing required field"},
				{"parameters.aws.secretAccessKey", "missing required field"},
				{"parameters.kinesis.streamName", "missing required field"},
				{"parameters.kinesis.maxRecords", "missing required field"},
				{"parameters.kinesis.initialPosition", "missing required field"},
			},
		},
		{
			name:    "1-0-1 still requires the stream",
			schema:  kinesis101,
			data:    `{"enabled":true,"id":"x","parameters":{"aws":{},"kinesis":{"maxRecords":1,"initialPosition":"LATEST"}}}`,
			wantErr: []pathMessage{{"parameters.kinesis.region", "missing required field"}, {"parameters.kinesis.streamName", "missing required field"}},
		},
		{
			name:   "unknown fields",
			schema: kinesis100,
			data:   kinesisData(`{` + kin + `,"bogus":1,"initialPositionModifiers":{"timestamp":1,"tz":"UTC"}}`),
			wantErr: []pathMessage{
				{"parameters.kinesis.initialPositionModifiers.tz", "unknown field"},
				{"parameters.kinesis.bogus", "unknown field"},
			},
		},
		{
			name:    "a 1-0-0 branch name is not a 1-0-1 branch",
			schema:  kinesis101,
			data:    ok(`{"com.snowplowanalytics.sauna.observers.InitialPositionModifiers_1_0_0":{"timestamp":{"long":1}}}`),
			wantErr: []pathMessage{{"parameters.kinesis.initialPositionModifiers.com.snowplowanalytics.sauna.observers.InitialPositionModifiers_1_0_0", "unknown field"}},
		},
		{
			name:   "wrong types",
			schema: kinesis100,
			data:   `{"enabled":"true","id":7,"parameters":{"aws":[],"kinesis":{"region":"r","streamName":"s","maxRecords":"100","initialPosition":"LATEST","initialPositionModifiers":"none"}}}`,
			wantErr: []pathMessage{
				{"enabled", "expected boolean, got string"},
				{"id", "expected string, got number"},
				{"parameters.aws", "expected object, got array"},
				{"parameters.kinesis.maxRecords", "expected int, got string"},
				{"parameters.kinesis.initialPositionModifiers", "expected object or null, got string"},
			},
		},
		{
			name:   "bad timestamps",
			schema: kinesis100,
			data:   ok(`{"timestamp":"2017-02-13"}`),
			wantErr: []pathMessage{{"parameters.kinesis.initialPositionModifiers.timestamp",
				`expected long (milliseconds since the epoch, as a number or numeric string), got string "2017-02-13"`}},
		},
		{
			name:    "wrapped value of the wrong type",
			schema:  kinesis100,
			data:    ok(`{"timestamp":{"long":true}}`),
			wantErr: []pathMessage{{"parameters.kinesis.initialPositionModifiers.timestamp", "expected long (milliseconds since the epoch, as a number or numeric string), got boolean"}},
		},
		{
			name:    "bad enum symbol",
			schema:  kinesis100,
			data:    kinesisData(`{"region":"r","streamName":"s","maxRecords":1,"initialPosition":"AFTER_SEQUENCE_NUMBER"}`),
			wantErr: []pathMessage{{"parameters.kinesis.initialPosition", `expected one of AT_TIMESTAMP, LATEST, TRIM_HORIZON, got "AFTER_SEQUENCE_NUMBER"`}},
		},
		{
			name:    "enum given as a number",
			schema:  kinesis100,
			data:    kinesisData(`{"region":"r","streamName":"s","maxRecords":1,"initialPosition":2}`),
			wantErr: []pathMessage{{"parameters.kinesis.initialPosition", "expected a string, one of AT_TIMESTAMP, LATEST, TRIM_HORIZON, got number"}},
		},
		{
			name:    "int out of range",
			schema:  kinesis100,
			data:    kinesisData(`{"region":"r","streamName":"s","maxRecords":2147483648,"initialPosition":"LATEST"}`),
			wantErr: []pathMessage{{"parameters.kinesis.maxRecords", "expected int, got 2147483648: out of range"}},
		},
		{
			name:    "int not integral",
			schema:  kinesis100,
			data:    kinesisData(`{"region":"r","streamName":"s","maxRecords":100.5,"initialPosition":"LATEST"}`),
			wantErr: []pathMessage{{"parameters.kinesis.maxRecords", "expected int, got non-integral number 100.5"}},
		},
		{
			name:    "long out of range",
			schema:  kinesis100,
			data:    ok(`{"timestamp":9223372036854775808}`),
			wantErr: []pathMessage{{"parameters.kinesis.initialPositionModifiers.timestamp", "expected long, got 9223372036854775808: out of range"}},
		},
		{
			name:    "root not an object",
			schema:  kinesis100,
			data:    `[]`,
			wantErr: []pathMessage{{"", "expected object, got array"}},
		},
		{
			name:    "responder config",
			schema:  "iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-0",
			data:    `{"enabled":true,"id":"slack","parameters":{"sendMessageEnabled":"yes"}}`,
			wantErr: []pathMessage{{"parameters.sendMessageEnabled", "expected boolean, got string"}, {"parameters.webhookUrl", "missing required field"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeAvroJSON(mustKey(t, tc.schema), []byte(tc.data))
			if tc.wantErr != nil {
				fes := fieldErrors(err)
				if fes == nil {
					t.Fatalf("DecodeAvroJSON = %s, %v; want *FieldError", got, err)
				}
				if diff := cmp.Diff(tc.wantErr, fes); diff != "" {
					t.Errorf("errors (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeAvroJSON: %v", err)
			}
			assertSameJSON(t, tc.want, got)
		})
	}
}

func TestDecodeAvroJSONMalformed(t *testing.T) {
	k := mustKey(t, kinesis101)
	valid := `{"enabled":true,"id":"x","parameters":{"aws":{},"kinesis":{"region":"r","streamName":"s","maxRecords":1,"initialPosition":"LATEST"}}}`
	tests := []struct {
		name, data, want string
	}{
		{"trailing value", valid + ` {"enabled":false}`, fmt.Sprintf("invalid JSON: unexpected data after the top-level value at offset %d", len(valid)+1)},
		{"trailing garbage", valid + "\n}", fmt.Sprintf("invalid JSON: unexpected data after the top-level value at offset %d", len(valid)+1)},
		{"syntax error", `{"enabled":}`, "invalid JSON at offset 12: invalid character '}' looking for beginning of value"},
		{"truncated", valid[:20], "invalid JSON: unexpected EOF"},
		{"empty", " \n", "invalid JSON: no value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeAvroJSON(k, []byte(tc.data))
			if err == nil || err.Error() != tc.want {
				t.Errorf("DecodeAvroJSON error = %v, want %q", err, tc.want)
			}
			var fe *FieldError
			if errors.As(err, &fe) {
				t.Errorf("malformed JSON reported as field errors: %v", err)
			}
		})
	}
	if _, err := DecodeAvroJSON(k, []byte(valid+" \r\n\t")); err != nil {
		t.Errorf("trailing whitespace rejected: %v", err)
	}
}

func TestDecodeAvroJSONUnknownSchema(t *testing.T) {
	for _, uri := range []string{
		"iglu:com.snowplowanalytics.sauna.observers/AmazonKinesisConfig/avro/1-0-99",
		"iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0",
	} {
		_, err := DecodeAvroJSON(mustKey(t, uri), []byte(`{}`))
		if !errors.Is(err, ErrUnknownSchema) {
			t.Errorf("DecodeAvroJSON(%s) = %v, want ErrUnknownSchema", uri, err)
		}
	}
}

type pathMessage struct{ Path, Message string }

// fieldErrors flattens what DecodeAvroJSON reports, nil when err holds no
// *FieldError.
func fieldErrors(err error) []pathMessage {
	var out []pathMessage
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			out = append(out, fieldErrors(e)...)
		}
		return out
	}
	if fe, ok := err.(*FieldError); ok {
		out = append(out, pathMessage{fe.Path, fe.Message})
	}
	return out
}

// TestAvroWalkAgainstGoavro feeds goavro the normalized output of every
// fixture and checks its own plain-JSON encoding agrees value for value.
func TestAvroWalkAgainstGoavro(t *testing.T) {
	files, _ := os.ReadDir("testdata/configs")
	for _, f := range files {
		if strings.HasSuffix(f.Name(), ".normalized.json") {
			continue
		}
		t.Run(f.Name(), func(t *testing.T) {
			k, data := readConfig(t, f.Name())
			got, err := DecodeAvroJSON(k, data)
			if err != nil {
				t.Fatal(err)
			}
			codec := avroSchemas()[k].codec
			native, _, err := codec.NativeFromTextual(got)
			if err != nil {
				t.Fatal(err)
			}
			again, err := codec.TextualFromNative(nil, native)
			if err != nil {
				t.Fatal(err)
			}
			assertSameJSON(t, string(got), again)
		})
	}
}

func TestAvroSchemaParser(t *testing.T) {
	tests := []struct {
		name, schema, data, want string
	}{
		{"array, map and named reference",
			`{"type":"record","name":"R","namespace":"n","fields":[
				{"name":"xs","type":{"type":"array","items":"long"}},
				{"name":"m","type":{"type":"map","values":{"type":"enum","name":"E","symbols":["A","B"]}}},
				{"name":"e","type":"n.E"},
				{"name":"u","type":["null","E","string"],"default":null}]}`,
			`{"xs":[1,2],"m":{"k":"A"},"e":"B","u":{"n.E":"A"}}`,
			`{"xs":[1,2],"m":{"k":"A"},"e":"B","u":"A"}`},
		{"union picks the first branch that fits",
			`{"type":"record","name":"R","fields":[{"name":"u","type":["null","int","double"]}]}`,
			`{"u":1.5}`,
			`{"u":1.5}`},
		{"fixed and doubles",
			`{"type":"record","name":"R","fields":[{"name":"f","type":{"type":"fixed","name":"F","size":2}},{"name":"d","type":"double","default":0.5}]}`,
			`{"f":"ab"}`,
			`{"f":"ab","d":0.5}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root, err := parseAvroSchema([]byte(tc.schema))
			if err != nil {
				t.Fatal(err)
			}
			v, err := parseJSON([]byte(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			var d avroDecoder
			norm := d.decode(root, v, "")
			if len(d.errs) > 0 {
				t.Fatal(errors.Join(d.errs...))
			}
			var buf bytes.Buffer
			writeJSON(&buf, norm)
			assertSameJSON(t, tc.want, buf.Bytes())
		})
	}

	for _, bad := range []string{
		`{"type":"record","name":"R","fields":[{"name":"u","type":["null","int"],"default":1}]}`,
		`{"type":"record","name":"R","fields":[{"name":"x","type":"Missing"}]}`,
		`{"type":"record","name":"R","fields":[{"name":"x","type":{"type":"enum","name":"R","symbols":["A"]}}]}`,
	} {
		if _, err := parseAvroSchema([]byte(bad)); err == nil {
			t.Errorf("parseAvroSchema(%s) succeeded, want an error", bad)
		}
	}
}

// TestConcurrentUse runs under -race: the compiled schemas are built lazily
// and shared by every observer and record.
func TestConcurrentUse(t *testing.T) {
	k, data := readConfig(t, "kinesis-1-0-0.json")
	env := mustKey(t, "iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0")
	instance := decodeJSON(t, validEnvelope)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := DecodeAvroJSON(k, data); err != nil {
				t.Error(err)
			}
			if err := ValidateJSON(env, instance); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

// FuzzDecodeAvroJSON checks that whatever the walk accepts, goavro accepts
// too (a disagreement surfaces as an error that is neither malformed JSON
// nor *FieldError), and that normalizing is idempotent.
func FuzzDecodeAvroJSON(f *testing.F) {
	files, _ := os.ReadDir("testdata/configs")
	for _, file := range files {
		if !strings.HasSuffix(file.Name(), ".normalized.json") {
			_, data := readConfig(f, file.Name())
			f.Add(false, data)
			f.Add(true, data)
		}
	}
	f.Add(true, []byte(`{"enabled":true,"id":"x","parameters":{"aws":{},"kinesis":{"region":"r","streamName":"s","maxRecords":1e2,"initialPosition":"LATEST","initialPositionModifiers":{"timestamp":{"long":"-5"}}}}}`))
	k100, k101 := mustKey(f, kinesis100), mustKey(f, kinesis101)
	f.Fuzz(func(t *testing.T, v101 bool, data []byte) {
		k := k100
		if v101 {
			k = k101
		}
		out, err := DecodeAvroJSON(k, data)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) && !strings.HasPrefix(err.Error(), "invalid JSON") {
				t.Fatalf("unexpected error kind for %q: %v", data, err)
			}
			return
		}
		again, err := DecodeAvroJSON(k, out)
		if err != nil {
			t.Fatalf("normalized output %s rejected: %v", out, err)
		}
		if !bytes.Equal(out, again) {
			t.Fatalf("normalizing is not idempotent:\n%s\n%s", out, again)
		}
	})
}
