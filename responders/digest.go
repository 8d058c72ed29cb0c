package responders

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strings"
	"unicode/utf8"
)

// Digest identifies what a command asks: the inner command's schema URI and
// data. A command is identified for de-duplication by its commandId and this
// digest, so that two commands that share an id but ask different things
// are both run, while a redelivery of one command is recognised whatever its
// producer's serialiser did to it. The envelope (whenCreated, execution,
// tags) is not part of it.
//
// The data is canonicalised first, so these do not change the digest:
//   - whitespace, and the order of object members;
//   - how a string is escaped ("\u00e9" and "é" are the same string);
//   - how a number is written, as long as its exact decimal value is the
//     same: 1, 1.0, 1.00 and 10e-1 are equal, and so are -0 and 0. No
//     rounding happens: 0.1 and 0.10000000000000001 differ, as do two
//     integers beyond float64's precision.
//
// An object member given twice counts once, with its last value, which is
// what the responders decode. Anything else, including the type of a value
// ("1" and 1 differ) and the order of array elements, changes the digest.
//
// The result is the lowercase hex SHA-256 of the canonical form.
func Digest(schema string, data json.RawMessage) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("command digest: data: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "", errors.New("command digest: data: trailing data after the JSON value")
	}
	var b bytes.Buffer
	b.WriteString(`{"schema":`)
	writeCanonicalString(&b, schema)
	b.WriteString(`,"data":`)
	writeCanonical(&b, v)
	b.WriteByte('}')
	sum := sha256.Sum256(b.Bytes())
	return hex.EncodeToString(sum[:]), nil
}

// Digest is the digest of the command's inner schema and data.
func (c *Command) Digest() (string, error) { return Digest(c.Schema.String(), c.Data) }

// Identify reads a record's commandId and the Digest of its inner command,
// without validating the record against any schema or needing a responder
// for it: this is how tools that handle records they do not execute
// (replay, ingest) name a command the way the outcome table does.
func Identify(raw []byte) (commandID, digest string, err error) {
	var rec struct {
		Data struct {
			Envelope struct {
				Data struct {
					CommandID *string `json:"commandId"`
				} `json:"data"`
			} `json:"envelope"`
			Command *selfDescribing `json:"command"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		return "", "", fmt.Errorf("identify command: %w", err)
	}
	id := rec.Data.Envelope.Data.CommandID
	if id == nil || *id == "" {
		return "", "", errors.New("identify command: no data.envelope.data.commandId")
	}
	inner := rec.Data.Command
	if inner == nil || inner.Schema == "" || inner.Data == nil {
		return *id, "", errors.New("identify command: data.command has no schema and data")
	}
	d, err := Digest(inner.Schema, inner.Data)
	return *id, d, err
}

func writeCanonical(b *bytes.Buffer, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case json.Number:
		writeCanonicalNumber(b, string(x))
	case string:
		writeCanonicalString(b, x)
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanonical(b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		// Byte order of UTF-8 is code point order.
		slices.Sort(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanonicalString(b, k)
			b.WriteByte(':')
			writeCanonical(b, x[k])
		}
		b.WriteByte('}')
	default:
		// encoding/json with UseNumber produces nothing else.
		panic(fmt.Sprintf("command digest: unexpected %T", v))
	}
}

// writeCanonicalString escapes only what JSON requires, so that each string
// has one spelling.
func writeCanonicalString(b *bytes.Buffer, s string) {
	const hexDigits = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
			i++
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
			i++
		default:
			_, size := utf8.DecodeRuneInString(s[i:])
			b.WriteString(s[i : i+size])
			i += size
		}
	}
	b.WriteByte('"')
}

// writeCanonicalNumber writes a JSON number as its exact decimal value in
// one normal form: an optional "-", the significant digits without leading
// or trailing zeros, "e" and the exponent ("15e-1" for 1.50; "0" for zero).
// The exponent is arbitrary-precision: a valid JSON number may carry any.
func writeCanonicalNumber(b *bytes.Buffer, s string) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, expPart, _ := strings.Cut(strings.ToLower(s), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	trimmed := strings.TrimRight(digits, "0")
	if trimmed == "" {
		b.WriteByte('0')
		return
	}
	exp := new(big.Int)
	if expPart != "" {
		// json.Number holds a valid JSON number: this cannot fail.
		exp.SetString(strings.TrimPrefix(expPart, "+"), 10)
	}
	exp.Sub(exp, big.NewInt(int64(len(frac))))
	exp.Add(exp, big.NewInt(int64(len(digits)-len(trimmed))))
	if neg {
		b.WriteByte('-')
	}
	b.WriteString(trimmed)
	b.WriteByte('e')
	b.WriteString(exp.String())
}
