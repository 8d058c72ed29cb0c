package responders

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/sauna-io/sauna/schemas"
)

// Every bundled command schema without a module in this test binary gets a
// stand-in, so that the real commands in the repository's testdata reach
// their responder's schema. Slack and HipChat have theirs in command_test.go,
// whose init runs after this one.
func init() {
	for _, k := range schemas.Keys() {
		if k.Format != "jsonschema" || !strings.HasSuffix(k.Vendor, ".commands") {
			continue
		}
		switch k.Vendor {
		case commandFamily.Vendor, "com.slack.sauna.commands", "com.hipchat.sauna.commands":
			continue
		}
		if _, ok := ForCommand(k); ok {
			continue
		}
		Register(Module{
			Name:     "fake-" + k.Vendor + "/" + k.Name + "/" + k.Format,
			Commands: []schemas.Key{k},
			Decode: func(_ schemas.Key, data json.RawMessage) (any, error) {
				var v any
				err := json.Unmarshal(data, &v)
				return v, err
			},
			New: func(Config) (Responder, error) { return nil, nil },
		})
	}
}

// validCommands are the complete commands kept as testdata in the repository.
func validCommands(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, pattern := range []string{"*/testdata/*.json", "../schemas/testdata/commands/*.json", "../testdata/commands/*.json"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), "sauna.commands/command/jsonschema") {
				continue
			}
			if _, err := decodeChecked(b); err == nil {
				out[f] = b
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("only %d valid commands found in testdata", len(out))
	}
	return out
}

// checkSame fails when decodeFast accepts raw but decodes it differently
// from decodeChecked, or accepts what decodeChecked rejects.
func checkSame(t testing.TB, raw []byte) bool {
	t.Helper()
	fast, ferr := decodeFast(raw)
	if ferr == errSlowPath {
		return false
	}
	slow, err := decodeChecked(raw)
	if ferr != nil {
		var fr, sr *RejectError
		// The library's own error tree lists causes in map order; the
		// message sorts them.
		if !errors.As(ferr, &fr) || !errors.As(err, &sr) || fr.Reason != sr.Reason || fr.CommandID != sr.CommandID || ferr.Error() != err.Error() {
			t.Fatalf("decodeFast rejected with %v, decodeChecked with %v:\n%s", ferr, err, raw)
		}
		return true
	}
	if err != nil {
		t.Fatalf("decodeFast accepted what decodeChecked rejects (%v):\n%s", err, raw)
	}
	// decodeFast keeps the data it validated for the digest; computed
	// from it, the digest is the one of the data's second parse.
	if !fast.hasTree || slow.hasTree {
		t.Fatalf("decodeFast kept no data tree, or decodeChecked kept one:\n%s", raw)
	}
	fd, ferr := fast.Digest()
	sd, serr := slow.Digest()
	if ferr != nil || serr != nil || fd != sd {
		t.Fatalf("digests differ: %s (%v) from the tree, %s (%v) from the data:\n%s", fd, ferr, sd, serr, raw)
	}
	if fast.uri != fast.Schema.String() {
		t.Fatalf("decodeFast kept the schema URI %q for %s", fast.uri, fast.Schema)
	}
	// Tags are kept as parsed, and built on demand.
	if ft, st := fast.Tags(), slow.Tags(); !reflect.DeepEqual(ft, st) || (ft == nil) != (st == nil) {
		t.Fatalf("decodeFast gives tags %#v, decodeChecked %#v:\n%s", ft, st, raw)
	}
	fast.dataTree, fast.hasTree, fast.uri = nil, false, ""
	fast.tagMembers, fast.tags, slow.tags = nil, nil, nil
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("decodeFast and decodeChecked disagree:\n%#v\n%#v\n%s", fast, slow, raw)
	}
	return true
}

func TestDecodeFastTakesValidCommands(t *testing.T) {
	for name, raw := range validCommands(t) {
		if !checkSame(t, raw) {
			t.Errorf("%s: a valid command took the slow path", name)
		}
	}
}

