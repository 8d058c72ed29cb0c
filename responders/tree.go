package responders

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/sauna-io/sauna/schemas"
)

// treeParser builds, in one pass and without reflection, the values the
// JSON Schema validator takes: those encoding/json gives when decoding into
// an any with UseNumber ([]any, string, json.Number, bool, nil), except that
// objects are *schemas.Members, strings *string (but for a few common
// ones, boxed once for all records) and numbers *json.Number, which the
// validator takes as well (schemas.StringOf). Members cost no map per
// object, and a string or number no allocation of its own: the few slabs
// that hold them are the allocations, and the digest and the module's
// decoding read them in order without hashing. The parser also keeps the bytes of the value at path
// want, so that part of a record needs no second parse.
//
// It accepts exactly the documents json.Valid accepts, except that it gives
// up on what it does not need to handle quickly: a repeated object key
// (encoding/json merges or overwrites those depending on the target type),
// nesting deeper than maxTreeDepth, or bytes that are not UTF-8. Callers then take the slow path,
// which decides and words the error.
type treeParser struct {
	b []byte
	// s is b copied once: member names and strings without escapes are
	// slices of it, not one allocation each.
	s     string
	i     int
	depth int
	want  []string
	span  []byte
	// members are where the values of the members of the object at want
	// lie in span, when it is an object with members.
	members []rawSpan
	// highElems and highMembers are the longest the stacks grew.
	highElems, highMembers int
	// keptMembers and keptObjects count what keep kept.
	keptMembers, keptObjects int
	// stacks holds the members and elements of the objects and arrays being
	// parsed, so that each is allocated once, at its final size.
	stacks *treeStacks
	// slab holds the members of the objects parsed so far, end to end, and
	// heads the objects themselves: two allocations for the dozen small
	// objects of a record (an object boxed in an any as a slice would cost
	// one each).
	slab  []schemas.Member
	heads []schemas.Members
	// strs and nums hold the strings and numbers parsed so far, which the
	// tree points to.
	strs []string
	nums []json.Number
	// keptStrings and keptNumbers count them.
	keptStrings, keptNumbers int
}

// treeStacks are a parse's scratch space, reused from one parse to the next.
type treeStacks struct {
	elems   []any
	members []schemas.Member
	// keptMembers and keptObjects are the most members and objects recent
	// parses kept, lowered by one at each parse: the slabs' sizes for the
	// next. The records of a stream mostly share their shape, which
	// counting colons and braces (strings hold some) overestimates.
	keptMembers, keptObjects int
	// keptStrings and keptNumbers are the same for the strings and numbers
	// slabs, whose first sizes nothing counts more cheaply.
	keptStrings, keptNumbers int
}

var treeStacksPool = sync.Pool{New: func() any { return new(treeStacks) }}

// slabMembers and slabObjects size the slabs that follow the first ones,
// when those fill up; maxSlabMembers and maxSlabObjects bound the first.
const (
	slabMembers    = 32
	slabObjects    = 8
	slabStrings    = 16
	slabNumbers    = 8
	maxSlabMembers = 256
	maxSlabObjects = 64
)

var colonByte, braceByte = []byte{':'}, []byte{'{'}

// commonStrings are string values that nearly every record holds, already
// boxed: each would otherwise cost an allocation per record. They are the
// URIs of the bundled schemas (every record names three) and the one
// execution semantics an envelope may give.
var commonStrings = sync.OnceValue(func() map[string]any {
	m := map[string]any{"AT_LEAST_ONCE": "AT_LEAST_ONCE"}
	for _, k := range schemas.Keys() {
		uri := k.String()
		m[uri] = uri
	}
	return m
})

// boxString is s as an any: a common string boxed once, else a pointer
// into the strings slab.
func (p *treeParser) boxString(s string) any {
	if strings.HasPrefix(s, "iglu:") || s == "AT_LEAST_ONCE" {
		if v, ok := commonStrings()[s]; ok {
			return v
		}
	}
	if len(p.strs) == cap(p.strs) {
		// A full slab stays as it is, the strings already returned
		// pointing into it.
		n := slabStrings
		if p.strs == nil && p.stacks.keptStrings > 0 {
			n = p.stacks.keptStrings
		}
		p.strs = make([]string, 0, n)
	}
	p.strs = append(p.strs, s)
	p.keptStrings++
	return &p.strs[len(p.strs)-1]
}

