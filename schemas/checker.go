package schemas

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// A checker is a bundled JSON Schema turned, once, into a validator that
// answers the one question asked of every command: is this value valid?
// It is built from the library's compiled schema, so $refs, drafts, regular
// expressions and formats mean exactly what they mean to the library, and it
// validates without allocating. It never explains a failure: whenever it
// does not answer "valid" the library validates again and words the error,
// so error messages are the library's.
//
// It implements the keywords of draft-04 to draft-07 that bundled command
// schemas use, and a few more: type, enum, format, $ref, properties,
// patternProperties, additionalProperties, required, min/maxProperties,
// items, additionalItems, min/maxItems, min/maxLength, pattern, allOf,
// anyOf, oneOf, not. A schema that uses any other keyword anywhere (const,
// dependencies, uniqueItems, contains, if/then/else, ...) gets no checker:
// the library alone validates against it. A number under minimum, maximum
// or multipleOf, and a value compared with an enum of numbers, objects or
// arrays, are left to the library too.
type checker struct {
	// always is set for a boolean schema (true or false).
	always *bool
	types  typeSet
	// enum is set when the schema has one; enumTypes are its values' types.
	enum      []any
	hasEnum   bool
	enumTypes typeSet
	format    *jsonschema.Format
	// formatOK accepts only strings the library's format accepts too; what
	// it refuses is for format to decide.
	formatOK func(string) bool
	ref      *checker
	// refOnly: before draft 2019-09, $ref stands for the whole schema once
	// type, enum and format have been checked (the library's order).
	refOnly bool
	// numeric is set when the schema bounds numbers (minimum, maximum,
	// multipleOf): a number then leaves the answer to the library.
	numeric bool

	minProps, maxProps int
	required           []string
	// props is properties; a few are looked up in propList, which is
	// quicker than hashing the name.
	props        map[string]*checker
	propList     []namedChecker
	patternProps []patternChecker
	// additional is additionalProperties as a schema; noAdditional is
	// additionalProperties: false.
	additional   *checker
	noAdditional bool

	minItems, maxItems int
	// items applies to every element; tuple (items as an array) to the
	// elements at the same index, additionalItems to those after.
	items             *checker
	tuple             []*checker
	additionalItems   *checker
	noAdditionalItems bool

	minLen, maxLen int
	pattern        matcher

	allOf, anyOf, oneOf []*checker
	not                 *checker
}

type namedChecker struct {
	name string
	c    *checker
}

// maxPropList is the most properties looked up in a list.
const maxPropList = 8

type patternChecker struct {
	re matcher
	c  *checker
}

// verdict is a checker's answer. unsure means the checker cannot tell
// (a value of a type it does not know, a number bounded by the schema, a
// nesting deeper than maxCheckDepth): the library decides.
type verdict uint8

// The order matters: both is the larger of two verdicts, and anyOf the
// smaller among its subschemas'.
const (
	valid verdict = iota
	unsure
	invalid
)

// both is the verdict of two constraints that must both hold.
func both(a, b verdict) verdict { return max(a, b) }

// typeSet holds JSON types as bits; the empty set allows every type.
type typeSet uint8

const (
	typeNull typeSet = 1 << iota
	typeBoolean
	typeNumber
	typeInteger
	typeString
	typeArray
	typeObject
)

var typeNames = map[string]typeSet{
	"null": typeNull, "boolean": typeBoolean, "number": typeNumber, "integer": typeInteger,
	"string": typeString, "array": typeArray, "object": typeObject,
}

// maxCheckDepth bounds the schemas applied on the way down to one value,
// so that a $ref cycle that consumes no input (which the library reports)
// ends.
const maxCheckDepth = 1000

// newChecker builds the checker of s, or returns an error naming the first
// keyword it does not support.
func newChecker(s *jsonschema.Schema) (*checker, error) {
	return (&checkerBuilder{done: map[*jsonschema.Schema]*checker{}}).build(s)
}

type checkerBuilder struct {
	done map[*jsonschema.Schema]*checker
}

