package observer

import (
	"errors"
	"fmt"

	"github.com/sauna-io/sauna/observer/kinesis"
	"github.com/sauna-io/sauna/schemas"
)

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

// problemsOf flattens err into one Problem per field. Fields found inside a
// config's data are prefixed with "data." so that the path is the one a user
// sees in the file.
func problemsOf(file, prefix string, err error) []Problem {
	if err == nil {
		return nil
	}
	var out []Problem
	var fes *schemas.FieldErrors
	var fe *kinesis.FieldError
	var fp *fieldProblem
	if de, ok := err.(*dataError); ok {
		return problemsOf(file, joinField(prefix, "data"), de.err)
	}
	switch {
	case errors.As(err, &fes):
		for _, e := range fes.Errors {
			out = append(out, Problem{File: file, Field: joinField(prefix, e.Path), Message: e.Message})
		}
	case isJoined(err):
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			out = append(out, problemsOf(file, prefix, e)...)
		}
	case errors.As(err, &fe):
		out = append(out, Problem{File: file, Field: joinField(prefix, fe.Field), Message: fe.Message})
	case errors.As(err, &fp):
		out = append(out, Problem{File: file, Field: joinField(prefix, fp.field), Message: fp.err.Error()})
	default:
		out = append(out, Problem{File: file, Field: prefix, Message: err.Error()})
	}
	return out
}

func isJoined(err error) bool {
	_, ok := err.(interface{ Unwrap() []error })
	return ok
}

func joinField(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	}
	return prefix + "." + field
}

// fieldProblem attaches a field path to an error that has none.
type fieldProblem struct {
	field string
	err   error
}

func (e *fieldProblem) Error() string { return e.field + ": " + e.err.Error() }
func (e *fieldProblem) Unwrap() error { return e.err }

func atField(field string, err error) error { return &fieldProblem{field: field, err: err} }

func errorf(field, format string, args ...any) error {
	return atField(field, fmt.Errorf(format, args...))
}
