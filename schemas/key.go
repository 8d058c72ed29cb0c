package schemas

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
)

// Key identifies a schema: iglu:<vendor>/<name>/<format>/<model>-<revision>-<addition>.
type Key struct {
	Vendor, Name, Format      string
	Model, Revision, Addition int
}

const igluPrefix = "iglu:"

// ParseKey parses an Iglu URI such as
// "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0".
//
// SchemaVer numbers follow Iglu's canonical form (model from 1, no leading
// zeros), so that every parsed Key prints back to exactly the URI it came
// from and two spellings can never name the same schema.
func ParseKey(uri string) (Key, error) {
	rest, ok := strings.CutPrefix(uri, igluPrefix)
	if !ok {
		return Key{}, fmt.Errorf("invalid iglu URI %q: must start with %q", uri, igluPrefix)
	}
	// Every command's record is parsed for its keys, so this cuts rather
	// than splits: no allocation on the way to a valid key.
	if strings.Count(rest, "/") != 3 {
		return Key{}, fmt.Errorf("invalid iglu URI %q: want iglu:<vendor>/<name>/<format>/<model>-<revision>-<addition>", uri)
	}
	var k Key
	var version string
	k.Vendor, rest, _ = strings.Cut(rest, "/")
	k.Name, rest, _ = strings.Cut(rest, "/")
	k.Format, version, _ = strings.Cut(rest, "/")
	for _, c := range [...]struct {
		what, val string
		dotOK     bool
	}{{"vendor", k.Vendor, true}, {"name", k.Name, false}, {"format", k.Format, false}} {
		if !validSegment(c.val, c.dotOK) {
			allowed := "[a-zA-Z0-9-_]+"
			if c.dotOK {
				allowed = "[a-zA-Z0-9-_.]+"
			}
			return Key{}, fmt.Errorf("invalid iglu URI %q: %s %q must match %s", uri, c.what, c.val, allowed)
		}
	}
	if strings.Count(version, "-") != 2 {
		return Key{}, fmt.Errorf("invalid iglu URI %q: SchemaVer %q must be <model>-<revision>-<addition>", uri, version)
	}
	nums := [3]*int{&k.Model, &k.Revision, &k.Addition}
	rest = version
	for i := range nums {
		var s string
		s, rest, _ = strings.Cut(rest, "-")
		n, err := parseSchemaVerNumber(s, i == 0)
		if err != nil {
			return Key{}, fmt.Errorf("invalid iglu URI %q: SchemaVer %q: %v", uri, version, err)
		}
		*nums[i] = n
	}
	return k, nil
}

func validSegment(s string, dotOK bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		case c == '.' && dotOK:
		default:
			return false
		}
	}
	return true
}

func parseSchemaVerNumber(s string, model bool) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("empty number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%q has a leading zero", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	if model && n == 0 {
		return 0, fmt.Errorf("model must be at least 1")
	}
	return n, nil
}

// String returns the Iglu URI, e.g. "iglu:vendor/name/format/1-0-0".
func (k Key) String() string { return k.build(igluPrefix) }

// Path returns the key as a path in the Iglu repository layout, e.g.
// "vendor/name/format/1-0-0"; it is also the file's path in this package.
func (k Key) Path() string { return k.build("") }

// build is Path after prefix, built by hand: every executed command's
// outcome names its schema.
func (k Key) build(prefix string) string {
	var b strings.Builder
	b.Grow(len(prefix) + len(k.Vendor) + len(k.Name) + len(k.Format) + 3 + 3*4)
	b.WriteString(prefix)
	b.WriteString(k.Vendor)
	b.WriteByte('/')
	b.WriteString(k.Name)
	b.WriteByte('/')
	b.WriteString(k.Format)
	b.WriteByte('/')
	b.WriteString(strconv.Itoa(k.Model))
	b.WriteByte('-')
	b.WriteString(strconv.Itoa(k.Revision))
	b.WriteByte('-')
	b.WriteString(strconv.Itoa(k.Addition))
	return b.String()
}

// SameRevision reports whether k and o differ at most in their ADDITION, which
// is how a criterion such as "…/send_message/jsonschema/1-0-*" matches: an
// addition only adds optional properties, so data written for any addition of
// a MODEL-REVISION can be handled by the same code.
func (k Key) SameRevision(o Key) bool {
	return k.Vendor == o.Vendor && k.Name == o.Name && k.Format == o.Format &&
		k.Model == o.Model && k.Revision == o.Revision
}

func (k Key) compare(o Key) int {
	if c := strings.Compare(k.Vendor, o.Vendor); c != 0 {
		return c
	}
	if c := strings.Compare(k.Name, o.Name); c != 0 {
		return c
	}
	if c := strings.Compare(k.Format, o.Format); c != 0 {
		return c
	}
	if c := cmp.Compare(k.Model, o.Model); c != 0 {
		return c
	}
	if c := cmp.Compare(k.Revision, o.Revision); c != 0 {
		return c
	}
	return cmp.Compare(k.Addition, o.Addition)
}