func (b *checkerBuilder) build(s *jsonschema.Schema) (*checker, error) {
	if c, ok := b.done[s]; ok {
		return c, nil
	}
	c := &checker{minProps: -1, maxProps: -1, minItems: -1, maxItems: -1, minLen: -1, maxLen: -1}
	// Entered before its subschemas are built: recursive schemas refer to
	// themselves.
	b.done[s] = c
	if kw := unsupportedKeyword(s); kw != "" {
		return nil, fmt.Errorf("%s: %s is not supported", s.Location, kw)
	}
	var err error
	many := func(ss []*jsonschema.Schema) []*checker {
		out := make([]*checker, 0, len(ss))
		for _, sub := range ss {
			if err != nil {
				return nil
			}
			var sc *checker
			sc, err = b.build(sub)
			out = append(out, sc)
		}
		return out
	}
	one := func(sub *jsonschema.Schema) *checker {
		if sub == nil || err != nil {
			return nil
		}
		var sc *checker
		sc, err = b.build(sub)
		return sc
	}
	c.always = s.Bool
	if s.Types != nil {
		for _, name := range s.Types.ToStrings() {
			c.types |= typeNames[name]
		}
	}
	if s.Enum != nil {
		c.enum, c.hasEnum = s.Enum.Values, true
		for _, v := range s.Enum.Values {
			t, ok := typeOf(v)
			if !ok {
				return nil, fmt.Errorf("%s: enum value of type %T", s.Location, v)
			}
			c.enumTypes |= t
		}
	}
	if s.Format != nil {
		c.format, c.formatOK = s.Format, formatFastPaths[s.Format.Name]
	}
	c.ref = one(s.Ref)
	c.refOnly = s.Ref != nil && s.DraftVersion < 2019
	c.numeric = s.Minimum != nil || s.Maximum != nil || s.ExclusiveMinimum != nil || s.ExclusiveMaximum != nil || s.MultipleOf != nil
	if s.MinProperties != nil {
		c.minProps = *s.MinProperties
	}
	if s.MaxProperties != nil {
		c.maxProps = *s.MaxProperties
	}
	c.required = s.Required
	if len(s.Properties) > 0 {
		c.props = make(map[string]*checker, len(s.Properties))
		for name, sub := range s.Properties {
			c.props[name] = one(sub)
		}
		if len(c.props) <= maxPropList {
			for name, sub := range c.props {
				c.propList = append(c.propList, namedChecker{name, sub})
			}
		}
	}
	for re, sub := range s.PatternProperties {
		c.patternProps = append(c.patternProps, patternChecker{re: fastPattern(re), c: one(sub)})
	}
	noAdditional, additional, kwErr := boolOrSchema(s.AdditionalProperties)
	if kwErr != nil {
		return nil, fmt.Errorf("%s: additionalProperties: %w", s.Location, kwErr)
	}
	c.noAdditional, c.additional = noAdditional, one(additional)
	if s.MinItems != nil {
		c.minItems = *s.MinItems
	}
	if s.MaxItems != nil {
		c.maxItems = *s.MaxItems
	}
	switch it := s.Items.(type) {
	case nil:
	case *jsonschema.Schema:
		c.items = one(it)
	case []*jsonschema.Schema:
		c.tuple = many(it)
		noAdditional, additional, kwErr := boolOrSchema(s.AdditionalItems)
		if kwErr != nil {
			return nil, fmt.Errorf("%s: additionalItems: %w", s.Location, kwErr)
		}
		c.noAdditionalItems, c.additionalItems = noAdditional, one(additional)
	default:
		return nil, fmt.Errorf("%s: items of type %T", s.Location, it)
	}
	if s.MinLength != nil {
		c.minLen = *s.MinLength
	}
	if s.MaxLength != nil {
		c.maxLen = *s.MaxLength
	}
	if s.Pattern != nil {
		c.pattern = memoURIs(fastPattern(s.Pattern))
	}
	c.allOf, c.anyOf, c.oneOf = many(s.AllOf), many(s.AnyOf), many(s.OneOf)
	c.not = one(s.Not)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// boolOrSchema reads additionalProperties or additionalItems: false denies
// what the keyword covers, a schema applies to it.
func boolOrSchema(v any) (deny bool, sub *jsonschema.Schema, err error) {
	switch a := v.(type) {
	case nil:
		return false, nil, nil
	case bool:
		return !a, nil, nil
	case *jsonschema.Schema:
		return false, a, nil
	}
	return false, nil, fmt.Errorf("unexpected %T", v)
}

// unsupportedKeyword names a keyword of s that checkers do not implement,
// or is "".
func unsupportedKeyword(s *jsonschema.Schema) string {
	switch {
	case s.DraftVersion >= 2019:
		return "draft " + fmt.Sprint(s.DraftVersion)
	case s.RecursiveRef != nil || s.DynamicRef != nil:
		return "a dynamic reference"
	case s.Const != nil:
		return "const"
	case s.If != nil || s.Then != nil || s.Else != nil:
		return "if/then/else"
	case len(s.Dependencies) > 0 || len(s.DependentRequired) > 0 || len(s.DependentSchemas) > 0:
		return "dependencies"
	case s.PropertyNames != nil:
		return "propertyNames"
	case s.UnevaluatedProperties != nil || s.UnevaluatedItems != nil:
		return "unevaluated keywords"
	case s.UniqueItems:
		return "uniqueItems"
	case s.Contains != nil || s.MinContains != nil || s.MaxContains != nil:
		return "contains"
	case len(s.PrefixItems) > 0 || s.Items2020 != nil:
		return "prefixItems"
	case s.AdditionalItems != nil && s.Items == nil:
		// Meaningless without items; the library ignores it, and so would
		// the checker, but the combination says the schema is unusual.
		return "additionalItems without items"
	case s.ContentEncoding != nil || s.ContentMediaType != nil || s.ContentSchema != nil:
		return "content keywords"
	case len(s.Extensions) > 0:
		return "an extension vocabulary"
	}
	return ""
}

// typeOf is the JSON type of a decoded value, as the library sees it, for
// the values checkers handle: those of jsonschema.UnmarshalJSON and of
// encoding/json into an any, and the *Members, *string and *json.Number
// a decoder may give instead (see [StringOf]). Other values are not handled
// (false).
func typeOf(v any) (typeSet, bool) {
	switch x := v.(type) {
	case nil:
		return typeNull, true
	case bool:
		return typeBoolean, true
	case json.Number:
		return typeNumber, true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return 0, false
		}
		return typeNumber, true
	case string:
		return typeString, true
	case *string:
		return typeString, x != nil
	case *json.Number:
		return typeNumber, x != nil
	case []any:
		return typeArray, true
	case map[string]any:
		return typeObject, true
	case *Members:
		return typeObject, x != nil
	}
	return 0, false
}

