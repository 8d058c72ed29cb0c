package kinesis

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go"
	smithytime "github.com/aws/smithy-go/time"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// recordsProtocol is the Kinesis client's protocol (awsJson 1.1) with the
// successful GetRecords answers decoded here. The SDK reads an answer into
// a pooled buffer that starts small and doubles until the body fits, and
// drops it again when it exceeds 64 KiB: a batch of 10,000 records is a
// body of several MB, for which it allocates and clears about twice that in
// fresh memory, every read. That, the page faults it takes and the garbage
// it leaves cost as much CPU as decoding the records. Here the body is read
// once into a buffer of its Content-Length, reused across reads while the
// garbage collector keeps it (sync.Pool), and decoded in one pass. An answer
// that is not plain (no Content-Length, a null or unknown kind of value, a
// duplicated member, child shards, anything malformed) is handed to the
// SDK's own decoder, so the result is always what the SDK would make of it.
type recordsProtocol struct {
	smithyhttp.ClientProtocol
	bufs sync.Pool // *[]byte
}

// maxRecordsBody bounds the bodies decoded here: 10 MB of data is at most
// 13.4 MB of base64, plus the rest of 10,000 records.
const maxRecordsBody = 32 << 20

// withRecordsProtocol installs recordsProtocol on a Kinesis client.
func withRecordsProtocol(o *kds.Options) {
	o.Protocol = &recordsProtocol{ClientProtocol: o.Protocol}
}

func (p *recordsProtocol) DeserializeResponse(ctx context.Context, schema *smithy.OperationSchema, reg *smithy.TypeRegistry,
	resp *smithyhttp.Response, out smithy.Deserializable) error {
	o, ok := out.(*kds.GetRecordsOutput)
	if !ok || resp.StatusCode < 200 || resp.StatusCode >= 300 || resp.ContentLength <= 0 || resp.ContentLength > maxRecordsBody {
		return p.sdkDeserialize(ctx, schema, reg, resp, out)
	}
	bp, _ := p.bufs.Get().(*[]byte)
	if bp == nil || cap(*bp) < int(resp.ContentLength) {
		b := make([]byte, resp.ContentLength)
		bp = &b
	}
	body := (*bp)[:resp.ContentLength]
	defer p.bufs.Put(bp)
	if _, err := io.ReadFull(resp.Body, body); err != nil {
		return &smithy.DeserializationError{Err: err}
	}
	var dec recordsAnswer
	if err := dec.decode(body); err != nil {
		// Closing it still closes the connection's body, which returns the
		// connection to the client's pool.
		resp.Body = readCloser{bytes.NewReader(body), resp.Body}
		return p.sdkDeserialize(ctx, schema, reg, resp, out)
	}
	o.Records, o.NextShardIterator, o.MillisBehindLatest = dec.Records, dec.NextShardIterator, dec.MillisBehindLatest
	return nil
}

// sdkDeserialize is the SDK's decoder, with its panics made errors: it
// panics on some malformed answers (a record's ApproximateArrivalTimestamp
// of "NaN"), and a panic in the KCL's reading goroutine would end the
// whole process, every observer with it, where an error fails one read,
// which the KCL retries.
func (p *recordsProtocol) sdkDeserialize(ctx context.Context, schema *smithy.OperationSchema, reg *smithy.TypeRegistry,
	resp *smithyhttp.Response, out smithy.Deserializable) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &smithy.DeserializationError{Err: fmt.Errorf("the SDK's decoder failed on the answer: %v", r)}
		}
	}()
	return p.ClientProtocol.DeserializeResponse(ctx, schema, reg, resp, out)
}

// readCloser reads one thing and closes another.
type readCloser struct {
	io.Reader
	io.Closer
}

// recordsAnswer is what recordsProtocol decodes of an answer.
type recordsAnswer struct {
	Records            []types.Record
	NextShardIterator  *string
	MillisBehindLatest *int64
}

// errNotPlain sends an answer to the SDK's decoder.
var errNotPlain = errors.New("not a plain GetRecords answer")

