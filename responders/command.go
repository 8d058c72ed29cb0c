package responders

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/sauna-io/sauna/schemas"
)

// Reason says why a record was rejected without reaching a responder.
type Reason string

// Rejection reasons. They label metrics and logs, so they never change.
const (
	ReasonInvalidJSON       Reason = "invalid_json"
	ReasonNotSelfDescribing Reason = "not_self_describing"
	ReasonUnknownSchema     Reason = "unknown_schema"
	ReasonInvalidData       Reason = "invalid_data"
	ReasonExpired           Reason = "expired"
	ReasonNoResponder       Reason = "no_responder"
	ReasonRetired           Reason = "retired"
	// ReasonCorruptAggregate marks a KPL aggregate record whose body cannot
	// be decoded (its user records are unreadable), or that holds more user
	// records than an aggregate of commands can; it is rejected whole.
	ReasonCorruptAggregate Reason = "corrupt_aggregate"
)

// RejectError is a record that can never be executed as sent. Rejections
// are permanent: they are reported, never retried.
type RejectError struct {
	Reason Reason
	// CommandID is set when the envelope was readable.
	CommandID string
	// Pointer is the JSON Pointer (RFC 6901) into the whole record of the
	// part or field at fault, such as "/data/envelope/data/whenCreated" or
	// "/data/command/schema"; "" is the record as a whole. When Err wraps a
	// *schemas.ValidationError, Pointer is the validated data and each
	// cause's Path is relative to it. Callers find the field here, never in
	// the wording of Err, which may change.
	Pointer string
	Err     error
}

func (e *RejectError) Error() string { return string(e.Reason) + ": " + e.Err.Error() }
func (e *RejectError) Unwrap() error { return e.Err }

func reject(reason Reason, id, pointer string, format string, args ...any) *RejectError {
	return &RejectError{Reason: reason, CommandID: id, Pointer: pointer, Err: fmt.Errorf(format, args...)}
}

// part is a self-describing part of a record: its name in rejections, and
// the JSON Pointer of the part in the record.
type part struct{ name, at string }

// The three self-describing parts of a record. The wrapper is called
// "command" in rejections, as Sauna calls it.
var (
	wrapperPart  = part{name: "command", at: ""}
	envelopePart = part{name: "envelope", at: "/data/envelope"}
	commandPart  = part{name: "command data", at: "/data/command"}
)

func (p part) schemaPointer() string { return p.at + "/schema" }
func (p part) dataPointer() string   { return p.at + "/data" }

// The outer wrapper and the envelope are matched as 1-0-*: later additions
// validate only if bundled, as in Sauna.
var (
	commandFamily  = schemas.Key{Vendor: "com.snowplowanalytics.sauna.commands", Name: "command", Format: "jsonschema", Model: 1}
	envelopeFamily = schemas.Key{Vendor: "com.snowplowanalytics.sauna.commands", Name: "envelope", Format: "jsonschema", Model: 1}
)

// Command is one decoded, validated Sauna command.
type Command struct {
	// ID is the envelope's commandId (a UUID).
	ID string
	// Created is the envelope's whenCreated, with its UTC offset honoured.
	Created time.Time
	// TimeToLiveMillis is nil when the command never expires.
	TimeToLiveMillis *int64
	// Schema is the inner command's schema; it picks the responder.
	Schema schemas.Key
	// Data is the inner command's data exactly as received.
	Data json.RawMessage
	// Payload is the module's typed form of Data (see Module.Decode).
	Payload any
	// Module is the name of the module that serves Schema.
	Module string

	// dataTree is Data as decoded for validation, when hasTree is set: the
	// digest is computed from it rather than from a second parse.
	dataTree any
	hasTree  bool
	// uri is Schema as the record spells it, which is Schema.String()
	// (ParseKey accepts only the canonical spelling), when set.
	uri string
	// tags are the envelope's tags as encoding/json decoded them, or
	// tagMembers their members as parsed (every value a string): the map
	// is built only when asked for, as nothing on a command's way to its
	// responder reads it.
	tags       map[string]string
	tagMembers *schemas.Members
}

