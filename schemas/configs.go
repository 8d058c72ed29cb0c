package schemas

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// ConfigSchemas are the config schemas one kind of config accepts (the
// Kinesis observer, a responder, ...). Current is the schema new files name:
// its file holds the defaults and the documentation of every setting.
// Every accepted document is decoded against the schema it names and then
// against Current, so that the settings an older document predates take
// Current's defaults, and nothing but the schema files holds a default.
//
// A later addition of the same kind becomes the new Current, and the old
// Current moves to Older: older files keep working unchanged.
type ConfigSchemas struct {
	Current Key
	// Older are the other accepted schemas, for instance Sauna's own.
	Older []Key
	// Deprecated are accepted schemas that new files should not name;
	// DeprecatedBy says what to name instead. They are in Older too.
	Deprecated []Key
}

// All returns every accepted schema, Older first and Current last.
func (c ConfigSchemas) All() []Key { return append(slices.Clone(c.Older), c.Current) }

// Accepts reports whether k is one of the accepted schemas.
func (c ConfigSchemas) Accepts(k Key) bool { return k == c.Current || slices.Contains(c.Older, k) }

// DeprecatedBy returns the schema that replaces k when k is deprecated.
func (c ConfigSchemas) DeprecatedBy(k Key) (Key, bool) {
	if slices.Contains(c.Deprecated, k) {
		return c.Current, true
	}
	return Key{}, false
}

// Normalised is a config's data made ready for use by Normalise.
type Normalised struct {
	// File is the config file, for errors.
	File string
	// Schema is the schema the file names.
	Schema Key
	// Data is the document's data as plain JSON, upgraded to Current with
	// every default of Current's file filled in.
	Data []byte
	// Deprecation, when Schema is deprecated, is the warning that names the
	// schema to name instead.
	Deprecation *FieldError
}

// Normalise decodes the data of a config file that names the schema k: it
// checks that k is accepted, decodes data against k, upgrades it to Current
// (every accepted document is valid under Current, which only adds settings
// with defaults, so decoding again fills those in) and applies Current's
// defaults. Its errors are *FieldError (several in an errors.Join) naming
// file and the field's path in the file ("data.parameters..."), or plain
// errors for malformed JSON. Deprecation is set even when it fails.
func (c ConfigSchemas) Normalise(file string, k Key, data []byte) (Normalised, error) {
	n := Normalised{File: file, Schema: k}
	if by, ok := c.DeprecatedBy(k); ok {
		n.Deprecation = &FieldError{File: file, Path: "schema",
			Message: fmt.Sprintf("%s is deprecated: name %s instead; only the schema line changes", k, by)}
	}
	if !c.Accepts(k) {
		// The caller chose c for k: this is its mistake, not the file's.
		return n, fmt.Errorf("%s: %w: not one of %v", k, ErrUnknownSchema, c.All())
	}
	at := avroDecoder{file: file, base: "data"}
	plain, err := decodeAvro(k, data, at)
	if err == nil && k != c.Current {
		plain, err = decodeAvro(c.Current, plain, at)
	}
	var fe *FieldError
	if err != nil && !errors.As(err, &fe) {
		// Data was read as JSON already: this is about the schema, which
		// the file chose with data.
		err = &FieldError{File: file, Path: "data", Message: err.Error()}
	}
	if err != nil {
		return n, err
	}
	n.Data = plain
	return n, nil
}

// Unmarshal unmarshals the normalised data.parameters into params and
// returns data.id. c is the config schemas of the caller's kind: a config of
// another kind is refused.
func (n Normalised) Unmarshal(c ConfigSchemas, params any) (id string, err error) {
	if !c.Accepts(n.Schema) {
		return "", &FieldError{File: n.File, Path: "schema", Message: fmt.Sprintf("%s is not one of %v", n.Schema, c.All())}
	}
	var doc struct {
		ID         string `json:"id"`
		Parameters any    `json:"parameters"`
	}
	doc.Parameters = params
	if err := json.Unmarshal(n.Data, &doc); err != nil {
		return "", n.FieldError("parameters", "%v", err)
	}
	return doc.ID, nil
}

// FieldError reports a problem with the field at path inside the config's
// data ("parameters.kinesis.region"; "" for data itself).
func (n Normalised) FieldError(path, format string, args ...any) *FieldError {
	return &FieldError{File: n.File, Path: joinPath("data", path), Message: fmt.Sprintf(format, args...)}
}

// FieldError is one problem with one field of a config file. Path is the
// field's JSON path in the file: dot-separated field names
// ("data.parameters.kinesis.region"), with "[i]" for array elements and
// "[\"key\"]" for map entries; "" is the whole document. Several problems
// are reported together as an errors.Join of *FieldError.
type FieldError struct {
	File    string
	Path    string
	Message string
}

// Error reads "file: path: message", leaving out what is empty.
func (e *FieldError) Error() string {
	s := e.Message
	if e.Path != "" {
		s = e.Path + ": " + s
	}
	if e.File != "" {
		s = e.File + ": " + s
	}
	return s
}