// check validates v against c. depth counts the schemas applied so far.
func (c *checker) check(v any, depth int) verdict {
	if depth > maxCheckDepth {
		return unsure
	}
	depth++
	if c.always != nil {
		if *c.always {
			return valid
		}
		return invalid
	}
	t, ok := typeOf(v)
	if !ok {
		return unsure
	}
	if c.types != 0 && c.types&t == 0 {
		if c.types&typeInteger == 0 || t != typeNumber {
			return invalid
		}
		switch isInteger(v) {
		case invalid:
			return invalid
		case unsure:
			return unsure
		}
	}
	if c.hasEnum {
		if r := c.checkEnum(v, t); r != valid {
			return r
		}
	}
	if c.format != nil {
		s, isString := StringOf(v)
		if !isString || c.formatOK == nil || !c.formatOK(s) {
			// The library's formats know no pointers.
			if plain, _ := plainJSON(v); c.format.Validate(plain) != nil {
				return invalid
			}
		}
	}
	r := valid
	if c.ref != nil {
		r = c.ref.check(v, depth)
		if c.refOnly || r == invalid {
			return r
		}
	}
	switch x := v.(type) {
	case map[string]any:
		r = both(r, c.checkObject(x, depth))
	case *Members:
		r = both(r, c.checkMembers(x, depth))
	case []any:
		r = both(r, c.checkArray(x, depth))
	case string:
		r = both(r, c.checkString(x))
	case *string:
		r = both(r, c.checkString(*x))
	case json.Number, *json.Number, float64:
		if c.numeric {
			r = unsure
		}
	}
	if r == invalid {
		return r
	}
	return both(r, c.checkCombinations(v, depth))
}