// Tags returns the envelope's free-form metadata: nil when the envelope has
// none (or null), else a map the caller may keep and change.
func (c *Command) Tags() map[string]string {
	if c.tagMembers == nil {
		return maps.Clone(c.tags)
	}
	tags := make(map[string]string, len(*c.tagMembers))
	for _, e := range *c.tagMembers {
		tags[e.Name], _ = schemas.StringOf(e.Value)
	}
	return tags
}

// SchemaURI is Schema.String(), without building it again when the record's
// own spelling was kept.
func (c *Command) SchemaURI() string {
	if c.uri != "" {
		return c.uri
	}
	return c.Schema.String()
}

// Expired reports whether the command's time to live has passed at now:
// strictly more than timeToLive milliseconds since whenCreated. A command
// created in the future has a negative age and does not expire.
func (c *Command) Expired(now time.Time) bool {
	if c.TimeToLiveMillis == nil {
		return false
	}
	return now.Sub(c.Created).Milliseconds() > *c.TimeToLiveMillis
}

type selfDescribing struct {
	Schema string          `json:"schema"`
	Data   json.RawMessage `json:"data"`
}

// Decode turns one Kinesis record into a Command, validating the wrapper, the
// envelope and the inner command against the bundled schemas. Every failure
// is a *RejectError naming the part and field at fault.
//
// Number literals longer than MaxNumberLen characters are refused before
// anything is validated: the JSON Schema validator turns every number into an
// exact fraction, which for a number of many thousands of digits costs seconds.
func Decode(raw []byte) (*Command, error) {
	if cmd, err := decodeFast(raw); err != errSlowPath {
		return cmd, err
	}
	return decodeChecked(raw)
}

// MaxNumberLen is the longest number literal a record may hold: enough for
// any 64-bit integer and any float64 written out in full precision.
const MaxNumberLen = 64

// decodeChecked decodes raw step by step, each step with its own parse, so
// that every rejection names the step that failed. decodeFast accepts only
// what this accepts, and leaves everything else to it.
func decodeChecked(raw []byte) (*Command, error) {
	if !utf8.Valid(raw) {
		return nil, reject(ReasonInvalidJSON, "", "", "record is not valid UTF-8")
	}
	if !json.Valid(raw) {
		return nil, reject(ReasonInvalidJSON, "", "", "record is not a single JSON value: %v", jsonSyntaxError(raw))
	}
	if hasLongNumber(raw) {
		pointer, n := longNumber(raw)
		path := pointer
		if path == "" {
			path = "(root)"
		}
		return nil, reject(ReasonInvalidData, commandIDOf(raw), pointer, "record: %s: a number of %d characters; at most %d are accepted", path, n, MaxNumberLen)
	}
	outer, err := splitSelfDescribing(raw)
	if err != nil {
		return nil, reject(ReasonNotSelfDescribing, "", "", "record: %v", err)
	}
	if err := validate(wrapperPart, commandFamily, outer, ""); err != nil {
		return nil, err
	}
	var parts struct {
		Envelope json.RawMessage `json:"envelope"`
		Command  json.RawMessage `json:"command"`
	}
	if err := json.Unmarshal(outer.Data, &parts); err != nil {
		return nil, reject(ReasonInvalidData, "", wrapperPart.dataPointer(), "command: %v", err)
	}
	envSD, err := splitSelfDescribing(parts.Envelope)
	if err != nil {
		return nil, reject(ReasonNotSelfDescribing, "", envelopePart.at, "envelope: %v", err)
	}
	if err := validate(envelopePart, envelopeFamily, envSD, ""); err != nil {
		return nil, err
	}
	cmd, err := decodeEnvelope(envSD.Data)
	if err != nil {
		return nil, err
	}
	inner, err := splitSelfDescribing(parts.Command)
	if err != nil {
		return nil, reject(ReasonNotSelfDescribing, cmd.ID, commandPart.at, "command: %v", err)
	}
	key, err := schemas.ParseKey(inner.Schema)
	if err != nil {
		return nil, reject(ReasonNotSelfDescribing, cmd.ID, commandPart.schemaPointer(), "command.schema: %s", Clip(err.Error()))
	}
	mod, ok := ForCommand(key)
	if !ok {
		return nil, reject(ReasonUnknownSchema, cmd.ID, commandPart.schemaPointer(), "no responder serves command schema %s", key)
	}
	if mod.Retired != "" {
		return nil, reject(ReasonRetired, cmd.ID, commandPart.schemaPointer(), "%s: %s", key, mod.Retired)
	}
	if err := validate(commandPart, key, inner, cmd.ID); err != nil {
		return nil, err
	}
	cmd.Schema = key
	cmd.Data = inner.Data
	cmd.Module = mod.Name
	if mod.Decode != nil {
		p, err := mod.Decode(key, inner.Data)
		if err != nil {
			return nil, reject(ReasonInvalidData, cmd.ID, commandPart.dataPointer(), "command data (%s): %s", key, Clip(err.Error()))
		}
		cmd.Payload = p
	}
	return cmd, nil
}

