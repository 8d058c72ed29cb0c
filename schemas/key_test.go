package schemas

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseKey(t *testing.T) {
	good := []struct {
		uri  string
		want Key
	}{
		{"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0",
			Key{Vendor: "com.slack.sauna.commands", Name: "send_message", Format: "jsonschema", Model: 1}},
		{"iglu:com.snowplowanalytics.sauna.observers/AmazonKinesisConfig/avro/1-0-1",
			Key{Vendor: "com.snowplowanalytics.sauna.observers", Name: "AmazonKinesisConfig", Format: "avro", Model: 1, Addition: 1}},
		{"iglu:a-b_c.d/n-_1/f_-2/10-20-300",
			Key{Vendor: "a-b_c.d", Name: "n-_1", Format: "f_-2", Model: 10, Revision: 20, Addition: 300}},
	}
	for _, tc := range good {
		t.Run(tc.uri, func(t *testing.T) {
			got, err := ParseKey(tc.uri)
			if err != nil {
				t.Fatalf("ParseKey: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseKey (-want +got):\n%s", diff)
			}
			if got.String() != tc.uri {
				t.Errorf("String() = %q, want %q", got.String(), tc.uri)
			}
			if want := strings.TrimPrefix(tc.uri, "iglu:"); got.Path() != want {
				t.Errorf("Path() = %q, want %q", got.Path(), want)
			}
		})
	}

	bad := []struct {
		uri, why string
	}{
		{"", "must start with"},
		{"com.acme/x/jsonschema/1-0-0", "must start with"},
		{" iglu:com.acme/x/jsonschema/1-0-0", "must start with"},
		{"xiglu:com.acme/x/jsonschema/1-0-0", "must start with"},
		{"IGLU:com.acme/x/jsonschema/1-0-0", "must start with"},
		{"iglu:com.acme/x/jsonschema", "want iglu:"},
		{"iglu:com.acme/x/jsonschema/1-0-0/extra", "want iglu:"},
		{"iglu:/x/jsonschema/1-0-0", "vendor"},
		{"iglu:com acme/x/jsonschema/1-0-0", "vendor"},
		{"iglu:com.acme/x.y/jsonschema/1-0-0", "name"},
		{"iglu:com.acme//jsonschema/1-0-0", "name"},
		{"iglu:com.acme/x/json.schema/1-0-0", "format"},
		{"iglu:com.acme/x/jsonschema/1-0", "SchemaVer"},
		{"iglu:com.acme/x/jsonschema/1-0-0-0", "SchemaVer"},
		{"iglu:com.acme/x/jsonschema/1.0.0", "SchemaVer"},
		{"iglu:com.acme/x/jsonschema/1-0-", "empty number"},
		{"iglu:com.acme/x/jsonschema/1-0-a", "not a decimal"},
		{"iglu:com.acme/x/jsonschema/1-+1-0", "not a decimal"},
		{"iglu:com.acme/x/jsonschema/01-0-0", "leading zero"},
		{"iglu:com.acme/x/jsonschema/1-00-0", "leading zero"},
		{"iglu:com.acme/x/jsonschema/0-1-0", "model must be at least 1"},
		{"iglu:com.acme/x/jsonschema/1-0-99999999999999999999", "out of range"},
		{"iglu:com.acme/x/jsonschema/1-0-0\n", "not a decimal"},
	}
	for _, tc := range bad {
		t.Run(tc.uri, func(t *testing.T) {
			_, err := ParseKey(tc.uri)
			if err == nil {
				t.Fatalf("ParseKey(%q) succeeded, want an error", tc.uri)
			}
			if !strings.Contains(err.Error(), strconv.Quote(tc.uri)) {
				t.Errorf("error %q does not quote the URI", err)
			}
			if !strings.Contains(err.Error(), tc.why) {
				t.Errorf("error %q does not mention %q", err, tc.why)
			}
		})
	}
}

func TestSameRevision(t *testing.T) {
	base := Key{Vendor: "com.slack.sauna.commands", Name: "send_message", Format: "jsonschema", Model: 1}
	with := func(f func(*Key)) Key { k := base; f(&k); return k }
	tests := []struct {
		name string
		o    Key
		want bool
	}{
		{"same", base, true},
		{"other addition", with(func(k *Key) { k.Addition = 7 }), true},
		{"other revision", with(func(k *Key) { k.Revision = 1 }), false},
		{"other model", with(func(k *Key) { k.Model = 2 }), false},
		{"other vendor", with(func(k *Key) { k.Vendor = "com.acme" }), false},
		{"other name", with(func(k *Key) { k.Name = "send" }), false},
		{"other format", with(func(k *Key) { k.Format = "avro" }), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := base.SameRevision(tc.o); got != tc.want {
				t.Errorf("SameRevision = %v, want %v", got, tc.want)
			}
			if got := tc.o.SameRevision(base); got != tc.want {
				t.Errorf("SameRevision is not symmetric")
			}
		})
	}
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{
		"iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0",
		"iglu:com.snowplowanalytics.sauna.observers/AmazonKinesisConfig/avro/1-0-1",
		"iglu:a/b/c/10-0-3",
		"iglu:a/b/c/01-0-0",
		"iglu:a/b/c/1-0",
		"iglu:a.b/c.d/e/1-0-0",
		"iglu://///",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		k, err := ParseKey(uri)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(uri)) {
				t.Fatalf("error %q does not quote the URI", err)
			}
			return
		}
		if got := k.String(); got != uri {
			t.Fatalf("ParseKey(%q).String() = %q", uri, got)
		}
		k2, err := ParseKey(k.String())
		if err != nil {
			t.Fatalf("ParseKey(String()) of %q: %v", uri, err)
		}
		if k2 != k {
			t.Fatalf("round trip of %q: got %+v, want %+v", uri, k2, k)
		}
		if !k.SameRevision(k2) {
			t.Fatalf("a key is not SameRevision as itself: %+v", k)
		}
	})
}
