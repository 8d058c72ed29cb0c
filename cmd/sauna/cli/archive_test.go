package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// hiveType is a column type of the Athena table in docs/operations.md.
type hiveType struct {
	kind   string // string, bigint, struct, map
	fields []hiveField
	value  *hiveType // map values
}

type hiveField struct {
	name string
	typ  *hiveType
}

// parseHiveType reads one type from s and returns it with the rest of s.
func parseHiveType(s string) (*hiveType, string, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, "string"):
		return &hiveType{kind: "string"}, s[len("string"):], nil
	case strings.HasPrefix(s, "bigint"):
		return &hiveType{kind: "bigint"}, s[len("bigint"):], nil
	case strings.HasPrefix(s, "map<string,"):
		v, rest, err := parseHiveType(s[len("map<string,"):])
		if err != nil {
			return nil, "", err
		}
		rest = strings.TrimSpace(rest)
		if !strings.HasPrefix(rest, ">") {
			return nil, "", fmt.Errorf("map: want >, got %.20q", rest)
		}
		return &hiveType{kind: "map", value: v}, rest[1:], nil
	case strings.HasPrefix(s, "struct<"):
		t := &hiveType{kind: "struct"}
		rest := s[len("struct<"):]
		for {
			name, after, ok := strings.Cut(rest, ":")
			if !ok {
				return nil, "", fmt.Errorf("struct: no field type in %.20q", rest)
			}
			ft, r, err := parseHiveType(after)
			if err != nil {
				return nil, "", err
			}
			t.fields = append(t.fields, hiveField{name: strings.Trim(strings.TrimSpace(name), "`"), typ: ft})
			r = strings.TrimSpace(r)
			switch {
			case strings.HasPrefix(r, ","):
				rest = r[1:]
			case strings.HasPrefix(r, ">"):
				return t, r[1:], nil
			default:
				return nil, "", fmt.Errorf("struct: want , or >, got %.20q", r)
			}
		}
	}
	return nil, "", fmt.Errorf("unknown type at %.20q", s)
}

// check reports where v, a decoded JSON value, does not fit t the way the
// OpenX JSON SerDe reads it: keys match column names without regard to
// case, a missing or null value is NULL, and unlisted keys are ignored.
func (t *hiveType) check(path string, v any) error {
	if v == nil {
		return nil
	}
	switch t.kind {
	case "string":
		if _, ok := v.(string); !ok {
			return fmt.Errorf("%s: %T, want a string", path, v)
		}
	case "bigint":
		n, ok := v.(json.Number)
		if _, err := n.Int64(); !ok || err != nil {
			return fmt.Errorf("%s: %v, want an integer", path, v)
		}
	case "map":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %T, want an object", path, v)
		}
		for k, e := range m {
			if err := t.value.check(path+"."+k, e); err != nil {
				return err
			}
		}
	case "struct":
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: %T, want an object", path, v)
		}
		for _, f := range t.fields {
			var fv any
			for k, e := range m {
				if strings.EqualFold(k, f.name) {
					fv = e
				}
			}
			if err := f.typ.check(path+"."+f.name, fv); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestArchiveTableReadsCommands checks the Athena table of
// docs/operations.md against commands as sauna publish puts them, written
// one per line as Firehose's AppendDelimiterToRecord does: every line is one
// JSON object, and each column the envelope schema requires gets a value of
// its declared type.
func TestArchiveTableReadsCommands(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	ddl := regexp.MustCompile("(?s)CREATE EXTERNAL TABLE sauna_commands \\((.*?)\n\\)\nPARTITIONED BY").FindSubmatch(doc)
	if ddl == nil {
		t.Fatal("no CREATE EXTERNAL TABLE sauna_commands in docs/operations.md")
	}
	// The columns, as one struct.
	cols := regexp.MustCompile(`\s+`).ReplaceAllString(string(ddl[1]), " ")
	cols = regexp.MustCompile("`(\\w+)` ").ReplaceAllString(cols, "$1:")
	table, rest, err := parseHiveType("struct<" + cols + ">")
	if err != nil || strings.TrimSpace(rest) != "" {
		t.Fatalf("columns %q: %v (left %q)", cols, err, rest)
	}

	files, _ := filepath.Glob(filepath.Join("..", "..", "..", "testdata", "commands", "*.json"))
	if len(files) == 0 {
		t.Fatal("no example commands")
	}
	var object bytes.Buffer // one S3 object
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		object.Write(compact(raw))
		object.WriteByte('\n')
	}
	lines := strings.Split(strings.TrimSuffix(object.String(), "\n"), "\n")
	if len(lines) != len(files) {
		t.Fatalf("%d lines for %d commands: a command spans lines", len(lines), len(files))
	}
	for i, l := range lines {
		dec := json.NewDecoder(strings.NewReader(l))
		dec.UseNumber()
		var v map[string]any
		if err := dec.Decode(&v); err != nil || dec.More() {
			t.Fatalf("%s: line is not one JSON object: %v", files[i], err)
		}
		if err := table.check("row", v); err != nil {
			t.Errorf("%s: %v", files[i], err)
		}
		// The columns queried must be there, not just fit.
		env := v["data"].(map[string]any)["envelope"].(map[string]any)["data"].(map[string]any)
		for _, k := range []string{"commandId", "whenCreated", "tags"} {
			if env[k] == nil {
				t.Errorf("%s: envelope.data.%s is NULL", files[i], k)
			}
		}
	}
}
