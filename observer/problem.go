package observer

import "github.com/sauna-io/sauna/schemas"

// Problem is one thing wrong with one config file.
type Problem struct {
	File string
	// Field is the path inside the file ("data.parameters.kinesis.region"),
	// empty when the problem concerns the whole file.
	Field   string
	Message string
	// Warning marks problems that do not stop the file from being used as
	// intended (for instance errors in a disabled file).
	Warning bool
}

// String formats the problem as "file: field: message".
func (p Problem) String() string {
	s := p.File + ": "
	if p.Field != "" {
		s += p.Field + ": "
	}
	return s + p.Message
}

func (p Problem) Error() string { return p.String() }

// problemsOf flattens err into one Problem per *schemas.FieldError, each at
// its field's path in the file; any other error is a problem of the whole
// file.
func problemsOf(file string, err error) []Problem {
	switch e := err.(type) {
	case nil:
		return nil
	case *schemas.FieldError:
		return []Problem{{File: file, Field: e.Path, Message: e.Message}}
	case interface{ Unwrap() []error }:
		var out []Problem
		for _, err := range e.Unwrap() {
			out = append(out, problemsOf(file, err)...)
		}
		return out
	}
	return []Problem{{File: file, Message: err.Error()}}
}
