package schemas

import (
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

// Decode decodes a config's data, named by k, into plain JSON with the
// defaults of Current filled in. Field paths of its errors are those of the
// document as written.
func (c ConfigSchemas) Decode(k Key, data []byte) ([]byte, error) {
	if !c.Accepts(k) {
		return nil, fmt.Errorf("%s: %w: not one of %v", k, ErrUnknownSchema, c.All())
	}
	plain, err := DecodeAvroJSON(k, data)
	if err != nil || k == c.Current {
		return plain, err
	}
	// Every accepted schema's documents are valid under Current, which only
	// adds settings with defaults; decoding again fills those in.
	if plain, err = DecodeAvroJSON(c.Current, plain); err != nil {
		return nil, fmt.Errorf("upgrading to %s: %w", c.Current, err)
	}
	return plain, nil
}
