package responders

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/big"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"github.com/sauna-io/sauna/schemas"
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
	return digestOf(schema, v), nil
}

// digestOf is the Digest of schema and the decoded data v. The canonical
// form streams into the hash: it is never built whole.
func digestOf(schema string, v any) string {
	w := canonicalPool.Get().(*canonicalWriter)
	w.h.Reset()
	w.n = 0
	w.putString(`{"schema":`)
	w.writeString(schema)
	w.putString(`,"data":`)
	w.write(v)
	w.putByte('}')
	w.flush()
	// In w, the sum does not escape to the heap through the hash's
	// interface.
	w.h.Sum(w.sum[:0])
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], w.sum[:])
	clear(w.keys[:cap(w.keys)])
	w.keys = w.keys[:0]
	w.order = w.order[:0]
	canonicalPool.Put(w)
	return string(out[:])
}

// canonicalWriter buffers the canonical form on its way into the hash.
type canonicalWriter struct {
	h   hash.Hash
	sum [sha256.Size]byte
	buf [512]byte
	n   int
	// keys holds the sorted member names of the objects being written, the
	// innermost last; order holds the indexes, in name order, of the
	// members of objects given as Members (sorting them moves no pointers).
	keys  []string
	order []int
}

var canonicalPool = sync.Pool{New: func() any { return &canonicalWriter{h: sha256.New()} }}

func (w *canonicalWriter) flush() {
	w.h.Write(w.buf[:w.n])
	w.n = 0
}

func (w *canonicalWriter) putByte(c byte) {
	if w.n == len(w.buf) {
		w.flush()
	}
	w.buf[w.n] = c
	w.n++
}

func (w *canonicalWriter) putString(s string) {
	for len(s) > 0 {
		if w.n == len(w.buf) {
			w.flush()
		}
		k := copy(w.buf[w.n:], s)
		w.n += k
		s = s[k:]
	}
}

// Digest is the digest of the command's inner schema and data.
func (c *Command) Digest() (string, error) {
	if c.hasTree {
		return digestOf(c.SchemaURI(), c.dataTree), nil
	}
	return Digest(c.SchemaURI(), c.Data)
}

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

func (w *canonicalWriter) write(v any) {
	switch x := v.(type) {
	case nil:
		w.putString("null")
	case bool:
		if x {
			w.putString("true")
		} else {
			w.putString("false")
		}
	case json.Number:
		w.writeNumber(string(x))
	case *json.Number:
		// treeParser's numbers and strings.
		w.writeNumber(string(*x))
	case string:
		w.writeString(x)
	case *string:
		w.writeString(*x)
	case []any:
		w.putByte('[')
		for i, e := range x {
			if i > 0 {
				w.putByte(',')
			}
			w.write(e)
		}
		w.putByte(']')
	case map[string]any:
		base := len(w.keys)
		for k := range x {
			w.keys = append(w.keys, k)
		}
		// Members of nested objects are appended after these, so keys stays
		// valid whatever becomes of w.keys meanwhile.
		keys := w.keys[base:]
		// Byte order of UTF-8 is code point order.
		slices.Sort(keys)
		w.putByte('{')
		for i, k := range keys {
			if i > 0 {
				w.putByte(',')
			}
			w.writeString(k)
			w.putByte(':')
			w.write(x[k])
		}
		w.putByte('}')
		w.keys = w.keys[:base]
	case *schemas.Members:
		// treeParser's objects: their names are unique.
		ms := *x
		base := len(w.order)
		for i := range ms {
			w.order = append(w.order, i)
		}
		order := w.order[base:]
		slices.SortFunc(order, func(a, b int) int { return strings.Compare(ms[a].Name, ms[b].Name) })
		w.putByte('{')
		for i, at := range order {
			if i > 0 {
				w.putByte(',')
			}
			w.writeString(ms[at].Name)
			w.putByte(':')
			w.write(ms[at].Value)
		}
		w.putByte('}')
		w.order = w.order[:base]
	default:
		// encoding/json with UseNumber, and treeParser, produce nothing else.
		panic(fmt.Sprintf("command digest: unexpected %T", v))
	}
}

// writeString escapes only what JSON requires, so that each string has one
// spelling.
func (w *canonicalWriter) writeString(s string) {
	const hexDigits = "0123456789abcdef"
	w.putByte('"')
	run := 0
	for i := 0; ; i++ {
		// Eight bytes at a time up to the first to escape, then one at a
		// time in the last word.
		for i+8 <= len(s) {
			if m := mustEscape(stringWord(s[i:])); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		for i < len(s) && s[i] != '"' && s[i] != '\\' && s[i] >= 0x20 {
			i++
		}
		if i == len(s) {
			break
		}
		c := s[i]
		w.putString(s[run:i])
		run = i + 1
		if c < 0x20 {
			w.putString(`\u00`)
			w.putByte(hexDigits[c>>4])
			w.putByte(hexDigits[c&0xf])
		} else {
			w.putByte('\\')
			w.putByte(c)
		}
	}
	w.putString(s[run:])
	w.putByte('"')
}

// stringWord is the first eight bytes of s as a little-endian word: one
// load, which the compiler makes of these eight.
func stringWord(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// writeCanonicalNumber writes a JSON number as its exact decimal value in
// one normal form: an optional "-", the significant digits without leading
// or trailing zeros, "e" and the exponent ("15e-1" for 1.50; "0" for zero).
// The exponent is arbitrary-precision: a valid JSON number may carry any.
func (w *canonicalWriter) writeNumber(s string) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, expPart := s, ""
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant, expPart = s[:i], strings.TrimPrefix(s[i+1:], "+")
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	var scratch [MaxNumberLen]byte
	all := append(append(scratch[:0], intPart...), frac...)
	digits := bytes.TrimLeft(all, "0")
	trimmed := bytes.TrimRight(digits, "0")
	if len(trimmed) == 0 {
		w.putByte('0')
		return
	}
	// The exponent of the digits as they are written, less what the
	// fraction and the trimmed zeros shift it by.
	shift := int64(len(digits)-len(trimmed)) - int64(len(frac))
	if neg {
		w.putByte('-')
	}
	w.putString(unsafeString(trimmed))
	w.putByte('e')
	var num [24]byte
	// Any exponent of up to 18 digits fits an int64 with the shift added.
	if len(strings.TrimPrefix(expPart, "-")) <= 18 {
		exp := int64(0)
		if expPart != "" {
			// json.Number holds a valid JSON number: this cannot fail.
			exp, _ = strconv.ParseInt(expPart, 10, 64)
		}
		w.putString(unsafeString(strconv.AppendInt(num[:0], exp+shift, 10)))
		return
	}
	// A valid JSON number may carry any exponent.
	exp, _ := new(big.Int).SetString(expPart, 10)
	exp.Add(exp, big.NewInt(shift))
	w.putString(exp.String())
}

// unsafeString views b as a string for the length of a call that does not
// keep it.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