func (c *checker) checkEnum(v any, t typeSet) verdict {
	if c.enumTypes&t == 0 {
		return invalid
	}
	if x, ok := StringOf(v); ok {
		for _, e := range c.enum {
			if s, ok := e.(string); ok && s == x {
				return valid
			}
		}
		return invalid
	}
	switch x := v.(type) {
	case bool:
		for _, e := range c.enum {
			if b, ok := e.(bool); ok && b == x {
				return valid
			}
		}
	case nil:
		// enumTypes holds null: the enum lists null.
		return valid
	default:
		// Numbers compare as exact fractions, objects and arrays deeply:
		// left to the library.
		return unsure
	}
	return invalid
}

func (c *checker) checkObject(obj map[string]any, depth int) verdict {
	if c.minProps >= 0 && len(obj) < c.minProps || c.maxProps >= 0 && len(obj) > c.maxProps {
		return invalid
	}
	for _, name := range c.required {
		if _, ok := obj[name]; !ok {
			return invalid
		}
	}
	r := valid
	for name, v := range obj {
		if r = both(r, c.checkMember(name, v, depth)); r == invalid {
			return r
		}
	}
	return r
}

// checkMembers is checkObject for an object given as Members.
func (c *checker) checkMembers(obj *Members, depth int) verdict {
	if c.minProps >= 0 && len(*obj) < c.minProps || c.maxProps >= 0 && len(*obj) > c.maxProps {
		return invalid
	}
	for _, name := range c.required {
		if _, ok := obj.Get(name); !ok {
			return invalid
		}
	}
	r := valid
	for _, m := range *obj {
		if r = both(r, c.checkMember(m.Name, m.Value, depth)); r == invalid {
			return r
		}
	}
	return r
}

// checkMember applies to the member name: v of an object the schemas that
// properties, patternProperties and additionalProperties give it.
func (c *checker) checkMember(name string, v any, depth int) verdict {
	r := valid
	evaluated := false
	if sub, ok := c.property(name); ok {
		evaluated = true
		if r = both(r, sub.check(v, depth)); r == invalid {
			return r
		}
	}
	for _, p := range c.patternProps {
		if p.re.MatchString(name) {
			evaluated = true
			if r = both(r, p.c.check(v, depth)); r == invalid {
				return r
			}
		}
	}
	switch {
	case evaluated:
	case c.noAdditional:
		return invalid
	case c.additional != nil:
		r = both(r, c.additional.check(v, depth))
	}
	return r
}

// property is the checker properties gives name, if any.
func (c *checker) property(name string) (*checker, bool) {
	if c.propList == nil {
		sub, ok := c.props[name]
		return sub, ok
	}
	for _, p := range c.propList {
		if p.name == name {
			return p.c, true
		}
	}
	return nil, false
}

func (c *checker) checkArray(arr []any, depth int) verdict {
	if c.minItems >= 0 && len(arr) < c.minItems || c.maxItems >= 0 && len(arr) > c.maxItems {
		return invalid
	}
	r := valid
	if c.items != nil {
		for _, v := range arr {
			if r = both(r, c.items.check(v, depth)); r == invalid {
				return r
			}
		}
		return r
	}
	for i, v := range arr {
		var sub *checker
		switch {
		case i < len(c.tuple):
			sub = c.tuple[i]
		case c.tuple == nil:
			// No items keyword: additionalItems is ignored.
		case c.noAdditionalItems:
			return invalid
		default:
			sub = c.additionalItems
		}
		if sub != nil {
			if r = both(r, sub.check(v, depth)); r == invalid {
				return r
			}
		}
	}
	return r
}

func (c *checker) checkString(s string) verdict {
	if c.minLen >= 0 || c.maxLen >= 0 {
		n := utf8.RuneCountInString(s)
		if c.minLen >= 0 && n < c.minLen || c.maxLen >= 0 && n > c.maxLen {
			return invalid
		}
	}
	if c.pattern != nil && !c.pattern.MatchString(s) {
		return invalid
	}
	return valid
}

func (c *checker) checkCombinations(v any, depth int) verdict {
	r := valid
	if c.not != nil {
		switch c.not.check(v, depth) {
		case valid:
			return invalid
		case unsure:
			r = unsure
		}
	}
	for _, sub := range c.allOf {
		if r = both(r, sub.check(v, depth)); r == invalid {
			return r
		}
	}
	if len(c.anyOf) > 0 {
		best := invalid
		for _, sub := range c.anyOf {
			if best = min(best, sub.check(v, depth)); best == valid {
				break
			}
		}
		if r = both(r, best); r == invalid {
			return r
		}
	}
	if len(c.oneOf) > 0 {
		matched, doubt := 0, false
		for _, sub := range c.oneOf {
			switch sub.check(v, depth) {
			case valid:
				matched++
			case unsure:
				doubt = true
			}
		}
		switch {
		case matched > 1:
			return invalid
		case doubt:
			r = unsure
		case matched == 0:
			return invalid
		}
	}
	return r
}

