package observer

import (
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// 'sauna validate' (Assemble) and the first rescan of 'sauna run' decide
// through the same plan: for every case, the files the rescan refuses, and
// with what message, are those validate reports as problems, and what the
// rescan starts is what validate accepts, whatever the order validate is
// given the files in.
func TestValidateAndRescanAgree(t *testing.T) {
	obs := func(id, stream string) func(*testing.T) string {
		return func(*testing.T) string { return observerConfig(id, stream, 100) }
	}
	disabled := func(id, stream string) func(*testing.T) string {
		return func(*testing.T) string {
			return strings.Replace(observerConfig(id, stream, 100), `"enabled":true`, `"enabled":false`, 1)
		}
	}
	resp := func(id, appID string) func(*testing.T) string {
		return func(t *testing.T) string { return responderConfig(t, id, appID) }
	}
	invalid := func(*testing.T) string {
		return strings.Replace(observerConfig("obs.y", "stream-y", 100), `"maxRecords":100`, `"maxRecords":"many"`, 1)
	}
	tests := []struct {
		name  string
		files map[string]func(*testing.T) string
		// order is the order validate is given the files in; nil: by name.
		order []string
		// want is, by file, a part of the message that refuses it.
		want map[string]string
	}{
		{
			name:  "same observer id",
			files: map[string]func(*testing.T) string{"a.json": obs("obs.x", "stream-a"), "b.json": obs("obs.x", "stream-b")},
			want:  map[string]string{"b.json": `data.id: id "obs.x" is already used by `},
		},
		{
			name:  "same observer id, the later file given first",
			files: map[string]func(*testing.T) string{"a.json": obs("obs.x", "stream-a"), "b.json": obs("obs.x", "stream-b")},
			order: []string{"b.json", "a.json"},
			want:  map[string]string{"b.json": `data.id: id "obs.x" is already used by `},
		},
		{
			name:  "same responder module",
			files: map[string]func(*testing.T) string{"r0.json": resp("resp.zero", "app-0"), "r1.json": resp("resp.one", "app-1")},
			want:  map[string]string{"r1.json": "schema: a " + reloadTestModule + " responder is already enabled by "},
		},
		{
			name:  "an observer and a responder under one id",
			files: map[string]func(*testing.T) string{"a.json": obs("shared", "stream-a"), "b.json": resp("shared", "app-1")},
			want:  map[string]string{"b.json": `data.id: id "shared" is already used by `},
		},
		{
			name:  "a disabled config claims nothing",
			files: map[string]func(*testing.T) string{"a.json": disabled("obs.x", "stream-a"), "b.json": obs("obs.x", "stream-b")},
			want:  map[string]string{},
		},
		{
			name: "an invalid file beside a conflict",
			files: map[string]func(*testing.T) string{
				"a.json": invalid, "b.json": obs("obs.x", "stream-b"), "c.json": obs("obs.x", "stream-c"),
			},
			want: map[string]string{"a.json": "", "c.json": `data.id: id "obs.x" is already used by `},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newReloadFixture(t)
			for name, content := range tc.files {
				f.write(name, content(t))
			}
			started := f.rescan()
			byRescan := map[string]string{}
			for _, l := range f.log.lines("config refused") {
				file := filepath.Base(l["file"].(string))
				msg := l["problem"].(string)
				if field, _ := l["field"].(string); field != "" && !strings.HasPrefix(msg, field+": ") {
					msg = field + ": " + msg
				}
				byRescan[file] = msg
			}

			order := tc.order
			if order == nil {
				order = slices.Sorted(maps.Keys(tc.files))
			}
			var paths []string
			contents := map[string][]byte{}
			for _, name := range order {
				p := f.path(name)
				b, err := ReadConfigFile(p)
				if err != nil {
					t.Fatal(err)
				}
				paths = append(paths, p)
				contents[p] = b
			}
			snap := Assemble(paths, contents, slog.New(slog.DiscardHandler), nil)
			byValidate := map[string]string{}
			for _, p := range snap.Problems {
				if p.Warning {
					continue
				}
				msg := p.Message
				if p.Field != "" {
					msg = p.Field + ": " + msg
				}
				file := filepath.Base(p.File)
				if prev, ok := byValidate[file]; ok {
					msg = prev + "; " + msg
				}
				byValidate[file] = msg
			}

			if !maps.Equal(byRescan, byValidate) {
				t.Errorf("refused by the rescan:\n  %v\nby validate:\n  %v", byRescan, byValidate)
			}
			if !slices.Equal(slices.Sorted(maps.Keys(byRescan)), slices.Sorted(maps.Keys(tc.want))) {
				t.Errorf("refused %v, want %v", slices.Sorted(maps.Keys(byRescan)), slices.Sorted(maps.Keys(tc.want)))
			}
			for file, part := range tc.want {
				if !strings.Contains(byRescan[file], part) {
					t.Errorf("%s refused with %q, want %q in it", file, byRescan[file], part)
				}
			}
			accepted := map[string]string{}
			for _, e := range snap.Entries {
				accepted[filepath.Base(e.File)] = e.ID
			}
			if !maps.Equal(ids(started), accepted) {
				t.Errorf("the rescan started %v, validate accepts %v", ids(started), accepted)
			}
		})
	}
}
