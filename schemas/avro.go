package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/linkedin/goavro/v2"
)

// DecodeAvroJSON checks data, a config's JSON text, against the bundled Avro
// schema k and returns it as normalized plain JSON, ready for json.Unmarshal
// into a typed struct: union values unwrapped, every field the schema gives
// a default filled in, and a timestamp-millis given as a numeric string (as
// Sauna's wiki writes it) turned into a number.
//
// Both of Avro's JSON encoding (a non-null union value wrapped as
// {"<branch full name>": value}, e.g. {"long": 1}) and plain JSON are
// accepted. A field whose type is a union with null may be omitted even
// without a default; it is then null, which is how 1-0-0 configs leave out
// initialPositionModifiers.
//
// Problems in data are reported together, as an errors.Join of
// *[FieldError] with paths relative to data; malformed JSON and trailing
// bytes after the value are plain errors. A key that is not a bundled Avro
// schema gives an error wrapping [ErrUnknownSchema].
func DecodeAvroJSON(k Key, data []byte) ([]byte, error) {
	return decodeAvro(k, data, avroDecoder{})
}

// decodeAvro is DecodeAvroJSON with d saying how to report a problem: the
// file and the path of data in it.
func decodeAvro(k Key, data []byte, d avroDecoder) ([]byte, error) {
	e, ok := avroSchemas()[k]
	if !ok {
		if Has(k) {
			return nil, fmt.Errorf("%w %s: format %q, want avro", ErrUnknownSchema, k, k.Format)
		}
		return nil, fmt.Errorf("%w %s", ErrUnknownSchema, k)
	}
	if e.err != nil {
		return nil, e.err
	}
	v, err := parseJSON(data)
	if err != nil {
		return nil, err
	}
	norm := d.decode(e.root, v, d.base)
	if len(d.errs) > 0 {
		return nil, errors.Join(d.errs...)
	}
	var buf bytes.Buffer
	writeJSON(&buf, norm)
	out := buf.Bytes()
	// goavro is an independent reading of the same schema; if it disagrees
	// with the walk above, the walk has a bug and the config must not pass.
	if _, rest, err := e.codec.NativeFromTextual(out); err != nil {
		return nil, fmt.Errorf("%s: avro codec rejected the normalized config: %w", k, err)
	} else if len(bytes.TrimLeft(rest, " \t\r\n")) > 0 {
		return nil, fmt.Errorf("%s: avro codec left %d bytes of the normalized config unread", k, len(rest))
	}
	return out, nil
}

func parseJSON(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if err == io.EOF {
			return nil, errors.New("invalid JSON: no value")
		}
		if se, ok := err.(*json.SyntaxError); ok {
			return nil, fmt.Errorf("invalid JSON at offset %d: %v", se.Offset, se)
		}
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	off := dec.InputOffset()
	if rest := bytes.TrimLeft(data[off:], " \t\r\n"); len(rest) > 0 {
		return nil, fmt.Errorf("invalid JSON: unexpected data after the top-level value at offset %d", len(data)-len(rest))
	}
	return v, nil
}

// avroEntry is one bundled Avro schema, parsed for the walk in DecodeAvroJSON
// and compiled by goavro for the cross-check.
type avroEntry struct {
	root  *avroType
	codec *goavro.Codec
	err   error
}

var avroSchemas = sync.OnceValue(func() map[Key]*avroEntry {
	sealed.Store(true)
	m := map[Key]*avroEntry{}
	for _, k := range keys {
		if k.Format != "avro" {
			continue
		}
		e := &avroEntry{}
		e.root, e.err = parseAvroSchema(bundled[k])
		if e.err == nil {
			e.codec, e.err = goavro.NewCodecForStandardJSONFull(string(bundled[k]))
		}
		if e.err != nil {
			e.err = fmt.Errorf("schemas: bundled %s: %w", k, e.err)
		}
		m[k] = e
	}
	return m
})

// avroType is the part of an Avro schema that decoding JSON needs.
type avroType struct {
	kind     string // a primitive type name, or record, enum, array, map, fixed, union
	name     string // full name of a record, enum or fixed
	logical  string
	fields   []avroField // record
	symbols  []string    // enum
	items    *avroType   // array items or map values
	branches []*avroType // union
	size     int         // fixed
}

type avroField struct {
	name       string
	typ        *avroType
	hasDefault bool
	def        any // normalized, as decode would return it
}

var avroPrimitives = map[string]bool{
	"null": true, "boolean": true, "int": true, "long": true,
	"float": true, "double": true, "bytes": true, "string": true,
}

