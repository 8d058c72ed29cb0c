package schemas

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestRegisterRefusesDuplicatesAndBadLayout(t *testing.T) {
	mustPanic := func(name, want string, fn func()) {
		t.Helper()
		defer func() {
			r := recover()
			if r == nil || !strings.Contains(r.(string), want) {
				t.Errorf("%s: panic %v, want one containing %q", name, r, want)
			}
		}()
		fn()
	}
	dup := keys[0]
	mustPanic("duplicate", "already bundled", func() {
		Register(fstest.MapFS{dup.Path(): {Data: bundled[dup]}})
	})
	mustPanic("layout", "is not at <vendor>/<name>/<format>/<version>", func() {
		Register(fstest.MapFS{"acme/Thing/avro/1-0": {Data: []byte(`{}`)}})
	})
}

func TestRegisterAfterUseIsRefused(t *testing.T) {
	_ = jsonSchemas() // what the first validation does
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "call it from init") {
			t.Errorf("panic %v, want the init-only message", r)
		}
	}()
	Register(fstest.MapFS{"com.acme/Thing/jsonschema/1-0-0": {Data: []byte(thingSchema("1-0-0"))}})
}

func thingSchema(version string) string {
	return `{"self": {"vendor": "com.acme", "name": "Thing", "format": "jsonschema", "version": "` + version + `"}, "type": "object"}`
}

// A JSON Schema is found by the key its file is at, and commands name it by
// its "self" block: the two must agree.
func TestRegisterRefusesASelfBlockThatDoesNotNameItsPlace(t *testing.T) {
	for _, tc := range []struct{ name, data, want string }{
		{"no self", `{"type": "object"}`, `schema file com.acme/Thing/jsonschema/1-0-0: no "self" block`},
		{"other version", thingSchema("1-0-1"), `schema file com.acme/Thing/jsonschema/1-0-0: its "self" block names com.acme/Thing/jsonschema/1-0-1, not the place it is filed at`},
		{"not JSON", `{"self": `, `schema file com.acme/Thing/jsonschema/1-0-0: not JSON`},
	} {
		func() {
			defer func() {
				if r, _ := recover().(string); !strings.Contains(r, tc.want) {
					t.Errorf("%s: panic %q, want one containing %q", tc.name, r, tc.want)
				}
			}()
			Register(fstest.MapFS{"com.acme/Thing/jsonschema/1-0-0": {Data: []byte(tc.data)}})
		}()
	}
}