// decode reads a GetRecords answer: an object of Records, NextShardIterator
// and MillisBehindLatest (other members are skipped, as the SDK skips
// them, except ChildShards, left to the SDK).
func (o *recordsAnswer) decode(b []byte) error {
	r := reader{b: b}
	var seen uint8
	err := r.object(func(name []byte) error {
		var bit uint8
		switch string(name) {
		case "Records":
			bit = 1
			if err := r.records(&o.Records, len(b)); err != nil {
				return err
			}
		case "NextShardIterator":
			bit = 2
			s, err := r.str()
			if err != nil {
				return err
			}
			o.NextShardIterator = &s
		case "MillisBehindLatest":
			bit = 4
			n, err := r.int64()
			if err != nil {
				return err
			}
			o.MillisBehindLatest = &n
		case "ChildShards":
			return errNotPlain
		default:
			return r.skip(0)
		}
		if seen&bit != 0 {
			return errNotPlain
		}
		seen |= bit
		return nil
	})
	if err != nil {
		return err
	}
	if r.ws(); r.i != len(r.b) {
		return errNotPlain
	}
	return nil
}

// reader is a cursor in a JSON document; every method skips the whitespace
// before what it reads.
type reader struct {
	b []byte
	i int
}

func (r *reader) ws() {
	for r.i < len(r.b) {
		switch r.b[r.i] {
		case ' ', '\t', '\n', '\r':
			r.i++
		default:
			return
		}
	}
}

func (r *reader) byte(c byte) bool {
	r.ws()
	if r.i < len(r.b) && r.b[r.i] == c {
		r.i++
		return true
	}
	return false
}

// object reads an object, calling member for each member name with the
// cursor before its value, which member must read.
func (r *reader) object(member func(name []byte) error) error {
	if !r.byte('{') {
		return errNotPlain
	}
	if r.byte('}') {
		return nil
	}
	for {
		name, escaped, err := r.rawString()
		if err != nil || escaped || !r.byte(':') {
			return errNotPlain
		}
		if err := member(name); err != nil {
			return err
		}
		if r.byte(',') {
			continue
		}
		if r.byte('}') {
			return nil
		}
		return errNotPlain
	}
}

func (r *reader) records(out *[]types.Record, size int) error {
	if !r.byte('[') {
		return errNotPlain
	}
	// About the size of one record of a small command: the slice is
	// allocated once for a typical batch.
	n := min(10000, size/256+1)
	recs := make([]types.Record, 0, n)
	// The records' strings and times are pointers: they point into slabs
	// of the batch rather than each into an allocation of its own.
	var strs []string
	var times []time.Time
	str := func(v string) *string {
		if len(strs) == cap(strs) {
			strs = make([]string, 0, 2*n)
		}
		strs = append(strs, v)
		return &strs[len(strs)-1]
	}
	if r.byte(']') {
		*out = recs
		return nil
	}
	for {
		var rec types.Record
		var seen uint8
		err := r.object(func(name []byte) error {
			var bit uint8
			switch string(name) {
			case "SequenceNumber":
				bit = 1
				s, err := r.str()
				if err != nil {
					return err
				}
				rec.SequenceNumber = str(s)
			case "PartitionKey":
				bit = 2
				s, err := r.str()
				if err != nil {
					return err
				}
				rec.PartitionKey = str(s)
			case "Data":
				bit = 4
				d, err := r.blob()
				if err != nil {
					return err
				}
				rec.Data = d
			case "ApproximateArrivalTimestamp":
				bit = 8
				f, err := r.float()
				if err != nil {
					return err
				}
				if len(times) == cap(times) {
					times = make([]time.Time, 0, n)
				}
				times = append(times, smithytime.ParseEpochSeconds(f))
				rec.ApproximateArrivalTimestamp = &times[len(times)-1]
			case "EncryptionType":
				bit = 16
				s, err := r.str()
				if err != nil {
					return err
				}
				rec.EncryptionType = types.EncryptionType(s)
			default:
				return r.skip(0)
			}
			if seen&bit != 0 {
				return errNotPlain
			}
			seen |= bit
			return nil
		})
		if err != nil {
			return err
		}
		recs = append(recs, rec)
		if r.byte(',') {
			continue
		}
		if r.byte(']') {
			*out = recs
			return nil
		}
		return errNotPlain
	}
}