func splitSelfDescribing(raw json.RawMessage) (selfDescribing, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return selfDescribing{}, errors.New("not a JSON object with \"schema\" and \"data\"")
	}
	var sd selfDescribing
	s, ok := m["schema"]
	if !ok {
		return sd, errors.New("missing \"schema\"")
	}
	if err := json.Unmarshal(s, &sd.Schema); err != nil {
		return sd, errors.New("\"schema\" is not a string")
	}
	d, ok := m["data"]
	if !ok {
		return sd, errors.New("missing \"data\"")
	}
	sd.Data = d
	for k := range m {
		if k != "schema" && k != "data" {
			return sd, fmt.Errorf("unexpected field %q next to \"schema\" and \"data\"", Clip(k))
		}
	}
	return sd, nil
}

// validate checks that sd names a bundled schema of the expected family (the
// zero family accepts any) and that its data is valid against it.
func validate(p part, family schemas.Key, sd selfDescribing, id string) error {
	key, err := schemas.ParseKey(sd.Schema)
	if err != nil {
		return reject(ReasonNotSelfDescribing, id, p.schemaPointer(), "%s.schema: %s", p.name, Clip(err.Error()))
	}
	if family.Vendor != "" && !family.SameRevision(key) {
		if _, served := ForCommand(key); served && p == wrapperPart {
			// The commonest mistake of a first producer: the inner command
			// sent alone, as the HTTP ingest endpoint accepts it.
			return reject(ReasonUnknownSchema, id, p.schemaPointer(), "%s.schema: %s is an inner command sent alone: a record wraps it, beside an envelope (commandId, whenCreated, execution), in %s",
				p.name, key, familyString(family))
		}
		return reject(ReasonUnknownSchema, id, p.schemaPointer(), "%s.schema: %s is not %s", p.name, key, familyString(family))
	}
	if !schemas.Has(key) {
		return reject(ReasonUnknownSchema, id, p.schemaPointer(), "%s.schema: %s is not bundled", p.name, key)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(sd.Data))
	if err != nil {
		return reject(ReasonInvalidJSON, id, p.dataPointer(), "%s.data: %v", p.name, err)
	}
	if err := schemas.ValidateJSON(key, v); err != nil {
		return invalid(p, id, err)
	}
	return nil
}

// invalid is the rejection of a part that does not validate; the causes'
// paths are relative to the part's data. Each cause quotes at most MaxQuoted
// bytes of the value at fault.
func invalid(p part, id string, err error) *RejectError {
	var ve *schemas.ValidationError
	if errors.As(err, &ve) {
		for i := range ve.Causes {
			ve.Causes[i].Message = clipQuoted(ve.Causes[i].Message)
		}
	}
	return reject(ReasonInvalidData, id, p.dataPointer(), "%s: %w", p.name, err)
}

// clipQuoted clips each value the validator quotes ('...') in msg, keeping
// the words around it, then the whole message should the values have had
// quotes of their own.
func clipQuoted(msg string) string {
	if len(msg) <= MaxQuoted {
		return msg
	}
	parts := strings.Split(msg, "'")
	for i := 1; i < len(parts); i += 2 {
		parts[i] = Clip(parts[i])
	}
	out := strings.Join(parts, "'")
	if len(out) > 2*MaxQuoted {
		return Clip(out)
	}
	return out
}

