package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

// Command is the data of a webhook command.
type Command struct {
	// Body is sent byte for byte as it appears in the command.
	Body json.RawMessage `json:"body"`
	// Headers are added to the request; see checkHeaders for what is refused.
	Headers Headers `json:"headers,omitempty"`
}

// Header is one request header.
type Header struct {
	Name, Value string
}

// Headers are request headers in name order, each name once. In JSON they
// are an object of string values, as a map[string]string is: they are kept
// apart only because a command carries a few, which a map would cost more
// to hold and to go through.
type Headers []Header

// headersOf is m in name order; nil when m is.
func headersOf(m map[string]string) Headers {
	if m == nil {
		return nil
	}
	h := make(Headers, 0, len(m))
	for name, v := range m {
		h = append(h, Header{Name: name, Value: v})
	}
	h.sort()
	return h
}

func (h Headers) sort() {
	slices.SortFunc(h, func(a, b Header) int { return strings.Compare(a.Name, b.Name) })
}

// UnmarshalJSON reads h as encoding/json reads a map[string]string: null
// leaves it nil, a repeated name keeps its last value.
func (h *Headers) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*h = headersOf(m)
	return nil
}

// MarshalJSON writes h as the object it was read from.
func (h Headers) MarshalJSON() ([]byte, error) {
	if h == nil {
		return []byte("null"), nil
	}
	m := make(map[string]string, len(h))
	for _, e := range h {
		m[e.Name] = e.Value
	}
	return json.Marshal(m)
}

// Decode parses webhook command data, refusing a missing body and headers
// that could not be sent or that would replace what the responder controls.
func Decode(_ schemas.Key, data json.RawMessage) (any, error) {
	var c Command
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the command")
	}
	if c.Body == nil {
		return nil, errors.New(`missing "body"`)
	}
	if err := checkCommandHeaders(c.Headers); err != nil {
		return nil, fmt.Errorf("headers: %w", err)
	}
	return &c, nil
}

// decodeValue is Decode on the data as decoded for validation, whose objects
// are *schemas.Members. Only the body is taken from the text, where the
// record's parse found it.
func decodeValue(_ schemas.Key, data responders.CommandData) (any, bool) {
	m, ok := data.Value.(*schemas.Members)
	if !ok || m == nil {
		return nil, false
	}
	var c Command
	for _, e := range *m {
		switch e.Name {
		case "body":
			if c.Body, ok = data.Member("body"); !ok {
				return nil, false
			}
		case "headers":
			if c.Headers, ok = headersValue(e.Value); !ok {
				return nil, false
			}
		default:
			// Decode refuses it, or matches it to a field case-insensitively.
			return nil, false
		}
	}
	if c.Body == nil || checkCommandHeaders(c.Headers) != nil {
		return nil, false
	}
	return &c, true
}

// headersValue is what Headers.UnmarshalJSON makes of v: null leaves it
// nil, and an empty object makes empty headers. The parse that gave v
// refused repeated names.
func headersValue(v any) (Headers, bool) {
	switch t := v.(type) {
	case nil:
		return nil, true
	case *schemas.Members:
		if t == nil {
			return nil, false
		}
		out := make(Headers, 0, len(*t))
		for _, e := range *t {
			s, ok := schemas.StringOf(e.Value)
			if !ok {
				return nil, false
			}
			out = append(out, Header{Name: e.Name, Value: s})
		}
		out.sort()
		return out, true
	}
	return nil, false
}

func commandOf(cmd *responders.Command) (*Command, error) {
	if c, ok := cmd.Payload.(*Command); ok && c != nil {
		return c, nil
	}
	p, err := Decode(cmd.Schema, cmd.Data)
	if err != nil {
		return nil, fmt.Errorf("command data: %w", err)
	}
	return p.(*Command), nil
}

// reserved headers are set by the transport or by this responder: letting a
// config or a command set them would break the framing of the request, send
// a body under the wrong type, or forge the signature headers. Names are
// compared folded (see foldName).
var reserved = []string{"connection", "content-length", "content-type", "host", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}

