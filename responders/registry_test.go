package responders_test

import (
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
