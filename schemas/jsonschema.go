package schemas

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// igluCentral is where every Iglu schema's $schema and $ref point. The URLs
// are only names here: nothing is ever fetched from them.
const igluCentral = "http://iglucentral.com/schemas/"

// metaSchemaKey is the Iglu meta-schema: draft-04 plus a required "self" block.
var metaSchemaKey = Key{Vendor: "com.snowplowanalytics.self-desc", Name: "schema", Format: "jsonschema", Model: 1}

func schemaURL(k Key) string { return igluCentral + k.Path() + "#" }

type compiledJSONSchemas struct {
	byKey map[Key]*JSONValidator
	// byURI holds the same validators under their keys' URIs, so that a
	// command's schema URI leads to its validator in one lookup, without
	// parsing it.
	byURI map[string]*JSONValidator
	err   error
}

// A JSONValidator is one bundled JSON Schema, compiled: what [ValidateJSON]
// looks up by key, kept so that a caller that validates against the same
// schema again and again looks it up once.
type JSONValidator struct {
	key    Key
	schema *jsonschema.Schema
	// checker is the schema's fast validator, when it has one (see
	// checker).
	checker *checker
}

// Key is the schema's key.
func (v *JSONValidator) Key() Key { return v.key }

var jsonSchemas = sync.OnceValue(compileJSONSchemas)

// compileJSONSchemas compiles every bundled JSON Schema in one compiler so
// that cross-schema $refs (command/1-0-0 to instance-iglu-only/1-0-0) resolve
// to the bundled copies.
//
// Formats are asserted: commandId must be a UUID (8-4-4-4-12 hex digits, any
// version or variant) and whenCreated an RFC 3339 date-time. Sauna's
// validator ignored "uuid", but commandId is our idempotency key, so a value
// that is not a UUID is rejected rather than trusted.
func compileJSONSchemas() compiledJSONSchemas {
	sealed.Store(true)
	c := jsonschema.NewCompiler()
	c.UseLoader(offlineLoader{})
	c.DefaultDraft(jsonschema.Draft4)
	c.AssertFormat()
	var jsKeys []Key
	for _, k := range keys {
		if k.Format != "jsonschema" {
			continue
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(bundled[k]))
		if err != nil {
			return compiledJSONSchemas{err: fmt.Errorf("schemas: parse %s: %w", k, err)}
		}
		if k == metaSchemaKey {
			// The meta-schema names itself as its own $schema, which no
			// validator can bootstrap from; its body is draft-04 plus "self",
			// so declaring draft-04 keeps its meaning.
			obj, ok := doc.(map[string]any)
			if !ok {
				return compiledJSONSchemas{err: fmt.Errorf("schemas: %s is not a JSON object", k)}
			}
			obj["$schema"] = "http://json-schema.org/draft-04/schema#"
		}
		if err := c.AddResource(schemaURL(k), doc); err != nil {
			return compiledJSONSchemas{err: fmt.Errorf("schemas: add %s: %w", k, err)}
		}
		jsKeys = append(jsKeys, k)
	}
	out := compiledJSONSchemas{byKey: make(map[Key]*JSONValidator, len(jsKeys)), byURI: make(map[string]*JSONValidator, len(jsKeys))}
	for _, k := range jsKeys {
		s, err := c.Compile(schemaURL(k))
		if err != nil {
			return compiledJSONSchemas{err: fmt.Errorf("schemas: compile %s: %w", k, err)}
		}
		v := &JSONValidator{key: k, schema: s}
		// A schema the checker cannot express is validated by the library
		// alone.
		if ch, err := newChecker(s); err == nil {
			v.checker = ch
		}
		out.byKey[k] = v
		out.byURI[k.String()] = v
	}
	return out
}

// offlineLoader refuses every URL: all schemas are added up front, and the
// library's default loader would otherwise read file:// URLs from disk.
type offlineLoader struct{}

func (offlineLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("%w: %s is not bundled (schemas are never fetched)", ErrUnknownSchema, url)
}