func parseAvroSchema(src []byte) (*avroType, error) {
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	p := avroParser{named: map[string]*avroType{}}
	return p.parse(doc, "")
}

type avroParser struct {
	named map[string]*avroType
}

func (p *avroParser) parse(s any, ns string) (*avroType, error) {
	switch s := s.(type) {
	case string:
		if avroPrimitives[s] {
			return &avroType{kind: s}, nil
		}
		full := s
		if !strings.Contains(s, ".") && ns != "" {
			full = ns + "." + s
		}
		if t, ok := p.named[full]; ok {
			return t, nil
		}
		if t, ok := p.named[s]; ok {
			return t, nil
		}
		return nil, fmt.Errorf("unknown type %q", s)
	case []any:
		u := &avroType{kind: "union"}
		for _, b := range s {
			bt, err := p.parse(b, ns)
			if err != nil {
				return nil, err
			}
			u.branches = append(u.branches, bt)
		}
		return u, nil
	case map[string]any:
		return p.parseObject(s, ns)
	}
	return nil, fmt.Errorf("invalid schema %v", s)
}

func (p *avroParser) parseObject(s map[string]any, ns string) (*avroType, error) {
	typ, ok := s["type"].(string)
	if !ok {
		return p.parse(s["type"], ns)
	}
	logical, _ := s["logicalType"].(string)
	if avroPrimitives[typ] {
		return &avroType{kind: typ, logical: logical}, nil
	}
	switch typ {
	case "array", "map":
		key := "items"
		if typ == "map" {
			key = "values"
		}
		it, err := p.parse(s[key], ns)
		if err != nil {
			return nil, err
		}
		return &avroType{kind: typ, items: it}, nil
	case "record", "error", "enum", "fixed":
	default:
		return p.parse(typ, ns)
	}
	name, _ := s["name"].(string)
	if name == "" {
		return nil, fmt.Errorf("%s without a name", typ)
	}
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		ns = name[:i]
	} else if n, ok := s["namespace"].(string); ok {
		ns = n
	}
	full := name
	if !strings.Contains(name, ".") && ns != "" {
		full = ns + "." + name
	}
	if _, dup := p.named[full]; dup {
		return nil, fmt.Errorf("type %q defined twice", full)
	}
	t := &avroType{kind: typ, name: full, logical: logical}
	if typ == "error" {
		t.kind = "record"
	}
	p.named[full] = t
	switch t.kind {
	case "enum":
		syms, _ := s["symbols"].([]any)
		for _, sym := range syms {
			str, ok := sym.(string)
			if !ok {
				return nil, fmt.Errorf("enum %q: symbol %v is not a string", full, sym)
			}
			t.symbols = append(t.symbols, str)
		}
	case "fixed":
		n, ok := s["size"].(json.Number)
		size, err := strconv.Atoi(string(n))
		if !ok || err != nil || size < 0 {
			return nil, fmt.Errorf("fixed %q: invalid size %v", full, s["size"])
		}
		t.size = size
	case "record":
		fields, _ := s["fields"].([]any)
		for _, f := range fields {
			field, err := p.parseField(f, full, ns)
			if err != nil {
				return nil, err
			}
			t.fields = append(t.fields, field)
		}
	}
	return t, nil
}

// parseField parses one field of the record named full.
func (p *avroParser) parseField(f any, full, ns string) (avroField, error) {
	fm, ok := f.(map[string]any)
	if !ok {
		return avroField{}, fmt.Errorf("record %q: field %v is not an object", full, f)
	}
	fname, _ := fm["name"].(string)
	ft, err := p.parse(fm["type"], ns)
	if err != nil {
		return avroField{}, fmt.Errorf("record %q field %q: %w", full, fname, err)
	}
	field := avroField{name: fname, typ: ft}
	if dv, ok := fm["default"]; ok {
		// Avro matches a union's default against its first branch only.
		dt := ft
		if ft.kind == "union" && len(ft.branches) > 0 {
			dt = ft.branches[0]
		}
		var d avroDecoder
		field.def = d.decode(dt, dv, "")
		if len(d.errs) > 0 {
			return avroField{}, fmt.Errorf("record %q field %q: invalid default: %w", full, fname, errors.Join(d.errs...))
		}
		field.hasDefault = true
	}
	return field, nil
}

// branchName is how Avro's JSON encoding names a union branch.
func (t *avroType) branchName() string {
	if t.name != "" {
		return t.name
	}
	return t.kind
}