// commandIDOf is the commandId of a record refused before it was validated,
// when it has one that looks like a UUID, so that the rejection still names
// the command. encoding/json skips the numbers it does not store without
// converting them.
func commandIDOf(raw []byte) string {
	var r struct {
		Data struct {
			Envelope struct {
				Data struct {
					CommandID string `json:"commandId"`
				} `json:"data"`
			} `json:"envelope"`
		} `json:"data"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return ""
	}
	id := r.Data.Envelope.Data.CommandID
	if len(id) != 36 {
		return ""
	}
	for i, c := range id {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return ""
			}
		} else if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return ""
		}
	}
	return id
}

// hasLongNumber reports whether the valid JSON document raw holds a number
// literal longer than MaxNumberLen, in one pass without allocating.
func hasLongNumber(raw []byte) bool {
	run := 0
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '"':
			run = 0
			for i++; i < len(raw) && raw[i] != '"'; i++ {
				if raw[i] == '\\' {
					i++
				}
			}
		case '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E':
			// Outside strings, in valid JSON, these only make up numbers
			// (and the "e" of true and false, which never runs long).
			if run++; run > MaxNumberLen {
				return true
			}
		default:
			run = 0
		}
	}
	return false
}

// longNumber finds the first number literal longer than MaxNumberLen in the
// valid JSON document raw: its JSON Pointer (each member name clipped) and
// its length.
func longNumber(raw []byte) (string, int) {
	type frame struct {
		object, atKey bool
		key           string
		index         int
	}
	var stack []frame
	pointer := func() string {
		var b strings.Builder
		esc := strings.NewReplacer("~", "~0", "/", "~1")
		for _, f := range stack {
			b.WriteByte('/')
			if f.object {
				b.WriteString(esc.Replace(Clip(f.key)))
			} else {
				fmt.Fprint(&b, f.index)
			}
		}
		return b.String()
	}
	done := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].object {
				stack[n-1].atKey = true
			} else {
				stack[n-1].index++
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", 0
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].atKey {
			if k, ok := tok.(string); ok {
				stack[n-1].key, stack[n-1].atKey = k, false
				continue
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			if t == '{' || t == '[' {
				stack = append(stack, frame{object: t == '{', atKey: t == '{'})
				continue
			}
			stack = stack[:len(stack)-1]
			done()
		case json.Number:
			if len(t) > MaxNumberLen {
				return pointer(), len(t)
			}
			done()
		default:
			done()
		}
	}
}

func familyString(k schemas.Key) string {
	return fmt.Sprintf("iglu:%s/%s/%s/%d-%d-*", k.Vendor, k.Name, k.Format, k.Model, k.Revision)
}

func decodeEnvelope(data json.RawMessage) (*Command, error) {
	var env struct {
		CommandID   string `json:"commandId"`
		WhenCreated string `json:"whenCreated"`
		Execution   struct {
			TimeToLive *int64 `json:"timeToLive"`
		} `json:"execution"`
		Tags map[string]string `json:"tags"`
	}
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, reject(ReasonInvalidData, "", envelopePart.dataPointer(), "envelope: %v", err)
	}
	created, err := ParseTimestamp(env.WhenCreated)
	if err != nil {
		return nil, reject(ReasonInvalidData, env.CommandID, envelopePart.dataPointer()+"/whenCreated", "envelope.whenCreated: %v", err)
	}
	return &Command{
		ID:               env.CommandID,
		Created:          created,
		TimeToLiveMillis: env.Execution.TimeToLive,
		tags:             env.Tags,
	}, nil
}

// ParseTimestamp parses an RFC 3339 date-time keeping its UTC offset. RFC 3339
// allows a lowercase "t" and "z", which Go's layout does not.
func ParseTimestamp(s string) (time.Time, error) {
	return time.Parse(time.RFC3339Nano, strings.ToUpper(s))
}

func jsonSyntaxError(raw []byte) error {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after offset %d", dec.InputOffset())
	}
	return errors.New("invalid JSON")
}

// MaxQuoted bounds a value quoted in an error, and so in a log line, a dead
// letter or the outcome table: a record may carry megabytes in one field.
const MaxQuoted = 256

// Clip returns s whole when it is at most MaxQuoted bytes long, else its
// first MaxQuoted bytes (cut between characters) followed by
// "... (N bytes)", N being the length of s.
func Clip(s string) string {
	if len(s) <= MaxQuoted {
		return s
	}
	cut := MaxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:cut], len(s))
}
