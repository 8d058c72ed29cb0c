package schemas

import (
	"errors"
	"strings"
	"testing"
)

func TestConfigSchemasDecodeUpgradesToCurrent(t *testing.T) {
	old := mustKey(t, "iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-0")
	dep := mustKey(t, "iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-1")
	cur := mustKey(t, "iglu:io.sauna.responders/SlackConfig/avro/1-0-0")
	c := ConfigSchemas{Current: cur, Older: []Key{old, dep}, Deprecated: []Key{dep}}

	data := `{"enabled":true,"id":"s","parameters":{"sendMessageEnabled":true,"webhookUrl":"https://x"}}`
	for _, k := range []Key{old, dep, cur} {
		got, err := c.Decode(k, []byte(data))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		// The current schema's defaults are filled in whatever the file names.
		if !strings.Contains(string(got), `"rateLimitBurst":3`) {
			t.Errorf("%s: %s lacks the current defaults", k, got)
		}
	}
	if _, err := c.Decode(old, []byte(`{"enabled":true,"id":"s","parameters":{"sendMessageEnabled":true,"webhookUrl":"https://x","rateLimitBurst":3}}`)); err == nil {
		t.Error("a setting the named schema lacks is accepted")
	}
	other := mustKey(t, "iglu:io.sauna.responders/WebhookConfig/avro/1-0-0")
	if _, err := c.Decode(other, []byte(data)); !errors.Is(err, ErrUnknownSchema) {
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