// expected describes t the way a JSON author sees it.
func (t *avroType) expected() string {
	switch t.kind {
	case "record", "map":
		return "object"
	case "enum":
		return "one of " + strings.Join(t.symbols, ", ")
	case "fixed":
		return fmt.Sprintf("string of %d bytes", t.size)
	case "long":
		if t.logical == "timestamp-millis" {
			return "long (milliseconds since the epoch, as a number or numeric string)"
		}
	}
	return t.kind
}

// accepts reports whether a JSON value of v's kind can be an instance of t;
// it picks the union branch to decode a plain (unwrapped) value with.
func (t *avroType) accepts(v any) bool {
	switch v.(type) {
	case nil:
		return t.kind == "null"
	case bool:
		return t.kind == "boolean"
	case json.Number:
		switch t.kind {
		case "int", "long", "float", "double":
			return true
		}
	case string:
		switch t.kind {
		case "string", "bytes", "enum", "fixed":
			return true
		case "long":
			return t.logical == "timestamp-millis"
		}
	case []any:
		return t.kind == "array"
	case map[string]any:
		return t.kind == "record" || t.kind == "map"
	}
	return false
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case json.Number:
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// avroDecoder walks a schema and a JSON value together, collecting every
// error instead of stopping at the first. Its errors name file, and paths
// start at base, the path of the value in that file.
type avroDecoder struct {
	file, base string
	errs       []error
}

func (d *avroDecoder) fail(path, format string, args ...any) any {
	d.errs = append(d.errs, &FieldError{File: d.file, Path: path, Message: fmt.Sprintf(format, args...)})
	return nil
}

func (d *avroDecoder) mismatch(path string, t *avroType, v any) any {
	return d.fail(path, "expected %s, got %s", t.expected(), jsonKind(v))
}

func joinPath(path, field string) string {
	switch {
	case path == "":
		return field
	case field == "":
		return path
	}
	return path + "." + field
}

// decode returns v normalized for t: nil, bool, int64, json.Number, string,
// []any, map[string]any or *orderedObject (a record, in schema field order).
func (d *avroDecoder) decode(t *avroType, v any, path string) any {
	switch t.kind {
	case "union":
		return d.decodeUnion(t, v, path)
	case "null", "boolean", "string", "bytes", "float", "double":
		if !t.accepts(v) {
			return d.mismatch(path, t, v)
		}
		if n, ok := v.(json.Number); ok {
			if _, err := strconv.ParseFloat(string(n), 64); err != nil {
				return d.fail(path, "expected %s, got %s: out of range", t.kind, n)
			}
		}
		return v
	case "int", "long":
		return d.decodeInteger(t, v, path)
	case "enum":
		s, ok := v.(string)
		if !ok {
			return d.fail(path, "expected a string, one of %s, got %s", strings.Join(t.symbols, ", "), jsonKind(v))
		}
		if !slices.Contains(t.symbols, s) {
			return d.fail(path, "expected one of %s, got %q", strings.Join(t.symbols, ", "), s)
		}
		return s
	case "fixed":
		s, ok := v.(string)
		if !ok || !fixedFits(s, t.size) {
			return d.mismatch(path, t, v)
		}
		return s
	case "array":
		a, ok := v.([]any)
		if !ok {
			return d.mismatch(path, t, v)
		}
		out := make([]any, len(a))
		for i, item := range a {
			out[i] = d.decode(t.items, item, fmt.Sprintf("%s[%d]", path, i))
		}
		return out
	case "map":
		m, ok := v.(map[string]any)
		if !ok {
			return d.mismatch(path, t, v)
		}
		out := make(map[string]any, len(m))
		for _, key := range sortedKeys(m) {
			out[key] = d.decode(t.items, m[key], fmt.Sprintf("%s[%q]", path, key))
		}
		return out
	case "record":
		return d.decodeRecord(t, v, path)
	}
	return d.fail(path, "unsupported Avro type %s", t.kind)
}

func (d *avroDecoder) decodeRecord(t *avroType, v any, path string) any {
	obj, ok := v.(map[string]any)
	if !ok {
		return d.mismatch(path, t, v)
	}
	out := &orderedObject{}
	for _, f := range t.fields {
		fp := joinPath(path, f.name)
		fv, present := obj[f.name]
		switch {
		case present:
			out.add(f.name, d.decode(f.typ, fv, fp))
		case f.hasDefault:
			out.add(f.name, f.def)
		case f.typ.kind == "union" && slices.ContainsFunc(f.typ.branches, func(b *avroType) bool { return b.kind == "null" }):
			out.add(f.name, nil)
		default:
			d.fail(fp, "missing required field")
		}
	}
	for _, key := range sortedKeys(obj) {
		if !slices.ContainsFunc(t.fields, func(f avroField) bool { return f.name == key }) {
			d.fail(joinPath(path, key), "unknown field")
		}
	}
	return out
}

func (d *avroDecoder) decodeUnion(t *avroType, v any, path string) any {
	// Avro's JSON encoding: {"<branch name>": value} for any non-null branch.
	if obj, ok := v.(map[string]any); ok && len(obj) == 1 {
		for name, inner := range obj {
			for _, b := range t.branches {
				if b.branchName() == name {
					return d.decode(b, inner, path)
				}
			}
		}
	}
	var candidates []*avroType
	for _, b := range t.branches {
		if b.accepts(v) {
			candidates = append(candidates, b)
		}
	}
	switch len(candidates) {
	case 0:
		names := make([]string, len(t.branches))
		for i, b := range t.branches {
			names[i] = b.expected()
		}
		return d.fail(path, "expected %s, got %s", strings.Join(names, " or "), jsonKind(v))
	case 1:
		// Report the branch's own errors: they name the inner field at fault.
		return d.decode(candidates[0], v, path)
	}
	for _, b := range candidates {
		var trial avroDecoder
		if out := trial.decode(b, v, path); len(trial.errs) == 0 {
			return out
		}
	}
	names := make([]string, len(candidates))
	for i, b := range candidates {
		names[i] = b.branchName()
	}
	return d.fail(path, "matches none of the union branches %s", strings.Join(names, ", "))
}

// maxExactFloat is the largest magnitude below which every integer has an
// exact float64, so "1e3" can safely stand for 1000.
const maxExactFloat = 1 << 53

func (d *avroDecoder) decodeInteger(t *avroType, v any, path string) any {
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if t.kind == "int" {
		lo, hi = math.MinInt32, math.MaxInt32
	}
	var text string
	switch v := v.(type) {
	case json.Number:
		text = string(v)
	case string:
		if t.logical != "timestamp-millis" {
			return d.mismatch(path, t, v)
		}
		// Sauna's wiki writes timestamps as strings: "1486998718968".
		if !isDecimalInteger(v) {
			return d.fail(path, "expected %s, got string %q", t.expected(), v)
		}
		text = v
	default:
		return d.mismatch(path, t, v)
	}
	if isDecimalInteger(text) {
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil || n < lo || n > hi {
			return d.fail(path, "expected %s, got %s: out of range", t.kind, text)
		}
		return n
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || f != math.Trunc(f) {
		return d.fail(path, "expected %s, got non-integral number %s", t.kind, text)
	}
	if math.Abs(f) >= maxExactFloat || f < float64(lo) || f > float64(hi) {
		return d.fail(path, "expected %s, got %s: out of range", t.kind, text)
	}
	return int64(f)
}

func isDecimalInteger(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// fixedFits follows Avro's JSON encoding of bytes and fixed: one code point
// (0-255) per byte.
func fixedFits(s string, size int) bool {
	n := 0
	for _, r := range s {
		if r > 255 {
			return false
		}
		n++
	}
	return n == size
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// orderedObject is a record's value; it keeps the schema's field order so
// the normalized JSON reads like the schema.
type orderedObject struct {
	names  []string
	values []any
}

func (o *orderedObject) add(name string, v any) {
	o.names = append(o.names, name)
	o.values = append(o.values, v)
}

func writeJSON(buf *bytes.Buffer, v any) {
	switch v := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		buf.WriteString(strconv.FormatBool(v))
	case int64:
		buf.WriteString(strconv.FormatInt(v, 10))
	case json.Number:
		buf.WriteString(string(v))
	case string:
		writeString(buf, v)
	case []any:
		buf.WriteByte('[')
		for i, item := range v {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSON(buf, item)
		}
		buf.WriteByte(']')
	case map[string]any:
		buf.WriteByte('{')
		for i, k := range sortedKeys(v) {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeString(buf, k)
			buf.WriteByte(':')
			writeJSON(buf, v[k])
		}
		buf.WriteByte('}')
	case *orderedObject:
		buf.WriteByte('{')
		for i, k := range v.names {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeString(buf, k)
			buf.WriteByte(':')
			writeJSON(buf, v.values[i])
		}
		buf.WriteByte('}')
	default:
		panic(fmt.Sprintf("schemas: cannot encode %T", v))
	}
}

// writeString leaves <, > and & alone (json.Marshal would escape them), so
// URLs such as webhookUrl stay readable.
func writeString(buf *bytes.Buffer, s string) {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)           // a string always encodes
	buf.Truncate(buf.Len() - 1) // Encode appends a newline
}
