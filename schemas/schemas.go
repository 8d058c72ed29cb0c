// Package schemas bundles every schema sauna reads or validates against, and
// resolves them offline.
//
// # Layout
//
// Files live in the Iglu repository layout, <vendor>/<name>/<format>/<version>,
// with the version (MODEL-REVISION-ADDITION) as the file name and no extension,
// so iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0 is the file
// com.slack.sauna.commands/send_message/jsonschema/1-0-0. Files copied from
// Iglu Central (and from Sauna's own source tree) are byte-for-byte copies:
// they are the interface other Sauna implementations agree on. They are never
// edited; a change is a new version in a new file.
//
// # Offline resolution
//
// Everything is embedded in the binary. Sauna resolved schemas from Iglu
// Central at runtime, so every command failed whenever Iglu Central was
// unreachable; here nothing is fetched, and a $ref to a schema that is not
// bundled is a compile error, not a download. The Iglu meta-schema
// (com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0), which every Iglu
// JSON Schema names in $schema and which names itself, is registered with
// draft-04 as its dialect so that the published schemas compile unchanged.
//
// # SchemaVer
//
// A version is MODEL-REVISION-ADDITION. An ADDITION only adds optional
// fields, so data valid against 1-0-0 stays valid against 1-0-1; code that
// handles a MODEL-REVISION therefore accepts any addition (see
// [Key.SameRevision]), but data is only ever validated against the exact
// version it names, and an unbundled version is an unknown schema.
//
// A kind of config (the Kinesis observer, each responder) accepts a set of
// config schemas, [ConfigSchemas]: the current one, whose file holds every
// default, and older or deprecated ones, upgraded to it by
// [ConfigSchemas.Normalise], the one way a config's data is read. Its
// problems are [FieldError]s naming the file and the field.
//
// Avro schemas (format "avro") describe config files, which are JSON text;
// [DecodeAvroJSON] accepts both Avro's JSON encoding and plain JSON and
// returns plain JSON with defaults filled in. JSON Schemas (format
// "jsonschema") describe commands; see [ValidateJSON].
//
// # Validating commands
//
// Every JSON Schema is compiled once by github.com/santhosh-tekuri/jsonschema,
// and from that compiled form into a checker (checker.go): a validator that
// only tells whether an instance is valid, without allocating, for the
// keywords the bundled command schemas use. Whenever a checker does not say
// "valid", the library validates again and its error is the one reported;
// a schema with a keyword checkers do not implement has none. Each schema's
// compiled form is kept with its checker as a [JSONValidator], which
// [JSONValidatorOf] finds from the schema's URI in one lookup, without
// parsing it. The schema files stay the only statement of what is valid:
// tests hold each checker to the library's answers on every command kept as
// testdata and on fuzzed documents.
package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sync/atomic"
)

// ErrUnknownSchema is wrapped by errors about a key that is not bundled, or
// not bundled in the format the caller needs.
var ErrUnknownSchema = errors.New("unknown schema")

//go:embed com.* io.*
var files embed.FS

// bundled maps each key to its file's bytes; keys holds the same keys sorted.
var bundled, keys = loadIndex(files)

// sealed is set once the schemas are first compiled; Register is refused
// after that, because the compiled sets would not see the addition.
var sealed atomic.Bool

// Register adds the iglu-layout tree fsys (<vendor>/<name>/<format>/<M-R-A>)
// to the bundled schemas, so that a responder compiled into a custom build
// can ship its own config and command schemas: call it from the responder
// package's init, before responders.Register. It panics on a file outside
// that layout, a key that is already bundled, or a call after the schemas
// have been used, because each of those is a build mistake.
func Register(fsys fs.FS) {
	add, _ := loadIndex(fsys)
	for k := range add {
		if _, dup := bundled[k]; dup {
			panic("schemas: Register: " + k.String() + " is already bundled")
		}
	}
	if sealed.Load() {
		panic("schemas: Register called after the schemas were first used; call it from init")
	}
	for k, b := range add {
		bundled[k] = b
		keys = append(keys, k)
	}
	slices.SortFunc(keys, Key.compare)
}

func loadIndex(fsys fs.FS) (map[Key][]byte, []Key) {
	m := map[Key][]byte{}
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		k, err := ParseKey(igluPrefix + path)
		if err != nil || k.Path() != path {
			return fmt.Errorf("schema file %s is not at <vendor>/<name>/<format>/<version>: %v", path, err)
		}
		b, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		if k.Format == "jsonschema" {
			if err := checkSelf(k, b); err != nil {
				return fmt.Errorf("schema file %s: %w", path, err)
			}
		}
		m[k] = b
		return nil
	})
	if err != nil {
		// Schema trees are embedded at build time, so this is a packaging
		// mistake that every test run reports at once.
		panic("schemas: " + err.Error())
	}
	ks := make([]Key, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, Key.compare)
	return m, ks
}

// checkSelf refuses a JSON Schema whose "self" block does not name the
// place it is filed at: commands name their schema by that block's values,
// so a schema filed under one key and describing itself as another (or as
// nothing) would validate commands that name a schema it is not.
func checkSelf(k Key, b []byte) error {
	var doc struct {
		Self *struct{ Vendor, Name, Format, Version string } `json:"self"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if doc.Self == nil {
		return errors.New(`no "self" block (vendor, name, format, version), which a self-describing JSON Schema must have`)
	}
	s := doc.Self
	if got := s.Vendor + "/" + s.Name + "/" + s.Format + "/" + s.Version; got != k.Path() {
		return fmt.Errorf(`its "self" block names %s, not the place it is filed at`, got)
	}
	return nil
}

// Keys returns the keys of all bundled schemas, sorted by vendor, name,
// format and then numerically by version.
func Keys() []Key { return slices.Clone(keys) }

// Has reports whether the schema k is bundled.
func Has(k Key) bool {
	_, ok := bundled[k]
	return ok
}

// Raw returns the bundled file for k exactly as published.
func Raw(k Key) ([]byte, bool) {
	b, ok := bundled[k]
	if !ok {
		return nil, false
	}
	return bytes.Clone(b), true
}
