package responders

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
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
	// be decoded: its user records are unreadable.
	ReasonCorruptAggregate Reason = "corrupt_aggregate"
)

// RejectError is a record that can never be executed as sent. Rejections
// are permanent: they are reported, never retried.
type RejectError struct {
	Reason Reason
	// CommandID is set when the envelope was readable.
	CommandID string
	Err       error
}

func (e *RejectError) Error() string { return string(e.Reason) + ": " + e.Err.Error() }
func (e *RejectError) Unwrap() error { return e.Err }

func reject(reason Reason, id string, format string, args ...any) *RejectError {
	return &RejectError{Reason: reason, CommandID: id, Err: fmt.Errorf(format, args...)}
}

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
	// Tags is the envelope's free-form metadata.
	Tags map[string]string
	// Schema is the inner command's schema; it picks the responder.
	Schema schemas.Key
	// Data is the inner command's data exactly as received.
	Data json.RawMessage
	// Payload is the module's typed form of Data (see Module.Decode).
	Payload any
	// Module is the name of the module that serves Schema.
	Module string
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
func Decode(raw []byte) (*Command, error) {
	if cmd, ok := decodeFast(raw); ok {
		return cmd, nil
	}
	return decodeChecked(raw)
}

// decodeChecked decodes raw step by step, each step with its own parse, so
// that every rejection names the step that failed. decodeFast accepts only
// what this accepts, and leaves everything else to it.
func decodeChecked(raw []byte) (*Command, error) {
	if !utf8.Valid(raw) {
		return nil, reject(ReasonInvalidJSON, "", "record is not valid UTF-8")
	}
	if !json.Valid(raw) {
		return nil, reject(ReasonInvalidJSON, "", "record is not a single JSON value: %v", jsonSyntaxError(raw))
	}
	outer, err := splitSelfDescribing(raw)
	if err != nil {
		return nil, reject(ReasonNotSelfDescribing, "", "record: %v", err)
	}
	if err := validate("command", commandFamily, outer, ""); err != nil {
		return nil, err
	}
	var parts struct {
		Envelope json.RawMessage `json:"envelope"`
		Command  json.RawMessage `json:"command"`
	}
	if err := json.Unmarshal(outer.Data, &parts); err != nil {
		return nil, reject(ReasonInvalidData, "", "command: %v", err)
	}
	envSD, err := splitSelfDescribing(parts.Envelope)
	if err != nil {
		return nil, reject(ReasonNotSelfDescribing, "", "envelope: %v", err)
	}
	if err := validate("envelope", envelopeFamily, envSD, ""); err != nil {
		return nil, err
	}
	cmd, err := decodeEnvelope(envSD.Data)
	if err != nil {
		return nil, err
	}
	inner, err := splitSelfDescribing(parts.Command)
	if err != nil {
		return nil, reject(ReasonNotSelfDescribing, cmd.ID, "command: %v", err)
	}
	key, err := schemas.ParseKey(inner.Schema)
	if err != nil {
		return nil, reject(ReasonNotSelfDescribing, cmd.ID, "command.schema: %v", err)
	}
	mod, ok := ForCommand(key)
	if !ok {
		return nil, reject(ReasonUnknownSchema, cmd.ID, "no responder serves command schema %s", key)
	}
	if mod.Retired != "" {
		return nil, reject(ReasonRetired, cmd.ID, "%s: %s", key, mod.Retired)
	}
	if err := validate("command data", key, inner, cmd.ID); err != nil {
		return nil, err
	}
	cmd.Schema = key
	cmd.Data = inner.Data
	cmd.Module = mod.Name
	if mod.Decode != nil {
		p, err := mod.Decode(key, inner.Data)
		if err != nil {
			return nil, reject(ReasonInvalidData, cmd.ID, "command data (%s): %v", key, err)
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
			return sd, fmt.Errorf("unexpected field %q next to \"schema\" and \"data\"", k)
		}
	}
	return sd, nil
}

// validate checks that sd names a bundled schema of the expected family (the
// zero family accepts any) and that its data is valid against it.
func validate(part string, family schemas.Key, sd selfDescribing, id string) error {
	key, err := schemas.ParseKey(sd.Schema)
	if err != nil {
		return reject(ReasonNotSelfDescribing, id, "%s.schema: %v", part, err)
	}
	if family.Vendor != "" && !family.SameRevision(key) {
		return reject(ReasonUnknownSchema, id, "%s.schema: %s is not %s", part, key, familyString(family))
	}
	if !schemas.Has(key) {
		return reject(ReasonUnknownSchema, id, "%s.schema: %s is not bundled", part, key)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(sd.Data))
	if err != nil {
		return reject(ReasonInvalidJSON, id, "%s.data: %v", part, err)
	}
	if err := schemas.ValidateJSON(key, v); err != nil {
		return reject(ReasonInvalidData, id, "%s: %v", part, err)
	}
	return nil
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
		return nil, reject(ReasonInvalidData, "", "envelope: %v", err)
	}
	created, err := ParseTimestamp(env.WhenCreated)
	if err != nil {
		return nil, reject(ReasonInvalidData, env.CommandID, "envelope.whenCreated: %v", err)
	}
	return &Command{
		ID:               env.CommandID,
		Created:          created,
		TimeToLiveMillis: env.Execution.TimeToLive,
		Tags:             env.Tags,
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