// ValidateJSON validates instance against the bundled JSON Schema k.
//
// instance is a decoded JSON value: the result of jsonschema.UnmarshalJSON,
// or of encoding/json decoding into an any (preferably with UseNumber, so
// that large integers keep their precision), where any object may also be
// a *[Members], any string a *string and any json.Number a *json.Number
// ([StringOf]). An unknown key gives an error
// wrapping [ErrUnknownSchema]; an invalid instance gives a *[ValidationError].
//
// A valid instance is recognised by the schema's checker when it has one,
// without allocating; anything else is validated by the library, which
// words the error.
func ValidateJSON(k Key, instance any) error {
	js := jsonSchemas()
	if js.err != nil {
		return js.err
	}
	v, ok := js.byKey[k]
	if !ok {
		return fmt.Errorf("%w %s", ErrUnknownSchema, k)
	}
	return v.Validate(instance)
}

// Check compiles the bundled JSON Schemas, if that is not done yet, and
// returns why they do not compile. They compile together, so one that does
// not (a custom build's own schema, say) leaves every command unvalidated,
// each rejected as invalid: a program that validates commands calls Check
// first and stops, rather than reject them all.
func Check() error { return jsonSchemas().err }

// JSONValidatorOf returns the validator of the bundled JSON Schema whose
// key's URI is exactly uri ([Key.String]): false for any other string,
// including a URI that is not canonical or names no bundled JSON Schema,
// and when the bundled schemas do not compile ([ValidateJSON] says why).
func JSONValidatorOf(uri string) (*JSONValidator, bool) {
	js := jsonSchemas()
	v, ok := js.byURI[uri]
	return v, ok
}

// Validate is [ValidateJSON] against v's schema.
func (v *JSONValidator) Validate(instance any) error {
	if v.checker != nil && v.checker.check(instance, 0) == valid {
		return nil
	}
	k := v.key
	plain, _ := plainJSON(instance)
	err := v.schema.Validate(plain)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("validate against %s: %w", k, err)
	}
	out := &ValidationError{Key: k, err: ve}
	collectCauses(ve, &out.Causes)
	// The library visits object members in map order; sorting by path makes
	// the message identical from one run to the next.
	slices.SortStableFunc(out.Causes, func(a, b Cause) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// ValidationError reports why an instance does not match a JSON Schema.
// It unwraps to the library's *jsonschema.ValidationError, whose
// BasicOutput() gives the keyword locations as well, for rejection logs.
type ValidationError struct {
	Key    Key
	Causes []Cause
	err    *jsonschema.ValidationError
}

// Unwrap gives access to the library's error, e.g. for BasicOutput().
func (e *ValidationError) Unwrap() error {
	if e.err == nil {
		return nil
	}
	return e.err
}

// Cause is one failed constraint. Path is the JSON Pointer of the offending
// value within the instance ("" for the instance itself).
type Cause struct {
	Path    string
	Message string
}

func (e *ValidationError) Error() string {
	var sb strings.Builder
	sb.WriteString("invalid against ")
	sb.WriteString(e.Key.String())
	sb.WriteString(": ")
	for i, c := range e.Causes {
		if i > 0 {
			sb.WriteString("; ")
		}
		sb.WriteString(displayPointer(c.Path))
		sb.WriteString(": ")
		sb.WriteString(c.Message)
	}
	return sb.String()
}

func displayPointer(p string) string {
	if p == "" {
		return "(root)"
	}
	return p
}

// collectCauses keeps only the leaves of the library's error tree: inner
// nodes ("anyOf failed", "$ref failed") restate their children, while the
// leaves say which value broke which constraint.
func collectCauses(ve *jsonschema.ValidationError, out *[]Cause) {
	if len(ve.Causes) == 0 {
		if ap, ok := ve.ErrorKind.(*kind.AdditionalProperties); ok {
			slices.Sort(ap.Properties)
		}
		// A leaf's basic output carries just its own message, in the
		// library's default (English) wording.
		c := Cause{Path: pointer(ve.InstanceLocation), Message: ve.BasicOutput().Error.String()}
		for _, seen := range *out {
			if seen == c {
				return
			}
		}
		*out = append(*out, c)
		return
	}
	for _, cause := range ve.Causes {
		collectCauses(cause, out)
	}
}

func pointer(tokens []string) string {
	var sb strings.Builder
	r := strings.NewReplacer("~", "~0", "/", "~1")
	for _, t := range tokens {
		sb.WriteByte('/')
		sb.WriteString(r.Replace(t))
	}
	return sb.String()
}
