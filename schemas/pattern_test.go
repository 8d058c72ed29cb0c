package schemas

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// bundledPatterns are the regular expressions (pattern and
// patternProperties) of the bundled JSON Schemas whose key passes keep.
func bundledPatterns(t testing.TB, keep func(Key) bool) []string {
	t.Helper()
	js := jsonSchemas()
	if js.err != nil {
		t.Fatal(js.err)
	}
	seen := map[*jsonschema.Schema]bool{}
	var out []string
	var walk func(s *jsonschema.Schema)
	walk = func(s *jsonschema.Schema) {
		if s == nil || seen[s] {
			return
		}
		seen[s] = true
		if s.Pattern != nil {
			out = append(out, s.Pattern.String())
		}
		for re, sub := range s.PatternProperties {
			out = append(out, re.String())
			walk(sub)
		}
		for _, sub := range s.Properties {
			walk(sub)
		}
		walk(s.Ref)
		for _, list := range [][]*jsonschema.Schema{s.AnyOf, s.AllOf, s.OneOf} {
			for _, sub := range list {
				walk(sub)
			}
		}
		if sub, ok := s.Items.(*jsonschema.Schema); ok {
			walk(sub)
		}
		if subs, ok := s.Items.([]*jsonschema.Schema); ok {
			for _, sub := range subs {
				walk(sub)
			}
		}
		if sub, ok := s.AdditionalProperties.(*jsonschema.Schema); ok {
			walk(sub)
		}
	}
	for k, s := range js.byKey {
		if js.byKey[k].checker != nil && keep(k) {
			walk(s.schema)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// otherPatterns are expressions an anchoredRun must refuse, or match as
// regexp does.
var otherPatterns = []string{
	`^a+a$`, `^a*b?$`, `^[a-c]+[b-d]$`, `abc`, `^abc`, `abc$`, `^(?i)abc$`, `^a|b$`, `^(ab)+$`,
	`^[^a]*$`, `^.+x$`, `^a?b$`, `^[0-9]{2,3}$`, `^é+-[\p{L}]+$`, `^$`, `^x*$`, `^[\x{FFFD}]+$`,
}

var patternSubjects = []string{
	"", "a", "aa", "ab", "abc", "ABC", "b", "bd", "x", "xx", "12", "123", "1234", "é-é", "é-", "\xff", "\xff\xfe",
	"iglu:com.acme/a_b/jsonschema/1-0-0", "iglu:com.acme/a_b/jsonschema/1-0-0\n", "iglu:com.acme/a.b/jsonschema/1-0-0",
	"iglu:/a/jsonschema/1-0-0", "X-Request-Id", "X Request", "line\nbreak", "nul\x00", "tab\tok", "\uFFFD",
}

func allKeys(Key) bool { return true }

// TestBundledPatternsAreAnchoredRuns: every pattern a command meets on its
// way in (its wrapper's, its envelope's, its own) is matched in one pass.
func TestBundledPatternsAreAnchoredRuns(t *testing.T) {
	pats := bundledPatterns(t, func(k Key) bool {
		return strings.HasSuffix(k.Vendor, ".commands") || k.Vendor == "com.snowplowanalytics.self-desc"
	})
	if len(pats) < 3 {
		t.Fatalf("only %d patterns in the bundled schemas", len(pats))
	}
	for _, expr := range pats {
		if _, ok := newAnchoredRun(expr); !ok {
			t.Errorf("%s is matched by the regexp engine", expr)
		}
	}
	for _, expr := range []string{`^a+a$`, `^a*b?$`, `abc`, `^(ab)+$`, `^.+x$`} {
		if _, ok := newAnchoredRun(expr); ok {
			t.Errorf("%s taken as an anchored run", expr)
		}
	}
}

func TestAnchoredRunMatchesRegexp(t *testing.T) {
	for _, expr := range append(bundledPatterns(t, allKeys), otherPatterns...) {
		for _, s := range patternSubjects {
			sameMatch(t, expr, s)
		}
	}
}

func sameMatch(t *testing.T, expr, s string) {
	t.Helper()
	re, err := regexp.Compile(expr)
	if err != nil {
		return
	}
	run, ok := newAnchoredRun(expr)
	if !ok {
		return
	}
	if got, want := run.MatchString(s), re.MatchString(s); got != want {
		t.Fatalf("%s on %q: anchored run %v, regexp %v", expr, s, got, want)
	}
}

func FuzzAnchoredRun(f *testing.F) {
	for _, expr := range append(bundledPatterns(f, allKeys), otherPatterns...) {
		for _, s := range patternSubjects {
			f.Add(expr, s)
		}
	}
	f.Fuzz(sameMatch)
}

// TestURIMemo: a pattern with its verdicts on the bundled schemas' URIs
// kept answers as the regular expression does, on those URIs and on
// strings that only resemble them.
func TestURIMemo(t *testing.T) {
	memos := 0
	for _, expr := range bundledPatterns(t, func(Key) bool { return true }) {
		re := regexp.MustCompile(expr)
		m := memoURIs(fastPattern(re))
		if _, ok := m.(*uriMemo); ok {
			memos++
		}
		for _, k := range keys {
			uri := k.String()
			for _, s := range []string{uri, uri + "\n", uri[:len(uri)-1], strings.Replace(uri, "/", "//", 1), strings.ToUpper(uri), "x" + uri} {
				if got, want := m.MatchString(s), re.MatchString(s); got != want {
					t.Errorf("%s on %q: %v, want %v", expr, s, got, want)
				}
			}
		}
	}
	if memos == 0 {
		t.Error("no bundled pattern keeps its verdicts on URIs: the wrapper schemas' iglu pattern should")
	}
}
