package responders

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/sauna-io/sauna/schemas"
)

// commandDataPath leads from a record to its inner command's data: the one
// part of a record kept as received.
var commandDataPath = []string{"data", "command", "data"}

// envelopeFields and executionFields are the members decodeEnvelope's
// struct reads.
var (
	envelopeFields  = []string{"commandId", "whenCreated", "execution", "tags"}
	executionFields = []string{"timeToLive"}
)

// errSlowPath is decodeFast's answer when decodeChecked must decide.
var errSlowPath = errors.New("not decoded on the fast path")

// decodeFast is Decode for a command that is valid: the record is parsed
// once, and the wrapper, the envelope and the inner command are validated
// against the same schemas as parts of that one parse. It returns
// errSlowPath, for decodeChecked to take over, on anything else: an invalid
// record, but also anything whose decoding by decodeChecked it does not
// reproduce exactly (repeated keys, members matched only case-insensitively,
// ...). Every check of decodeChecked is made here too, so a record that
// passes here passes there, with the same Command.
//
// The one failure it reports itself is a part that does not validate against
// its schema, worded as decodeChecked words it: everything decodeChecked
// checks before that point has passed here, on the same values, so
// validating again there would only double the cost of a hostile record.
func decodeFast(raw []byte) (*Command, error) {
	// The parser gives up on a record that is not UTF-8.
	p := treeParser{b: raw, want: commandDataPath}
	root, ok := p.parse()
	if !ok {
		return nil, errSlowPath
	}
	outer, ok := treeSelfDescribing(root)
	if !ok {
		return nil, errSlowPath
	}
	if err := validTree(wrapperPart, commandFamily, outer, ""); err != nil {
		return nil, err
	}
	parts, ok := outer.data.(*schemas.Members)
	if !ok || len(*parts) != 2 {
		return nil, errSlowPath
	}
	envelope, _ := parts.Get("envelope")
	env, ok := treeSelfDescribing(envelope)
	if !ok {
		return nil, errSlowPath
	}
	if err := validTree(envelopePart, envelopeFamily, env, ""); err != nil {
		return nil, err
	}
	cmd, ok := envelopeFromTree(env.data)
	if !ok {
		return nil, errSlowPath
	}
	command, _ := parts.Get("command")
	inner, ok := treeSelfDescribing(command)
	if !ok || p.span == nil {
		return nil, errSlowPath
	}
	// A URI that names no bundled JSON Schema is rejected or refused by
	// decodeChecked, which words why.
	v, ok := schemas.JSONValidatorOf(inner.schema)
	if !ok {
		return nil, errSlowPath
	}
	key := v.Key()
	mod, ok := ForCommand(key)
	if !ok || mod.Retired != "" {
		return nil, errSlowPath
	}
	if err := validAgainst(commandPart, v, inner.data, cmd.ID); err != nil {
		return nil, err
	}
	cmd.Schema = key
	// Not aliased to the record, as decodeChecked's copy is not.
	cmd.Data = bytes.Clone(p.span)
	cmd.Module = mod.Name
	cmd.dataTree, cmd.hasTree, cmd.uri = inner.data, true, inner.schema
	if mod.DecodeValue != nil {
		data := CommandData{Raw: cmd.Data, Value: inner.data, members: p.members}
		if pl, ok := mod.DecodeValue(key, data); ok {
			cmd.Payload = pl
			return cmd, nil
		}
	}
	if mod.Decode != nil {
		pl, err := mod.Decode(key, cmd.Data)
		if err != nil {
			return nil, errSlowPath
		}
		cmd.Payload = pl
	}
	return cmd, nil
}

type treeSD struct {
	schema string
	data   any
}

// treeSelfDescribing is splitSelfDescribing on a parsed value.
func treeSelfDescribing(v any) (treeSD, bool) {
	m, ok := v.(*schemas.Members)
	if !ok || len(*m) != 2 {
		return treeSD{}, false
	}
	schema, _ := m.Get("schema")
	s, ok := schemas.StringOf(schema)
	if !ok {
		return treeSD{}, false
	}
	d, ok := m.Get("data")
	if !ok {
		return treeSD{}, false
	}
	return treeSD{schema: s, data: d}, true
}

