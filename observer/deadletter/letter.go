// Package deadletter is an observer's dead-letter stream: records that could
// not be executed (rejected, failed for good, or out of retry budget) are
// written to a Kinesis stream as self-describing JSON dead letters
// (iglu:io.sauna.observers/dead_letter/jsonschema/1-0-0) that carry where the
// record came from, why it was given up, and its original bytes. [Replay]
// puts commands back onto a stream: from a dead-letter stream (each letter
// unwrapped to its original record) or from a time window of the command
// stream itself.
package deadletter

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

// SchemaV100 is the schema of the dead letters this package writes.
var SchemaV100 = schemas.Key{Vendor: "io.sauna.observers", Name: "dead_letter", Format: "jsonschema", Model: 1, Revision: 0, Addition: 0}

// maxErrorLen bounds Letter.Error: a dead letter describes a failure, it
// does not archive whole vendor responses.
const maxErrorLen = 4096

// ErrNotALetter is wrapped by every error of Decode.
var ErrNotALetter = errors.New("not a dead letter")

// Letter is one dead letter. Empty strings and zero times stand for the
// schema's nulls.
type Letter struct {
	Observer       string
	Stream         string // the stream the record was read from
	Shard          string
	SequenceNumber string
	PartitionKey   string

	CommandID     string // empty when the envelope was not readable
	CommandSchema string // the inner command's Iglu URI; empty when not readable
	Responder     string // empty when no responder was chosen

	Reason   string // verdict.RejectedBecause(reason), verdict.FailedPermanently or verdict.RetryBudgetExhausted
	Error    string // human-readable detail; never secrets (truncated to 4 KiB)
	Attempts int

	FirstAttempt, LastAttempt time.Time // zero when the responder never ran
	DeadLetteredAt            time.Time

	// Record is the original record's data. After Decode it is nil when the
	// record was too large to be kept (RecordSize still says how large).
	Record []byte
	// RecordSize is the original data's length. Encode takes len(Record)
	// when Record is not nil.
	RecordSize int
}

type wire struct {
	Observer       string  `json:"observer"`
	Stream         string  `json:"stream"`
	Shard          string  `json:"shard"`
	SequenceNumber string  `json:"sequenceNumber"`
	PartitionKey   string  `json:"partitionKey"`
	CommandID      *string `json:"commandId"`
	CommandSchema  *string `json:"commandSchema"`
	Responder      *string `json:"responder"`
	Reason         string  `json:"reason"`
	Error          string  `json:"error"`
	Attempts       int     `json:"attempts"`
	FirstAttempt   *string `json:"firstAttempt"`
	LastAttempt    *string `json:"lastAttempt"`
	DeadLetteredAt string  `json:"deadLetteredAt"`
	Record         *string `json:"record"`
	RecordSize     int     `json:"recordSize"`
}

type envelope struct {
	Schema string          `json:"schema"`
	Data   json.RawMessage `json:"data"`
}

// Encode renders l as a self-describing JSON dead letter.
func Encode(l Letter) ([]byte, error) {
	switch {
	case l.Reason == "":
		return nil, errors.New("dead letter: empty reason")
	case l.DeadLetteredAt.IsZero():
		return nil, errors.New("dead letter: no deadLetteredAt time")
	case l.Attempts < 0:
		return nil, fmt.Errorf("dead letter: negative attempts %d", l.Attempts)
	}
	w := wire{
		Observer:       l.Observer,
		Stream:         l.Stream,
		Shard:          l.Shard,
		SequenceNumber: l.SequenceNumber,
		PartitionKey:   l.PartitionKey,
		CommandID:      nullable(l.CommandID),
		CommandSchema:  nullable(l.CommandSchema),
		Responder:      nullable(l.Responder),
		Reason:         l.Reason,
		Error:          truncate(l.Error, maxErrorLen),
		Attempts:       l.Attempts,
		FirstAttempt:   nullableTime(l.FirstAttempt),
		LastAttempt:    nullableTime(l.LastAttempt),
		DeadLetteredAt: formatTime(l.DeadLetteredAt),
		RecordSize:     l.RecordSize,
	}
	if l.Record != nil {
		enc := base64.StdEncoding.EncodeToString(l.Record)
		w.Record = &enc
		w.RecordSize = len(l.Record)
	}
	data, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("dead letter: %w", err)
	}
	return json.Marshal(envelope{Schema: SchemaV100.String(), Data: data})
}

// Decode reads a dead letter, validating it against its bundled schema. Any
// other record gives an error wrapping ErrNotALetter.
func Decode(b []byte) (Letter, error) {
	var env map[string]json.RawMessage
	if err := json.Unmarshal(b, &env); err != nil {
		return Letter{}, notALetter("not a JSON object")
	}
	var uri string
	if err := json.Unmarshal(env["schema"], &uri); err != nil || uri == "" {
		return Letter{}, notALetter(`no "schema" string`)
	}
	data, ok := env["data"]
	if !ok || len(env) != 2 {
		return Letter{}, notALetter(`want exactly "schema" and "data"`)
	}
	key, err := schemas.ParseKey(uri)
	if err != nil {
		return Letter{}, notALetter("schema: %v", err)
	}
	if key.Vendor != SchemaV100.Vendor || key.Name != SchemaV100.Name || key.Format != SchemaV100.Format || key.Model != SchemaV100.Model {
		return Letter{}, notALetter("schema %s is not a dead letter schema", key)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var inst any
	if err := dec.Decode(&inst); err != nil {
		return Letter{}, notALetter("data: %v", err)
	}
	if err := schemas.ValidateJSON(key, inst); err != nil {
		return Letter{}, notALetter("%v", err)
	}
	var w wire
	if err := json.Unmarshal(data, &w); err != nil {
		return Letter{}, notALetter("data: %v", err)
	}
	l := Letter{
		Observer:       w.Observer,
		Stream:         w.Stream,
		Shard:          w.Shard,
		SequenceNumber: w.SequenceNumber,
		PartitionKey:   w.PartitionKey,
		CommandID:      deref(w.CommandID),
		CommandSchema:  deref(w.CommandSchema),
		Responder:      deref(w.Responder),
		Reason:         w.Reason,
		Error:          w.Error,
		Attempts:       w.Attempts,
		RecordSize:     w.RecordSize,
	}
	times := []struct {
		name string
		in   *string
		out  *time.Time
	}{
		{"firstAttempt", w.FirstAttempt, &l.FirstAttempt},
		{"lastAttempt", w.LastAttempt, &l.LastAttempt},
		{"deadLetteredAt", &w.DeadLetteredAt, &l.DeadLetteredAt},
	}
	for _, ts := range times {
		if ts.in == nil {
			continue
		}
		v, err := responders.ParseTimestamp(*ts.in)
		if err != nil {
			return Letter{}, notALetter("%s: %v", ts.name, err)
		}
		*ts.out = v.UTC()
	}
	if w.Record != nil {
		raw, err := base64.StdEncoding.DecodeString(*w.Record)
		if err != nil {
			return Letter{}, notALetter("record: %v", err)
		}
		l.Record = raw
	}
	return l, nil
}

func notALetter(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotALetter, fmt.Sprintf(format, args...))
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullableTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := formatTime(t)
	return &s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