// reservedPrefix is the namespace of the responder's own headers.
const reservedPrefix = "x-sauna-"

// commandRefused are headers a config may set but a command may not: they
// change what a proxy or framework in front of the receiver does with the
// request (its method, its path, its client address, its encoding) or carry
// credentials and sessions that only the operator should choose.
var commandRefused = []string{
	"content-encoding", "cookie", "expect", "forwarded", "max-forwards", "true-client-ip", "via",
	"x-client-ip", "x-host", "x-http-method", "x-http-method-override", "x-method-override",
	"x-original-method", "x-original-url", "x-real-ip", "x-rewrite-url",
}

// commandRefusedPrefixes extend commandRefused to header families.
var commandRefusedPrefixes = []string{"proxy-", "x-forwarded-"}

// foldName is how a receiver may see a header name: case-insensitive, and
// CGI-style servers turn both "_" and "-" into "_" ("X_Api_Key" and
// "X-Api-Key" both become HTTP_X_API_KEY).
func foldName(name string) string {
	return strings.ToLower(strings.ReplaceAll(name, "_", "-"))
}

// checkHeaders checks the headers of a config, returning the name of the
// header it refuses, if any. It quotes header names but never values, which
// may be secrets.
func checkHeaders(h map[string]string) (string, error) {
	return checkNames(headersOf(h), func(string) string { return "" })
}

// checkCommandHeaders checks the headers of a command: those of a config,
// and none that commandRefused lists.
func checkCommandHeaders(h Headers) error {
	_, err := checkNames(h, func(folded string) string {
		if slices.Contains(commandRefused, folded) {
			return "a command may not set it"
		}
		for _, p := range commandRefusedPrefixes {
			if strings.HasPrefix(folded, p) {
				return fmt.Sprintf("a command may not set %s* headers", p)
			}
		}
		return ""
	})
	return err
}

// checkNames refuses invalid, reserved and colliding names (two names that
// fold to one: a receiver could take either value), and any name refused
// says why. It returns the name refused (the later one of a collision, in
// name order) with the error.
func checkNames(h Headers, refused func(folded string) string) (string, error) {
	// A command carries a few headers: the folded names seen so far stay in
	// an array on the stack; a map takes over beyond.
	var foldedArr [8]string
	var seen map[string]string
	if len(h) > len(foldedArr) {
		seen = make(map[string]string, len(h))
	}
	for i, e := range h {
		name := e.Name
		if !isToken(name) {
			return name, fmt.Errorf("%s is not a valid header name", quoteName(name))
		}
		folded := foldName(name)
		if slices.Contains(reserved, folded) || strings.HasPrefix(folded, reservedPrefix) {
			return name, fmt.Errorf("%s is reserved", quoteName(name))
		}
		if why := refused(folded); why != "" {
			return name, fmt.Errorf("%s is refused: %s", quoteName(name), why)
		}
		if seen == nil {
			if j := slices.Index(foldedArr[:i], folded); j >= 0 {
				return name, fmt.Errorf("%q and %s name the same header", responders.Clip(h[j].Name), quoteName(name))
			}
			foldedArr[i] = folded
		} else {
			if other, dup := seen[folded]; dup {
				return name, fmt.Errorf("%q and %s name the same header", responders.Clip(other), quoteName(name))
			}
			seen[folded] = name
		}
		if i := strings.IndexFunc(e.Value, invalidValueRune); i >= 0 {
			return name, fmt.Errorf("the value of %s contains a control character at byte %d", quoteName(name), i)
		}
	}
	return "", nil
}

// quoteName quotes a header name for an error, clipped: a command may carry
// one of megabytes. It is called only once a name is refused.
func quoteName(name string) string { return strconv.Quote(responders.Clip(name)) }

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// invalidValueRune is a control character other than horizontal tab: such a
// value could split the header, and the transport would refuse it on every
// attempt.
func invalidValueRune(r rune) bool {
	return (r < ' ' && r != '\t') || r == 0x7f
}