// validTree is validate on a parsed value: nil, errSlowPath, or the
// rejection of data that does not validate. The schema's URI leads straight
// to its compiled validator: a URI that ParseKey refuses, or that names no
// bundled JSON Schema, has none, and decodeChecked words its rejection.
func validTree(p part, family schemas.Key, sd treeSD, id string) error {
	v, ok := schemas.JSONValidatorOf(sd.schema)
	if !ok || family.Vendor != "" && !family.SameRevision(v.Key()) {
		return errSlowPath
	}
	return validAgainst(p, v, sd.data, id)
}

// validAgainst is validTree once the schema is known.
func validAgainst(p part, v *schemas.JSONValidator, data any, id string) error {
	err := v.Validate(data)
	if err == nil {
		return nil
	}
	if ve := (*schemas.ValidationError)(nil); errors.As(err, &ve) {
		return invalid(p, id, err)
	}
	return errSlowPath
}

// envelopeFromTree is decodeEnvelope on a parsed value.
func envelopeFromTree(v any) (*Command, bool) {
	m, ok := v.(*schemas.Members)
	if !ok || !exactMembers(*m, envelopeFields) {
		return nil, false
	}
	field := func(m *schemas.Members, name string) any {
		v, _ := m.Get(name)
		return v
	}
	id, ok := schemas.StringOf(field(m, "commandId"))
	if !ok {
		return nil, false
	}
	when, ok := schemas.StringOf(field(m, "whenCreated"))
	if !ok {
		return nil, false
	}
	exec, ok := field(m, "execution").(*schemas.Members)
	if !ok || !exactMembers(*exec, executionFields) {
		return nil, false
	}
	// The command and its time to live share one allocation.
	withTTL := &struct {
		cmd Command
		ttl int64
	}{}
	cmd := &withTTL.cmd
	if ttl := field(exec, "timeToLive"); ttl != nil {
		t, ok := schemas.NumberOf(ttl)
		if !ok {
			return nil, false
		}
		// What encoding/json does for an int64 field.
		n, err := strconv.ParseInt(string(t), 10, 64)
		if err != nil {
			return nil, false
		}
		withTTL.ttl = n
		cmd.TimeToLiveMillis = &withTTL.ttl
	}
	switch t := field(m, "tags").(type) {
	case nil:
	case *schemas.Members:
		for _, e := range *t {
			if _, ok := schemas.StringOf(e.Value); !ok {
				return nil, false
			}
		}
		cmd.tagMembers = t
	default:
		return nil, false
	}
	created, err := ParseTimestamp(when)
	if err != nil {
		return nil, false
	}
	cmd.ID, cmd.Created = id, created
	return cmd, true
}

// exactMembers reports whether no member of m would reach one of fields
// only through encoding/json's case-insensitive matching of struct fields.
func exactMembers(m schemas.Members, fields []string) bool {
	for _, e := range m {
		// A name that is one of fields folds to none of the others, which
		// fold differently from it.
		if slices.Contains(fields, e.Name) {
			continue
		}
		for _, f := range fields {
			if e.Name != f && strings.EqualFold(e.Name, f) {
				return false
			}
		}
	}
	return true
}

// CommandData is a command's data as Decode parsed it, for
// Module.DecodeValue.
type CommandData struct {
	// Raw is the data exactly as received.
	Raw json.RawMessage
	// Value is Raw decoded: the value encoding/json gives for an any with
	// UseNumber, except that every object is a *schemas.Members, and a
	// string or number may be a *string or *json.Number
	// (schemas.StringOf, schemas.NumberOf).
	Value any
	// members are where the values of Value's members lie in Raw, when
	// the parse kept them.
	members []rawSpan
}

// Member returns the text of member name of the data, an object, exactly as
// it appears in Raw; false when the data is not an object or has no such
// member.
func (d CommandData) Member(name string) ([]byte, bool) {
	if d.members == nil {
		return RawMember(d.Raw, name)
	}
	for _, m := range d.members {
		if m.name == name {
			return d.Raw[m.lo:m.hi], true
		}
	}
	return nil, false
}
