package leases

import "strings"

// later reports whether sequence number a comes after b. Sequence numbers
// are decimal strings of any length (56 digits on AWS, small integers on
// some emulators), compared as numbers. "" comes before every sequence
// number; a string that is not one comes after none and has none after it:
// what cannot be read is not judged.
func later(a, b string) bool {
	switch {
	case !isDecimal(a):
		return false
	case b == "":
		return true
	case !isDecimal(b):
		return false
	}
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return len(a) > len(b)
	}
	return a > b
}

// isDecimal reports whether v is a non-empty string of ASCII digits.
func isDecimal(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}