// boxNumber is n as an any: a pointer into the numbers slab.
func (p *treeParser) boxNumber(n json.Number) any {
	if len(p.nums) == cap(p.nums) {
		size := slabNumbers
		if p.nums == nil && p.stacks.keptNumbers > 0 {
			size = p.stacks.keptNumbers
		}
		p.nums = make([]json.Number, 0, size)
	}
	p.nums = append(p.nums, n)
	p.keptNumbers++
	return &p.nums[len(p.nums)-1]
}

// maxTreeDepth is far below encoding/json's own limit: a command nested this
// deep is not one a producer meant to send.
const maxTreeDepth = 256

// parse returns the document's value, or false when the document is not
// one the parser handles (see treeParser).
func (p *treeParser) parse() (any, bool) {
	p.s = string(p.b)
	// Each member follows a ':' and each object opens with a '{' (those in
	// strings only make the bound looser): the slabs are sized once, to
	// that bound or to what recent parses kept if less, and up to a bound
	// that keeps a record of mostly colons from reserving many times its
	// size. A record larger than the recent ones takes more slabs.
	st := treeStacksPool.Get().(*treeStacks)
	members := min(bytes.Count(p.b, colonByte)+1, maxSlabMembers)
	objects := min(bytes.Count(p.b, braceByte)+1, maxSlabObjects)
	if st.keptObjects > 0 {
		members, objects = min(members, st.keptMembers), min(objects, st.keptObjects)
	}
	p.slab = make([]schemas.Member, 0, members)
	p.heads = make([]schemas.Members, 0, objects)
	p.stacks = st
	defer func() {
		// The stacks are truncated as objects and arrays end, but keep the
		// values they held up to their high-water marks.
		st := p.stacks
		clear(st.elems[:p.highElems])
		clear(st.members[:p.highMembers])
		st.elems, st.members = st.elems[:0], st.members[:0]
		p.stacks = nil
		treeStacksPool.Put(st)
	}()
	p.ws()
	v, ok := p.value(0)
	if !ok {
		return nil, false
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, false
	}
	st.keptMembers = max(p.keptMembers, st.keptMembers-1)
	st.keptObjects = max(p.keptObjects, st.keptObjects-1)
	st.keptStrings = max(p.keptStrings, st.keptStrings-1)
	st.keptNumbers = max(p.keptNumbers, st.keptNumbers-1)
	return v, true
}

func (p *treeParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// value parses the value at p.i. on counts the elements of want that lead
// to it, or is -1 when it is off that path.
func (p *treeParser) value(on int) (any, bool) {
	if p.i >= len(p.b) {
		return nil, false
	}
	start := p.i
	var v any
	ok := false
	switch c := p.b[p.i]; {
	case c == '{':
		v, ok = p.object(on)
	case c == '[':
		v, ok = p.array()
	case c == '"':
		var s string
		if s, ok = p.str(); ok {
			v = p.boxString(s)
		}
	case c == 't':
		v, ok = true, p.literal("true")
	case c == 'f':
		v, ok = false, p.literal("false")
	case c == 'n':
		ok = p.literal("null")
	case c == '-' || '0' <= c && c <= '9':
		v, ok = p.number()
	}
	if ok && on == len(p.want) {
		p.span = p.b[start:p.i]
	}
	return v, ok
}

func (p *treeParser) literal(lit string) bool {
	if !bytes.HasPrefix(p.b[p.i:], []byte(lit)) {
		return false
	}
	p.i += len(lit)
	return true
}

// rawSpan is where the value of member name of an object lies in the
// object's text: [lo, hi).
type rawSpan struct {
	name   string
	lo, hi int
}

func (p *treeParser) object(on int) (any, bool) {
	if p.depth++; p.depth > maxTreeDepth {
		return nil, false
	}
	open := p.i
	wanted := on == len(p.want)
	p.i++
	p.ws()
	st := p.stacks
	base := len(st.members)
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
	} else {
		for {
			if p.i >= len(p.b) || p.b[p.i] != '"' {
				return nil, false
			}
			k, ok := p.str()
			if !ok || !p.colon() {
				return nil, false
			}
			next := -1
			if on >= 0 && on < len(p.want) && k == p.want[on] {
				next = on + 1
			}
			from := p.i
			v, ok := p.value(next)
			if !ok {
				return nil, false
			}
			if wanted {
				if p.members == nil {
					p.members = make([]rawSpan, 0, 4)
				}
				p.members = append(p.members, rawSpan{name: k, lo: from - open, hi: p.i - open})
			}
			st.members = append(st.members, schemas.Member{Name: k, Value: v})
			p.highMembers = max(p.highMembers, len(st.members))
			if end, ok := p.next('}'); !ok {
				return nil, false
			} else if end {
				break
			}
		}
	}
	p.depth--
	ms := st.members[base:]
	st.members = st.members[:base]
	if hasRepeatedName(ms) {
		return nil, false
	}
	return p.keep(ms), true
}

