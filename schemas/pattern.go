package schemas

import (
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// matcher is what a checker asks of a pattern.
type matcher interface {
	MatchString(string) bool
}

// anchoredRun is a Go regular expression of the form the bundled schemas
// use for names and values, ^X1X2...Xn$ where each X is a character class
// or literal character, possibly repeated (?, *, +), and each repeated X is
// followed by the end or by a mandatory X that has none of its characters.
// Such a pattern matches, if at all, by taking each repeated X as often as
// it can, so it is matched in one pass over the string, without the
// machinery (and the cost) of a general regular expression engine.
type anchoredRun struct {
	steps []runStep
}

type runStep struct {
	// class holds inclusive ranges, lo and hi in turn; ascii is its ASCII
	// part as a bit set.
	class    []rune
	ascii    [2]uint64
	optional bool // may match no character
	repeated bool // may match more than one
}

func newRunStep(class []rune, optional, repeated bool) runStep {
	s := runStep{class: class, optional: optional, repeated: repeated}
	for i := 0; i+1 < len(class); i += 2 {
		for r := class[i]; r <= class[i+1] && r < utf8.RuneSelf; r++ {
			s.ascii[r/64] |= 1 << (r % 64)
		}
	}
	return s
}

func (s *runStep) has(r rune) bool {
	if r < utf8.RuneSelf {
		return s.ascii[r/64]&(1<<(r%64)) != 0
	}
	for i := 0; i+1 < len(s.class); i += 2 {
		if s.class[i] <= r && r <= s.class[i+1] {
			return true
		}
	}
	return false
}

func (s runStep) disjoint(o runStep) bool {
	for i := 0; i+1 < len(s.class); i += 2 {
		for j := 0; j+1 < len(o.class); j += 2 {
			if s.class[i] <= o.class[j+1] && o.class[j] <= s.class[i+1] {
				return false
			}
		}
	}
	return true
}

// fastPattern is an anchoredRun for re when it has that form, else re.
func fastPattern(re matcher) matcher {
	goRE, ok := re.(*regexp.Regexp)
	if !ok {
		return re
	}
	if run, ok := newAnchoredRun(goRE.String()); ok {
		return run
	}
	return re
}

// newAnchoredRun parses expr as regexp.Compile does.
func newAnchoredRun(expr string) (*anchoredRun, bool) {
	parsed, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, false
	}
	parsed = parsed.Simplify()
	if parsed.Op != syntax.OpConcat || len(parsed.Sub) < 2 {
		return nil, false
	}
	subs := parsed.Sub
	if subs[0].Op != syntax.OpBeginText || subs[len(subs)-1].Op != syntax.OpEndText {
		return nil, false
	}
	run := &anchoredRun{}
	for _, sub := range subs[1 : len(subs)-1] {
		switch sub.Op {
		case syntax.OpLiteral, syntax.OpCharClass:
			classes, ok := runClasses(sub)
			if !ok {
				return nil, false
			}
			for _, c := range classes {
				run.steps = append(run.steps, newRunStep(c, false, false))
			}
		case syntax.OpQuest, syntax.OpStar, syntax.OpPlus:
			classes, ok := runClasses(sub.Sub[0])
			if !ok || len(classes) != 1 {
				return nil, false
			}
			run.steps = append(run.steps, newRunStep(classes[0], sub.Op != syntax.OpPlus, sub.Op != syntax.OpQuest))
		default:
			return nil, false
		}
	}
	for i, s := range run.steps {
		if !s.optional && !s.repeated {
			continue
		}
		if i+1 < len(run.steps) {
			next := run.steps[i+1]
			if next.optional || !s.disjoint(next) {
				return nil, false
			}
		}
	}
	return run, true
}

// runClasses are the character classes, one per character, of a literal or
// character class.
func runClasses(re *syntax.Regexp) ([][]rune, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return nil, false
		}
		out := make([][]rune, len(re.Rune))
		for i, r := range re.Rune {
			out[i] = []rune{r, r}
		}
		return out, true
	case syntax.OpCharClass:
		if len(re.Rune) == 0 || len(re.Rune)%2 != 0 {
			return nil, false
		}
		return [][]rune{re.Rune}, true
	}
	return nil, false
}

// MatchString reads s as Go's regular expressions do: an invalid UTF-8 byte
// is utf8.RuneError, one byte long.
func (a *anchoredRun) MatchString(s string) bool {
	i := 0
	for k := range a.steps {
		step := &a.steps[k]
		start := i
		if step.repeated {
			// The ASCII run in one tight loop: patterns meet mostly
			// ASCII names and URIs.
			for i < len(s) && s[i] < utf8.RuneSelf && step.ascii[s[i]>>6]&(1<<(s[i]&63)) != 0 {
				i++
			}
		}
		for i < len(s) && (i == start || step.repeated) {
			r, size := rune(s[i]), 1
			if r >= utf8.RuneSelf {
				r, size = utf8.DecodeRuneInString(s[i:])
			}
			if !step.has(r) {
				break
			}
			i += size
		}
		if i == start && !step.optional {
			return false
		}
	}
	return i == len(s)
}

// uriMemo is a pattern with its verdict on the URI of each bundled schema,
// found once: records name those URIs again and again (every command names
// three), and the wrapper schemas match each against a pattern.
type uriMemo struct {
	m     matcher
	known map[string]bool
}

// memoURIs is m with its verdicts on the bundled schemas' URIs kept, when
// it matches any of them; else m.
func memoURIs(m matcher) matcher {
	known := make(map[string]bool, len(keys))
	matches := false
	for _, k := range keys {
		uri := k.String()
		known[uri] = m.MatchString(uri)
		matches = matches || known[uri]
	}
	if !matches {
		return m
	}
	return &uriMemo{m: m, known: known}
}

func (u *uriMemo) MatchString(s string) bool {
	if strings.HasPrefix(s, "iglu:") {
		if v, ok := u.known[s]; ok {
			return v
		}
	}
	return u.m.MatchString(s)
}