// TestDecodeFastMutations damages valid commands in many small ways, and
// varies them in the ways decoding is most likely to differ.
func TestDecodeFastMutations(t *testing.T) {
	base := `{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0","data":{"envelope":` +
		`{"schema":"iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0",` + "\n" +
		`"data":{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29t10:15:00.5z",` +
		`"execution":{"semantics":"AT_LEAST_ONCE","timeToLive":1200000},"tags":{"source":"test"}}},"command":` +
		`{"schema":"iglu:io.sauna.commands/webhook/jsonschema/1-0-0","data":{"body":{"a":[1,-2.5e3,true,false,null,{}],"b":"x"},"headers":{"X-A":"b"}}}}}`
	if !checkSame(t, []byte(base)) {
		t.Fatalf("base command took the slow path:\n%s", base)
	}
	variants := []struct{ old, new string }{
		{`"commandId"`, `"CommandId"`},
		{`"commandId"`, `"commandID"`},
		{`"tags"`, `"tagſ"`},
		{`"tags"`, `"tags":null,"tags"`},
		{`"tags":{`, `"tags":{"a":"1"},"tags":{`},
		{`"source":"test"`, `"source":null`},
		{`"source":"test"`, `"source":"\ud800 \u00e9\n"`},
		{`"source":"test"`, `"sou\u0072ce":"test"`},
		{`,"tags":{"source":"test"}`, ``},
		{`"tags":{"source":"test"}`, `"tags":null`},
		{`"1200000"`, `1.0`},
		{`1200000`, `1.0`},
		{`1200000`, `1e3`},
		{`1200000`, `-0`},
		{`1200000`, `9223372036854775808`},
		{`1200000`, `"5"`},
		{`1200000`, `null`},
		{`"timeToLive"`, `"TimeToLive"`},
		{`"semantics"`, `"Semantics"`},
		{`"execution":{`, `"execution":{"timeToLive":1,`},
		{`"data":{"commandId"`, `"data":{"commandId":"x","commandId"`},
		{`"data":{"commandId"`, `"data":{"x":1,"commandId"`},
		{`"envelope":`, `"Envelope":`},
		{`"command":{`, `"command":null,"command":{`},
		{`,"command":`, ` , "command" : `},
		{`"schema":"iglu:io.sauna`, `"schema":"iglu:io.sauna`},
		{`"schema":"iglu:io.sauna`, `"schema":"\u0069glu:io.sauna`},
		{`webhook/jsonschema/1-0-0","data"`, `webhook/jsonschema/1-0-0","data":1,"data"`},
		{`"b":"x"`, `"b":"x","b":"y"`},
		{`"b":"x"`, `"b":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`},
		{`"b":"x"`, `"b":01`},
		{`"b":"x"`, `"b":1.`},
		{`"b":"x"`, `"b":-`},
		{`"b":"x"`, `"b":1e+`},
		{`"b":"x"`, `"b":"\x"`},
		{`"b":"x"`, `"b":"\u12"`},
		{`"b":"x"`, "\"b\":\"\t\""},
		{`"b":"x"`, `"b":tru`},
		{`"b":"x"`, `"b":nul`},
		{`"b":"x"`, `"b":[1,]`},
		{`"b":"x"`, `"b":{"c":1,}`},
		{`"b":"x"`, "\"b\":\"\xff\""},
		{`"b":"x"`, "\"b\":\"\\n\xc3\""},
		{`"b":"x"`, "\"b\":\"é \xe2\x82\xac\""},
		{`"b":"x"`, "\"\xe9\":\"x\""},
		{`"X-A":"b"`, "\"X-A\":\"\xed\xa0\x80\""},
		{`"source":"test"`, "\"source\":\"t\u00e9st \xf0\x9f\x98\x80\""},
		{`"X-A":"b"`, `"X-Sauna-A":"b"`},
		{`"X-A":"b"`, `"X-A":"b\r\n"`},
		{`{"body"`, ` {"body"`},
	}
	for _, v := range variants {
		if !strings.Contains(base, v.old) {
			continue
		}
		checkSame(t, []byte(strings.Replace(base, v.old, v.new, 1)))
		checkSame(t, []byte(strings.ReplaceAll(base, v.old, v.new)))
	}
	for _, raw := range append([][]byte{[]byte(base)}, mapValues(validCommands(t))...) {
		for i := range raw {
			checkSame(t, append(append([]byte{}, raw[:i]...), raw[i+1:]...))
			for _, c := range []byte{'"', '\\', '}', ']', ',', '0', 'X', 0xff} {
				if i%7 == int(c)%7 {
					m := append([]byte{}, raw...)
					m[i] = c
					checkSame(t, m)
				}
			}
		}
		checkSame(t, append(append([]byte{}, raw...), " \n"...))
		checkSame(t, append(append([]byte{}, raw...), " {}"...))
		checkSame(t, append([]byte("\t"), raw...))
	}
}