// rawString reads a string and returns its bytes between the quotes, and
// whether they hold an escape. A control character is left to the SDK.
// Escapes are checked by the callers that keep an escaped string (str has
// encoding/json unescape it, skip checks them), which keeps this loop, run
// over every string of an answer, as short as it can be.
func (r *reader) rawString() (raw []byte, escaped bool, err error) {
	if !r.byte('"') {
		return nil, false, errNotPlain
	}
	start := r.i
	for r.i < len(r.b) {
		switch c := r.b[r.i]; {
		case c == '"':
			r.i++
			return r.b[start : r.i-1], escaped, nil
		case c == '\\':
			escaped = true
			r.i += 2
			continue
		case c < 0x20:
			return nil, false, errNotPlain
		}
		r.i++
	}
	return nil, false, errNotPlain
}

// validEscapes reports whether every escape in the bytes of a string is one
// of JSON's.
func validEscapes(raw []byte) bool {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		if i+1 >= len(raw) {
			return false
		}
		switch raw[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i++
		case 'u':
			if i+6 > len(raw) {
				return false
			}
			for _, c := range raw[i+2 : i+6] {
				if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
					return false
				}
			}
			i += 5
		default:
			return false
		}
	}
	return true
}

// str reads a string; one with escapes is unescaped as encoding/json does
// (the SDK's parser is its copy).
func (r *reader) str() (string, error) {
	start := r.i
	raw, escaped, err := r.rawString()
	if err != nil {
		return "", err
	}
	if !escaped {
		// As the SDK: the bytes as they are, even when not UTF-8.
		return string(raw), nil
	}
	var s string
	if err := json.Unmarshal(r.b[skipWS(r.b, start):r.i], &s); err != nil {
		return "", errNotPlain
	}
	return s, nil
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// blob reads a base64 string.
func (r *reader) blob() ([]byte, error) {
	raw, escaped, err := r.rawString()
	if err != nil || escaped {
		return nil, errNotPlain
	}
	d := make([]byte, base64.StdEncoding.DecodedLen(len(raw)))
	n, err := base64.StdEncoding.Decode(d, raw)
	if err != nil {
		return nil, errNotPlain
	}
	return d[:n], nil
}

// number returns the bytes of a JSON number.
func (r *reader) number() ([]byte, error) {
	r.ws()
	start := r.i
	for r.i < len(r.b) {
		c := r.b[r.i]
		if c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			r.i++
			continue
		}
		break
	}
	if r.i == start {
		return nil, errNotPlain
	}
	return r.b[start:r.i], nil
}

func (r *reader) int64() (int64, error) {
	n, err := r.number()
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil || !json.Valid(n) {
		return 0, errNotPlain
	}
	return v, nil
}

func (r *reader) float() (float64, error) {
	n, err := r.number()
	if err != nil {
		return 0, err
	}
	if !json.Valid(n) {
		return 0, errNotPlain
	}
	v, err := strconv.ParseFloat(string(n), 64)
	if err != nil {
		return 0, errNotPlain
	}
	return v, nil
}

// maxSkipDepth bounds the nesting of a member skipped.
const maxSkipDepth = 64

// skip reads over any value but null (a null member is left to the SDK).
func (r *reader) skip(depth int) error {
	if depth > maxSkipDepth {
		return errNotPlain
	}
	r.ws()
	if r.i >= len(r.b) {
		return errNotPlain
	}
	switch c := r.b[r.i]; {
	case c == '"':
		// The SDK fails on an invalid escape even in a member it skips.
		raw, escaped, err := r.rawString()
		if err == nil && escaped && !validEscapes(raw) {
			return errNotPlain
		}
		return err
	case c == '{':
		return r.object(func([]byte) error { return r.skip(depth + 1) })
	case c == '[':
		r.i++
		if r.byte(']') {
			return nil
		}
		for {
			if err := r.skip(depth + 1); err != nil {
				return err
			}
			if r.byte(',') {
				continue
			}
			if r.byte(']') {
				return nil
			}
			return errNotPlain
		}
	case bytes.HasPrefix(r.b[r.i:], []byte("true")):
		r.i += 4
		return nil
	case bytes.HasPrefix(r.b[r.i:], []byte("false")):
		r.i += 5
		return nil
	default:
		n, err := r.number()
		if err != nil || !json.Valid(n) {
			return errNotPlain
		}
		return nil
	}
}