// keep copies ms to the slab and returns them as an object. Slabs are
// allocated a few objects at a time; a full one stays as it is, the
// objects already returned pointing into it.
func (p *treeParser) keep(ms []schemas.Member) *schemas.Members {
	if cap(p.slab)-len(p.slab) < len(ms) {
		p.slab = make([]schemas.Member, 0, max(len(ms), slabMembers))
	}
	from := len(p.slab)
	p.slab = append(p.slab, ms...)
	p.keptMembers += len(ms)
	p.keptObjects++
	if len(p.heads) == cap(p.heads) {
		p.heads = make([]schemas.Members, 0, slabObjects)
	}
	p.heads = append(p.heads, p.slab[from:len(p.slab):len(p.slab)])
	return &p.heads[len(p.heads)-1]
}

// hasRepeatedName reports whether two of ms have the same name.
func hasRepeatedName(ms []schemas.Member) bool {
	if len(ms) > 16 {
		seen := make(map[string]struct{}, len(ms))
		for _, m := range ms {
			if _, dup := seen[m.Name]; dup {
				return true
			}
			seen[m.Name] = struct{}{}
		}
		return false
	}
	for i := range ms {
		for j := range i {
			if ms[i].Name == ms[j].Name {
				return true
			}
		}
	}
	return false
}

func (p *treeParser) array() (any, bool) {
	if p.depth++; p.depth > maxTreeDepth {
		return nil, false
	}
	p.i++
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		p.depth--
		// encoding/json gives an empty, not a nil, slice for [].
		return make([]any, 0), true
	}
	st := p.stacks
	base := len(st.elems)
	for {
		v, ok := p.value(-1)
		if !ok {
			return nil, false
		}
		st.elems = append(st.elems, v)
		p.highElems = max(p.highElems, len(st.elems))
		if end, ok := p.next(']'); !ok {
			return nil, false
		} else if end {
			p.depth--
			a := make([]any, len(st.elems)-base)
			copy(a, st.elems[base:])
			st.elems = st.elems[:base]
			return a, true
		}
	}
}

// colon moves past the ':' after a member name, and the spaces around it.
func (p *treeParser) colon() bool {
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != ':' {
		return false
	}
	p.i++
	p.ws()
	return true
}

// next moves past what follows an element: a ',' and the spaces after it
// (end false), or the closing bracket (end true).
func (p *treeParser) next(closing byte) (end, ok bool) {
	p.ws()
	if p.i >= len(p.b) {
		return false, false
	}
	switch p.b[p.i] {
	case ',':
		p.i++
		p.ws()
		return false, true
	case closing:
		p.i++
		return true, true
	}
	return false, false
}

// plainByte marks the bytes a string holds as they are, which str skips
// in one tight loop: printable ASCII but the quote and the backslash.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// notPlain finds, in a few operations rather than eight lookups, the bytes
// of the little-endian word w that are not plain (plainByte): the lowest
// byte whose high bit it sets is the first such byte, and it is zero when
// there is none. Records are mostly the text of strings.
func notPlain(w uint64) uint64 {
	// A byte of w from 0x80 up sets its own high bit.
	return mustEscape(w) | w&0x8080808080808080
}

// mustEscape is notPlain for the bytes JSON must escape in a string: the
// quote, the backslash and the controls below 0x20.
func mustEscape(w uint64) uint64 {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	// (x - lo*n) &^ x sets the high bit of the lowest byte of x below n
	// (n <= 0x80), and of none under it: only a borrow from that byte
	// sets those above it. x ^ lo*c has a zero byte where x has c.
	q, bs := w^'"'*lo, w^'\\'*lo
	return ((w-0x20*lo)&^w | (q-lo)&^q | (bs-lo)&^bs) & hi
}

