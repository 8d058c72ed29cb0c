package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

// Command is the data of a webhook command.
type Command struct {
	// Body is sent byte for byte as it appears in the command.
	Body json.RawMessage `json:"body"`
	// Headers are added to the request; see checkHeaders for what is refused.
	Headers map[string]string `json:"headers,omitempty"`
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
	if err := checkHeaders(c.Headers); err != nil {
		return nil, fmt.Errorf("headers: %w", err)
	}
	return &c, nil
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
// a body under the wrong type, or forge the signature headers.
var reserved = []string{"Connection", "Content-Length", "Content-Type", "Host", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// reservedPrefix is the namespace of the responder's own headers.
const reservedPrefix = "X-Sauna-"

// checkHeaders quotes header names but never values, which may be secrets.
func checkHeaders(h map[string]string) error {
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if !isToken(name) {
			return fmt.Errorf("%q is not a valid header name", name)
		}
		canon := http.CanonicalHeaderKey(name)
		if slices.Contains(reserved, canon) || strings.HasPrefix(canon, reservedPrefix) {
			return fmt.Errorf("%q is reserved", name)
		}
		if i := strings.IndexFunc(h[name], invalidValueRune); i >= 0 {
			return fmt.Errorf("the value of %q contains a control character at byte %d", name, i)
		}
	}
	return nil
}

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