// A record that parses but does not validate is rejected by decodeFast
// itself, as decodeChecked would word it: validating it a second time on
// the slow path would double what a hostile record costs.
func TestDecodeFastRejectsInvalidDataOnce(t *testing.T) {
	base := `{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0","data":{"envelope":` +
		`{"schema":"iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0",` +
		`"data":{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z",` +
		`"execution":{"semantics":"AT_LEAST_ONCE","timeToLive":1200000},"tags":{}}},"command":` +
		`{"schema":"iglu:io.sauna.commands/webhook/jsonschema/1-0-0","data":{"body":1}}}}`
	for _, v := range []struct{ old, new string }{
		{`"timeToLive":1200000`, `"timeToLive":1.5`},
		{`"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44"`, `"not a uuid"`},
		{`{"body":1}`, `{"body":1,"url":"http://internal"}`},
		{`"envelope":`, `"extra":1,"envelope":`},
	} {
		raw := []byte(strings.Replace(base, v.old, v.new, 1))
		if _, err := decodeFast(raw); err == errSlowPath || err == nil {
			t.Errorf("%s: decodeFast = %v, want the rejection", v.new, err)
		}
		checkSame(t, raw)
	}
}

func mapValues(m map[string][]byte) [][]byte {
	var out [][]byte
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func FuzzDecodeFast(f *testing.F) {
	for _, raw := range validCommands(f) {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkSame(t, raw)
	})
}

func TestRawMember(t *testing.T) {
	for _, c := range []struct {
		data, name, want string
		ok               bool
	}{
		{`{"body":{"a":[1,"}"]},"x":2}`, "body", `{"a":[1,"}"]}`, true},
		{` { "x" : "\"body\"" , "body" : -1.5e3 } `, "body", `-1.5e3`, true},
		{`{"body":"a \"q\" \\"}`, "body", `"a \"q\" \\"`, true},
		{`{"body":null}`, "body", `null`, true},
		{`{"x":[{"body":1}]}`, "body", ``, false},
		{`{"body":1,"body":2}`, "body", ``, false},
		{`{"b\u006fdy":1}`, "body", ``, false},
		{`{}`, "body", ``, false},
		{`[1]`, "body", ``, false},
		{`"body"`, "body", ``, false},
	} {
		got, ok := RawMember([]byte(c.data), c.name)
		if ok != c.ok || string(got) != c.want {
			t.Errorf("RawMember(%s, %q) = %s, %v; want %s, %v", c.data, c.name, got, ok, c.want, c.ok)
		}
	}
}

// A record's parse keeps where the members of its command's data lie:
// CommandData.Member gives their text as it is in the data.
func TestCommandDataMember(t *testing.T) {
	for _, c := range []struct {
		data, name, want string
		ok               bool
	}{
		{`{"body":{"a":[1,"}"]},"x":2}`, "body", `{"a":[1,"}"]}`, true},
		{`{"body":{"a":[1,"}"]},"x":2}`, "x", `2`, true},
		{` { "x" : "\"body\"" , "body" : -1.5e3 } `, "body", `-1.5e3`, true},
		{` { "x" : "\"body\"" , "body" : -1.5e3 } `, "x", `"\"body\""`, true},
		{`{"body":"a \"q\" \\"}`, "body", `"a \"q\" \\"`, true},
		{`{"body":null}`, "body", `null`, true},
		{`{"b\u006fdy":[]}`, "body", `[]`, true},
		{`{"x":[{"body":1}]}`, "body", ``, false},
		{`{"x":{"body":1}}`, "body", ``, false},
		{`{}`, "body", ``, false},
		{`[1]`, "body", ``, false},
		{`"body"`, "body", ``, false},
	} {
		raw := `{"schema":"iglu:a/b/jsonschema/1-0-0","data":{"envelope":{},"command":{"schema":"iglu:x/y/jsonschema/1-0-0","data":` + c.data + `}}}`
		p := treeParser{b: []byte(raw), want: commandDataPath}
		if _, ok := p.parse(); !ok || string(p.span) != strings.TrimSpace(c.data) && string(p.span) != c.data {
			t.Fatalf("parse of %s: %v, span %s", raw, ok, p.span)
		}
		data := CommandData{Raw: p.span, members: p.members}
		got, ok := data.Member(c.name)
		if ok != c.ok || string(got) != c.want {
			t.Errorf("%s: Member(%q) = %s, %v; want %s, %v", c.data, c.name, got, ok, c.want, c.ok)
		}
	}
}