// str parses the string at p.i (its opening quote). A string without
// escapes is its bytes as they are; one with escapes is left to
// encoding/json, whose treatment of odd escapes (lone surrogates) the result
// must match. The record is not checked for UTF-8 beforehand: only strings
// may hold bytes beyond ASCII, so each string that does is checked here.
func (p *treeParser) str() (string, bool) {
	b := p.b
	start := p.i
	i := start + 1
	escaped, wide := false, false
	for {
		for i+8 <= len(b) {
			if m := notPlain(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		for i < len(b) && plainByte[b[i]] {
			i++
		}
		if i >= len(b) {
			return "", false
		}
		switch c := b[i]; {
		case c == '"':
			i++
			p.i = i
			if wide && !utf8.Valid(b[start:i]) {
				return "", false
			}
			if escaped {
				var s string
				if json.Unmarshal(b[start:i], &s) != nil {
					return "", false
				}
				return s, true
			}
			return p.s[start+1 : i-1], true
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return "", false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return "", false
				}
				for _, h := range b[i+2 : i+6] {
					if !isHex(h) {
						return "", false
					}
				}
				i += 6
			default:
				return "", false
			}
		case c < 0x20:
			return "", false
		default:
			wide = true
			i++
		}
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// number parses a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
// One longer than MaxNumberLen is left to the slow path, which refuses it.
func (p *treeParser) number() (any, bool) {
	start := p.i
	if p.b[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.b) && p.b[p.i] == '0':
		p.i++
	case p.i < len(p.b) && '1' <= p.b[p.i] && p.b[p.i] <= '9':
		p.digits()
	default:
		return nil, false
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if !p.digits() {
			return nil, false
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if !p.digits() {
			return nil, false
		}
	}
	if p.i-start > MaxNumberLen {
		return nil, false
	}
	return p.boxNumber(json.Number(p.s[start:p.i])), true
}

// digits skips one or more decimal digits.
func (p *treeParser) digits() bool {
	start := p.i
	for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i > start
}

// RawMember returns the text of member name of the JSON object data, exactly
// as it appears there, without decoding anything. It returns false when
// data is not an object, has no such member or has it more than once, or
// spells its name with escapes. data must be valid JSON (one that was
// decoded already); anything else may give false or a wrong span.
func RawMember(data []byte, name string) ([]byte, bool) {
	p := treeParser{b: data}
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return nil, false
	}
	p.i++
	var found []byte
	for {
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return nil, false
		}
		start := p.i + 1
		if !p.skipString() {
			return nil, false
		}
		key := p.b[start : p.i-1]
		if bytes.IndexByte(key, '\\') >= 0 || !p.colon() {
			return nil, false
		}
		vstart := p.i
		if !p.skipValue() || p.i == vstart {
			return nil, false
		}
		if string(key) == name {
			if found != nil {
				return nil, false
			}
			found = p.b[vstart:p.i]
		}
		if end, ok := p.next('}'); !ok {
			return nil, false
		} else if end {
			return found, found != nil
		}
	}
}

// skipString moves past the string at p.i (its opening quote): to the first
// quote after it that an odd number of backslashes does not escape.
func (p *treeParser) skipString() bool {
	for from := p.i + 1; ; {
		q := bytes.IndexByte(p.b[from:], '"')
		if q < 0 {
			return false
		}
		q += from
		slashes := 0
		for q-1-slashes > p.i && p.b[q-1-slashes] == '\\' {
			slashes++
		}
		if slashes%2 == 0 {
			p.i = q + 1
			return true
		}
		from = q + 1
	}
}

// skipValue moves past the value at p.i, counting brackets outside strings.
func (p *treeParser) skipValue() bool {
	depth := 0
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case '"':
			if !p.skipString() {
				return false
			}
			if depth == 0 {
				return true
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				// The end of the enclosing object: a scalar ended here.
				return true
			}
			if depth--; depth == 0 {
				p.i++
				return true
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return true
			}
		}
		p.i++
	}
	return depth == 0
}