// isInteger is the library's test of the "integer" type for a number: its
// exact value, as math/big reads it, has no fractional part, however it is
// written (1.0 and 1e2 are integers).
func isInteger(v any) verdict {
	switch x := v.(type) {
	case float64:
		// The library reads the shortest decimal that gives x back, which
		// is an integer exactly when x is.
		if x == math.Trunc(x) {
			return valid
		}
		return invalid
	case json.Number:
		return integerLiteral(string(x))
	case *json.Number:
		return integerLiteral(string(*x))
	}
	return unsure
}

// integerLiteral tells whether the JSON number literal s is an integer as
// big.Rat.SetString reads it, limits included: an exponent that does not fit
// an int64, or a power of ten beyond a million (once the digits after the
// point are counted) on a non-zero number, makes SetString fail, and the
// library then says "not an integer". unsure when s is not a JSON number.
func integerLiteral(s string) verdict {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() string {
		start := i
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		return s[start:i]
	}
	intPart := digits()
	if intPart == "" || len(intPart) > 1 && intPart[0] == '0' {
		return unsure
	}
	var frac string
	if i < len(s) && s[i] == '.' {
		i++
		if frac = digits(); frac == "" {
			return unsure
		}
	}
	var exp int64
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		start := i
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == "" {
			return unsure
		}
		var err error
		if exp, err = strconv.ParseInt(s[start:i], 10, 64); err != nil {
			return invalid
		}
	}
	if i != len(s) {
		return unsure
	}
	all := intPart + frac
	zeros := 0
	for zeros < len(all) && all[len(all)-1-zeros] == '0' {
		zeros++
	}
	if zeros == len(all) {
		return valid
	}
	if exp < math.MinInt64/2 {
		return invalid
	}
	// The value is the digits of intPart and frac times 10^exp5; each
	// trailing zero of those digits raises the power by one.
	exp5 := exp - int64(len(frac))
	if exp5 > 1e6 || exp5 < -1e6 {
		return invalid
	}
	if exp5+int64(zeros) >= 0 {
		return valid
	}
	return invalid
}

// formatFastPaths accept, without allocating, the usual spellings of the
// formats bundled schemas use. Each accepts only what the library's format
// of the same name accepts; the library's format decides the rest.
var formatFastPaths = map[string]func(string) bool{
	"uuid":      plainUUID,
	"date-time": plainDateTime,
}

// plainUUID accepts 8-4-4-4-12 hexadecimal digits.
func plainUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHexDigit(s[i]) {
				return false
			}
		}
	}
	return true
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// plainDateTime accepts YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM) with
// a date that exists, a year from 0001 and no leap second.
func plainDateTime(s string) bool {
	if len(s) < 20 {
		return false
	}
	num := func(at, n int) int {
		v := 0
		for i := at; i < at+n; i++ {
			c := s[i]
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	if s[4] != '-' || s[7] != '-' || s[10] != 'T' && s[10] != 't' || s[13] != ':' || s[16] != ':' {
		return false
	}
	year, month, day := num(0, 4), num(5, 2), num(8, 2)
	if year < 1 || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) {
		return false
	}
	if h, m, sec := num(11, 2), num(14, 2), num(17, 2); h < 0 || h > 23 || m < 0 || m > 59 || sec < 0 || sec > 59 {
		return false
	}
	rest := s[19:]
	if len(rest) > 0 && rest[0] == '.' {
		n := 1
		for n < len(rest) && '0' <= rest[n] && rest[n] <= '9' {
			n++
		}
		if n == 1 {
			return false
		}
		rest = rest[n:]
	}
	switch {
	case rest == "Z" || rest == "z":
		return true
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		h, m := num(len(s)-5, 2), num(len(s)-2, 2)
		return h >= 0 && h <= 23 && m >= 0 && m <= 59
	}
	return false
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
