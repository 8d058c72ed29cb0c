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
		Register(fstest.MapFS{dup.Path(): {Data: []byte(`{}`)}})
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
	Register(fstest.MapFS{"com.acme/Thing/jsonschema/1-0-0": {Data: []byte(`{}`)}})
}
