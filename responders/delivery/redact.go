package delivery

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
)

// Origin is the part of a URL that may be printed: scheme and host (with
// port). Webhook URLs keep their secret in the path, and other URLs may
// carry credentials in the user info or the query.
func Origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host
}

// Redacted is what errors and logs show in place of a secret.
const Redacted = "[REDACTED]"

// minSegment is the shortest URL path segment or query value treated as a
// possible secret on its own. Tokens are long; words such as "api" or "v2"
// are not worth hiding and would make messages unreadable if they were.
const minSegment = 8

// minSecret is the shortest Request.Secrets entry that is redacted. No real
// credential is shorter, and replacing every "a" in a message would make it
// unreadable without hiding anything.
const minSecret = 4

// redactor removes secrets from text that is about to leave Send.
type redactor struct {
	secrets []string
}

func newRedactor(rawURL string, extra []string) *redactor {
	var s []string
	add := func(v string) {
		if v != "" {
			s = append(s, v)
		}
	}
	for _, e := range extra {
		if len(e) >= minSecret {
			add(e)
			for _, part := range secretParts(e) {
				add(part)
			}
		}
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		add(rawURL)
	} else {
		// The origin stays readable: it is what errors name instead.
		if rawURL != Origin(rawURL) && rawURL != Origin(rawURL)+"/" {
			add(rawURL)
			add(strings.TrimPrefix(rawURL, u.Scheme+"://"))
		}
		if u.User != nil {
			add(u.User.String())
			if p, ok := u.User.Password(); ok {
				add(p)
			}
		}
		if u.Path != "/" {
			add(u.Path)
			add(u.EscapedPath())
		}
		add(u.RawQuery)
		add(u.Fragment)
		for _, seg := range strings.Split(u.Path, "/") {
			if len(seg) >= minSegment {
				add(seg)
			}
		}
		for _, vs := range u.Query() {
			for _, v := range vs {
				if len(v) >= minSegment {
					add(v)
				}
			}
		}
	}
	// A secret may also come back JSON-escaped ("\/" for "/") or
	// URL-encoded.
	for _, v := range slices.Clone(s) {
		if b, err := json.Marshal(v); err == nil {
			if q := string(b[1 : len(b)-1]); q != v {
				add(q)
			}
		}
		if q := url.QueryEscape(v); q != v {
			add(q)
		}
		if q := url.PathEscape(v); q != v {
			add(q)
		}
	}
	// Longest first, so that a secret containing another is removed whole.
	slices.SortFunc(s, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	return &redactor{secrets: slices.Compact(s)}
}

func (r *redactor) string(s string) string {
	for _, v := range r.secrets {
		s = strings.ReplaceAll(s, v, Redacted)
	}
	return s
}

func (r *redactor) bytes(b []byte) []byte {
	for _, v := range r.secrets {
		b = bytes.ReplaceAll(b, []byte(v), []byte(Redacted))
	}
	return b
}

// secretParts returns the pieces of a secret value that a vendor may echo
// on their own: a receiver answering "invalid token abc" to
// "Authorization: Bearer abc" quotes the credential without its scheme. For
// "<scheme> <credential>" that is the credential (and, for Basic, the
// decoded "user:password" and the password); beyond that, every part of
// minSegment bytes or more between spaces and punctuation (the sections of
// a JWT or of an "SG.<id>.<key>" API key, the parameters of a Digest
// credential). The scheme word itself is no secret and stays readable.
func secretParts(v string) []string {
	var out []string
	fields := strings.Fields(v)
	rest := fields
	if len(fields) >= 2 && isSchemeWord(fields[0]) {
		cred := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), fields[0]))
		if len(cred) >= minSecret {
			out = append(out, cred)
		}
		if strings.EqualFold(fields[0], "Basic") {
			if dec, err := base64.StdEncoding.DecodeString(cred); err == nil {
				pair := string(dec)
				if len(pair) >= minSecret {
					out = append(out, pair)
				}
				if _, pass, ok := strings.Cut(pair, ":"); ok && len(pass) >= minSecret {
					out = append(out, pass)
				}
			}
		}
		rest = fields[1:]
	}
	for _, f := range rest {
		if f != v && len(f) >= minSegment {
			out = append(out, f)
		}
		for _, p := range strings.FieldsFunc(f, func(r rune) bool { return strings.ContainsRune(`,;="'.:`, r) }) {
			if len(p) >= minSegment && p != f {
				out = append(out, p)
			}
		}
	}
	return out
}

// isSchemeWord reports whether s looks like an HTTP authentication scheme
// name (Bearer, Basic, Token, Digest, ...): letters only.
func isSchemeWord(s string) bool {
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			return false
		}
	}
	return s != ""
}