// The parse sizes its slabs by the records it parsed last: a record with
// more members and objects than those still decodes whole, and so does a
// smaller one after it.
func TestDecodeFastAfterSmallerAndLargerRecords(t *testing.T) {
	record := func(body string) []byte {
		return []byte(`{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0","data":{"envelope":` +
			`{"schema":"iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0",` +
			`"data":{"commandId":"3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44","whenCreated":"2017-06-29T10:15:00Z",` +
			`"execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}},"command":` +
			`{"schema":"iglu:io.sauna.commands/webhook/jsonschema/1-0-0","data":{"body":` + body + `}}}}`)
	}
	var large strings.Builder
	large.WriteString(`{"a":0`)
	for i := range 300 {
		fmt.Fprintf(&large, `,"m%d":{"n":%d,"o":{}}`, i, i)
	}
	large.WriteString(`}`)
	for _, body := range []string{`1`, `1`, `1`, large.String(), `{"x":{"y":{}}}`, large.String(), `1`} {
		if !checkSame(t, record(body)) {
			t.Fatalf("took the slow path: %.80s", body)
		}
	}
}

// TestNotPlain: notPlain finds in eight bytes the first that plainByte
// does not hold plain, and mustEscape the first that JSON escapes in a
// string, whatever byte sits at any place among plain or other bytes.
func TestNotPlain(t *testing.T) {
	fillers := []byte{'a', ' ', '~', 0x7f, 0x1f, 0x80, 0xff, '"', '\\', 0, 0x21}
	for _, fill := range fillers {
		for _, fill2 := range fillers {
			for c := range 256 {
				for at := range 8 {
					for at2 := range 8 {
						var w [8]byte
						for i := range w {
							w[i] = fill
						}
						w[at2] = fill2
						w[at] = byte(c)
						first, firstEscaped := 8, 8
						for i, b := range w {
							if !plainByte[b] && first == 8 {
								first = i
							}
							if (b < 0x20 || b == '"' || b == '\\') && firstEscaped == 8 {
								firstEscaped = i
							}
						}
						m := notPlain(binary.LittleEndian.Uint64(w[:]))
						if got := bits.TrailingZeros64(m) / 8; got != first {
							t.Fatalf("notPlain(%q) = %#x: first byte not plain at %d, want %d", w, m, got, first)
						}
						m = mustEscape(binary.LittleEndian.Uint64(w[:]))
						if got := bits.TrailingZeros64(m) / 8; got != firstEscaped {
							t.Fatalf("mustEscape(%q) = %#x: first byte to escape at %d, want %d", w, m, got, firstEscaped)
						}
					}
				}
			}
		}
	}
}

// TestCanonicalWriteString: the digest's string escaping, which skips
// words, escapes exactly what a byte at a time does, wherever the bytes
// to escape fall among words.
func TestCanonicalWriteString(t *testing.T) {
	escape := func(s string) string {
		var b strings.Builder
		b.WriteByte('"')
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c < 0x20:
				fmt.Fprintf(&b, `\u%04x`, c)
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
		return b.String()
	}
	var out bytes.Buffer
	w := &canonicalWriter{h: nopHash{&out}}
	for n := range 26 {
		for _, c := range []byte{'"', '\\', 0, 0x1f, 0x7f, 0x80, 0xc3, 'a'} {
			for at := range n {
				s := []byte(strings.Repeat("abcdefgh", 4)[:n])
				s[at] = c
				if at+3 < n {
					s[at+3] = '\\'
				}
				out.Reset()
				w.writeString(string(s))
				w.flush()
				if got, want := out.String(), escape(string(s)); got != want {
					t.Fatalf("writeString(%q) wrote %s, want %s", s, got, want)
				}
			}
		}
	}
}

// nopHash is a hash.Hash that only keeps what is written to it.
type nopHash struct{ *bytes.Buffer }

func (nopHash) Sum(b []byte) []byte { return b }
func (nopHash) Size() int           { return 0 }
func (nopHash) BlockSize() int      { return 1 }
