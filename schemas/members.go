package schemas

import "encoding/json"

// Member is one member of a JSON object.
type Member struct {
	Name  string
	Value any
}

// Members is a JSON object as its members, each name once. [ValidateJSON]
// takes a *Members wherever it takes a map[string]any, so that a decoder
// can hand over the small objects it reads only to validate them without
// building a map for each. It is a pointer in an instance so that a decoder
// can box it in an any without an allocation.
type Members []Member

// StringOf returns the string v holds: a string, or a non-nil *string.
// [ValidateJSON] takes a *string wherever it takes a string, and a
// *json.Number wherever it takes a json.Number, so that a decoder can keep
// the scalars it reads in a slab of its own: boxing a string or a number
// in an any costs an allocation each, boxing a pointer none.
func StringOf(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case *string:
		if x != nil {
			return *x, true
		}
	}
	return "", false
}

// NumberOf returns the number v holds: a json.Number, or a non-nil
// *json.Number (see [StringOf]).
func NumberOf(v any) (json.Number, bool) {
	switch x := v.(type) {
	case json.Number:
		return x, true
	case *json.Number:
		if x != nil {
			return *x, true
		}
	}
	return "", false
}

// Get returns the value of member name; m may be nil.
func (m *Members) Get(name string) (any, bool) {
	if m == nil {
		return nil, false
	}
	for _, e := range *m {
		if e.Name == name {
			return e.Value, true
		}
	}
	return nil, false
}

// plainJSON is v with every Members turned into a map[string]any, and
// every *string and *json.Number into the value it points to, for the
// library, which knows only those. Maps and arrays that hold none of them
// are not copied.
func plainJSON(v any) (any, bool) {
	switch x := v.(type) {
	case *string:
		if x == nil {
			return v, false
		}
		return *x, true
	case *json.Number:
		if x == nil {
			return v, false
		}
		return *x, true
	case *Members:
		if x == nil {
			// A nil pointer in an any is no JSON value: the library says so.
			return v, false
		}
		m := make(map[string]any, len(*x))
		for _, e := range *x {
			m[e.Name], _ = plainJSON(e.Value)
		}
		return m, true
	case map[string]any:
		var out map[string]any
		for k, e := range x {
			p, changed := plainJSON(e)
			if !changed {
				continue
			}
			if out == nil {
				out = make(map[string]any, len(x))
				for k2, e2 := range x {
					out[k2] = e2
				}
			}
			out[k] = p
		}
		if out == nil {
			return v, false
		}
		return out, true
	case []any:
		var out []any
		for i, e := range x {
			p, changed := plainJSON(e)
			if !changed {
				continue
			}
			if out == nil {
				out = append([]any(nil), x...)
			}
			out[i] = p
		}
		if out == nil {
			return v, false
		}
		return out, true
	}
	return v, false
}
