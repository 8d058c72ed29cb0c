package schemas

import (
	"errors"
	"strings"
	"testing"
)

func TestConfigSchemasNormaliseUpgradesToCurrent(t *testing.T) {
	old := mustKey(t, "iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-0")
	dep := mustKey(t, "iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-1")
	cur := mustKey(t, "iglu:io.sauna.responders/SlackConfig/avro/1-0-0")
	c := ConfigSchemas{Current: cur, Older: []Key{old, dep}, Deprecated: []Key{dep}}

	data := `{"enabled":true,"id":"s","parameters":{"sendMessageEnabled":true,"webhookUrl":"https://x"}}`
	for _, k := range []Key{old, dep, cur} {
		got, err := c.Normalise("slack.json", k, []byte(data))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		// The current schema's defaults are filled in whatever the file names.
		if !strings.Contains(string(got.Data), `"rateLimitBurst":3`) {
			t.Errorf("%s: %s lacks the current defaults", k, got.Data)
		}
		if got.Schema != k || (got.Deprecation != nil) != (k == dep) {
			t.Errorf("%s: schema %s, deprecation %v", k, got.Schema, got.Deprecation)
		}
	}
	n, _ := c.Normalise("slack.json", dep, []byte(data))
	want := "slack.json: schema: " + dep.String() + " is deprecated: name " + cur.String() + " instead; only the schema line changes"
	if n.Deprecation == nil || n.Deprecation.Error() != want {
		t.Errorf("deprecation = %v, want %q", n.Deprecation, want)
	}
	_, err := c.Normalise("slack.json", old, []byte(`{"enabled":true,"id":"s","parameters":{"sendMessageEnabled":true,"webhookUrl":"https://x","rateLimitBurst":3}}`))
	var fe *FieldError
	if !errors.As(err, &fe) || *fe != (FieldError{File: "slack.json", Path: "data.parameters.rateLimitBurst", Message: "unknown field"}) {
		t.Errorf("a setting the named schema lacks: %#v", err)
	}
	other := mustKey(t, "iglu:io.sauna.responders/WebhookConfig/avro/1-0-0")
	if _, err := c.Normalise("slack.json", other, []byte(data)); !errors.Is(err, ErrUnknownSchema) {
		t.Errorf("another kind's schema: %v", err)
	}
	if by, ok := c.DeprecatedBy(dep); !ok || by != cur {
		t.Errorf("DeprecatedBy(%s) = %s, %v", dep, by, ok)
	}
	if _, ok := c.DeprecatedBy(old); ok {
		t.Errorf("%s reported deprecated", old)
	}
	if all := c.All(); len(all) != 3 || all[2] != cur || !c.Accepts(old) || c.Accepts(other) {
		t.Errorf("All() = %v", all)
	}
}

func TestNormalisedUnmarshalAndFieldError(t *testing.T) {
	k := mustKey(t, "iglu:io.sauna.responders/WebhookConfig/avro/1-0-0")
	c := ConfigSchemas{Current: k}
	n := Normalised{File: "x.json", Schema: k, Data: []byte(`{"enabled":true,"id":"x","parameters":{"a":1}}`)}
	var p struct{ A int }
	if id, err := n.Unmarshal(c, &p); err != nil || id != "x" || p.A != 1 {
		t.Errorf("Unmarshal = %q, %v, %+v", id, err, p)
	}
	var wrong struct{ A string }
	_, err := n.Unmarshal(c, &wrong)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.File != "x.json" || fe.Path != "data.parameters" {
		t.Errorf("Unmarshal into the wrong type: %#v", err)
	}
	other := ConfigSchemas{Current: mustKey(t, "iglu:io.sauna.ingest/HttpIngestConfig/avro/1-0-0")}
	if _, err := n.Unmarshal(other, &p); !errors.As(err, &fe) || fe.Path != "schema" {
		t.Errorf("Unmarshal of another kind's config: %v", err)
	}
	for _, tc := range []struct {
		err  *FieldError
		want string
	}{
		{n.FieldError("parameters.a", "must be %d", 2), "x.json: data.parameters.a: must be 2"},
		{n.FieldError("", "bad"), "x.json: data: bad"},
		{&FieldError{Path: "p", Message: "m"}, "p: m"},
		{&FieldError{Message: "m"}, "m"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}
