package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

// maxRecordBytes is Kinesis's default record size limit (data plus
// partition key); streams may raise it, but a producer cannot tell.
const maxRecordBytes = 1 << 20

// Names of the Sauna command wrapper and envelope a bare command is wrapped
// in. Observers accept these exact versions whatever else is bundled.
const (
	commandSchema  = "iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0"
	envelopeSchema = "iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0"
)

// Item is one command of a request, ready to be put on the stream.
type Item struct {
	// Data is the record: the command as sent (compacted), or the bare
	// command wrapped in a new envelope.
	Data []byte
	Cmd  *responders.Command
}

// ItemError is one reason a request is refused. Field is a JSON Pointer
// into the command as the client sent it ("" for the whole command).
type ItemError struct {
	Index   int    `json:"index"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Decoder turns request bodies into validated items.
type Decoder struct {
	// MaxCommands bounds the commands of one NDJSON body.
	MaxCommands int
	// DefaultTTL is written into the envelope of wrapped commands; 0 writes
	// null (never expires).
	DefaultTTL time.Duration
	// Now and NewID default to time.Now and random version 4 UUIDs.
	Now   func() time.Time
	NewID func() string
	// PartitionKey, if set, is the partition key of every record; it counts
	// towards the record size limit.
	PartitionKey string
}

// Decode reads a body as one JSON command (ndjson false) or as
// newline-delimited commands. Either every command is valid and all items
// are returned, or none is and the errors say why, each naming the
// command's index (0-based, blank lines not counted).
func (d Decoder) Decode(body []byte, ndjson bool) ([]Item, []ItemError) {
	var parts [][]byte
	if ndjson {
		for line := range bytes.SplitSeq(body, []byte("\n")) {
			if line = bytes.TrimSpace(line); len(line) > 0 {
				parts = append(parts, line)
			}
		}
		if len(parts) > d.MaxCommands {
			return nil, []ItemError{{Index: d.MaxCommands, Message: fmt.Sprintf("more than %d commands in one request; split it", d.MaxCommands)}}
		}
	} else if b := bytes.TrimSpace(body); len(b) > 0 {
		parts = [][]byte{b}
	}
	if len(parts) == 0 {
		return nil, []ItemError{{Index: 0, Message: "no command in the body"}}
	}
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	newID := uuid.NewString
	if d.NewID != nil {
		newID = d.NewID
	}
	items := make([]Item, 0, len(parts))
	var errs []ItemError
	for i, raw := range parts {
		it, es := d.decodeOne(raw, now(), newID)
		for _, e := range es {
			e.Index = i
			errs = append(errs, e)
		}
		items = append(items, it)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return items, nil
}

// decodeOne validates one command exactly as an observer does when it
// reads the record: responders.Decode, then the time to live.
func (d Decoder) decodeOne(raw []byte, now time.Time, newID func() string) (Item, []ItemError) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil || top == nil {
		msg := "not a JSON object"
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			msg = "invalid JSON: " + err.Error()
		}
		return Item{}, []ItemError{{Message: msg}}
	}
	var uri string
	if err := json.Unmarshal(top["schema"], &uri); err != nil {
		return Item{}, []ItemError{{Field: "/schema", Message: "missing, or not an iglu URI string: a command is {\"schema\": \"iglu:...\", \"data\": {...}}"}}
	}
	key, err := schemas.ParseKey(uri)
	if err != nil {
		return Item{}, []ItemError{{Field: "/schema", Message: err.Error()}}
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, raw) // raw is valid JSON
	bare := !(key.Vendor == "com.snowplowanalytics.sauna.commands" && key.Name == "command")
	data := compact.Bytes()
	if bare {
		data = d.wrap(data, now, newID())
	}
	cmd, err := responders.Decode(data)
	if err != nil {
		return Item{}, rejectErrors(err, bare)
	}
	if cmd.Expired(now) {
		return Item{}, []ItemError{{Field: "/data/envelope/data/execution/timeToLive",
			Message: fmt.Sprintf("expired: time to live %d ms since %s has passed; observers would reject it",
				*cmd.TimeToLiveMillis, cmd.Created.Format(time.RFC3339Nano))}}
	}
	pk := d.PartitionKey
	if pk == "" {
		pk = cmd.ID // the record's key without the header
	}
	if n := len(data) + len(pk); n > maxRecordBytes {
		return Item{}, []ItemError{{Message: fmt.Sprintf("the record would be %d bytes, over the Kinesis record limit of %d", n, maxRecordBytes)}}
	}
	return Item{Data: data, Cmd: cmd}, nil
}

// wrap puts a bare command (compact JSON) in a new envelope.
func (d Decoder) wrap(inner []byte, now time.Time, id string) []byte {
	ttl := "null"
	if d.DefaultTTL > 0 {
		ttl = fmt.Sprint(d.DefaultTTL.Milliseconds())
	}
	var b bytes.Buffer
	b.Grow(len(inner) + 320)
	fmt.Fprintf(&b, `{"schema":%q,"data":{"envelope":{"schema":%q,"data":{"commandId":%q,"whenCreated":%q,"execution":{"semantics":"AT_LEAST_ONCE","timeToLive":%s},"tags":{}}},"command":`,
		commandSchema, envelopeSchema, id, now.UTC().Format("2006-01-02T15:04:05.000Z"), ttl)
	b.Write(inner)
	b.WriteString("}}")
	return b.Bytes()
}

// rejectErrors turns a decoding rejection into item errors whose fields
// point into what the client sent (the wrapper, or the bare command). The
// fields come from the rejection's typed pointer, never from its wording.
func rejectErrors(err error, bare bool) []ItemError {
	var rej *responders.RejectError
	if !errors.As(err, &rej) {
		return []ItemError{{Message: err.Error()}}
	}
	var ve *schemas.ValidationError
	if errors.As(rej.Err, &ve) {
		out := make([]ItemError, 0, len(ve.Causes))
		for _, c := range ve.Causes {
			out = append(out, ItemError{Field: sentPointer(rej.Pointer+c.Path, bare), Message: c.Message})
		}
		return out
	}
	return []ItemError{{Field: sentPointer(rej.Pointer, bare), Message: string(rej.Reason) + ": " + rej.Err.Error()}}
}

// sentPointer maps a JSON Pointer into the whole record to one into what the
// client sent: the same for a full command; for a bare command, which is the
// record's /data/command, the rest of the pointer, or "" (the whole command)
// for a place in the envelope the ingest wrote itself.
func sentPointer(ptr string, bare bool) string {
	if !bare {
		return ptr
	}
	rest, ok := strings.CutPrefix(ptr, "/data/command")
	if !ok || rest != "" && rest[0] != '/' {
		return ""
	}
	return rest
}
