package responders_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

func mustPanic(t *testing.T, name string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", name)
		}
	}()
	f()
}

func TestRegisterRefusesMistakes(t *testing.T) {
	newFn := func(responders.Config) (responders.Responder, error) { return nil, nil }
	mustPanic(t, "empty name", func() { responders.Register(responders.Module{New: newFn}) })
	mustPanic(t, "nil New", func() { responders.Register(responders.Module{Name: "x-nonew"}) })
	mustPanic(t, "duplicate", func() { responders.Register(responders.Module{Name: "fakeslack", New: newFn}) })
	mustPanic(t, "command claimed twice", func() {
		k := slackCmd
		k.Addition = 3 // same 1-0-* family
		responders.Register(responders.Module{Name: "x-dupcmd", New: newFn, Commands: []schemas.Key{k}})
	})
	if _, err := responders.Lookup("x-dupcmd"); err == nil {
		t.Error("a refused module was registered")
	}
	if m, ok := responders.ForCommand(slackCmd); !ok || m.Name != "fakeslack" {
		t.Errorf("after a refused claim, ForCommand(%s) = %q %v; want fakeslack", slackCmd, m.Name, ok)
	}
}

// A module registered after others serves its commands at once, and only
// those.
func TestForCommandFindsLaterModules(t *testing.T) {
	k := schemas.Key{Vendor: "io.sauna.test", Name: "later", Format: "jsonschema", Model: 1}
	if _, err := responders.Lookup("x-later"); err != nil { // not registered by an earlier -count
		if _, ok := responders.ForCommand(k); ok {
			t.Fatalf("ForCommand(%s) before any module serves it", k)
		}
		responders.Register(responders.Module{Name: "x-later", Commands: []schemas.Key{k},
			New: func(responders.Config) (responders.Responder, error) { return nil, nil }})
	}
	k.Addition = 2
	if m, ok := responders.ForCommand(k); !ok || m.Name != "x-later" {
		t.Errorf("ForCommand(%s) = %q %v; want x-later", k, m.Name, ok)
	}
	if m, ok := responders.ForCommand(slackCmd); !ok || m.Name != "fakeslack" {
		t.Errorf("ForCommand(%s) = %q %v; want fakeslack", slackCmd, m.Name, ok)
	}
	k.Model = 2
	if m, ok := responders.ForCommand(k); ok {
		t.Errorf("ForCommand(%s) = %q; no module serves model 2", k, m.Name)
	}
}

func TestLookupAndListing(t *testing.T) {
	_, err := responders.Lookup("jira")
	if err == nil || !strings.Contains(err.Error(), `unknown responder "jira" (forgotten import?)`) {
		t.Errorf("Lookup: %v", err)
	}
	var names []string
	for _, m := range responders.Modules() {
		names = append(names, m.Name)
	}
	if !slices.IsSorted(names) || !slices.Contains(names, "fakeslack") {
		t.Errorf("Modules() = %v", names)
	}
	k := slackCmd
	k.Addition = 5
	if m, ok := responders.ForCommand(k); !ok || m.Name != "fakeslack" {
		t.Errorf("ForCommand(1-0-5) = %v %v", m.Name, ok)
	}
	k.Revision = 1
	if _, ok := responders.ForCommand(k); ok {
		t.Error("1-1-x must not match a 1-0-* responder")
	}
}

func TestParamErrorNamesTheParameter(t *testing.T) {
	cause := errors.New("missing")
	tests := []struct {
		err       error
		path, msg string
	}{
		{responders.ParamErrorf("webhookUrl", "must be an http(s) URL"), "parameters.webhookUrl", "parameters.webhookUrl: must be an http(s) URL"},
		{responders.ParamErrorf(`headers["X-Api-Key"]`, "reserved"), `parameters.headers["X-Api-Key"]`, `parameters.headers["X-Api-Key"]: reserved`},
		{responders.ParamErrorf("apiKeyId", "%w", cause), "parameters.apiKeyId", "parameters.apiKeyId: missing"},
		{&responders.ParamError{Err: cause}, "parameters", "parameters: missing"},
	}
	for _, tt := range tests {
		pe, ok := errors.AsType[*responders.ParamError](tt.err)
		if !ok {
			t.Errorf("%v: %T is not a *ParamError", tt.err, tt.err)
			continue
		}
		if pe.Path() != tt.path || tt.err.Error() != tt.msg {
			t.Errorf("%v: path %q; want path %q, message %q", tt.err, pe.Path(), tt.path, tt.msg)
		}
	}
	if !errors.Is(tests[2].err, cause) {
		t.Errorf("%v does not wrap its cause", tests[2].err)
	}
}

func TestDecodeParametersRefusalIsAParamError(t *testing.T) {
	var p struct {
		URL string `json:"url"`
	}
	err := responders.Config{Parameters: []byte(`{"url":"https://x.example","bogus":1}`)}.DecodeParameters(&p)
	if pe, ok := errors.AsType[*responders.ParamError](err); !ok || pe.Path() != "parameters" || !strings.Contains(err.Error(), `unknown field "bogus"`) {
		t.Errorf("DecodeParameters: %T %v", err, err)
	}
}
