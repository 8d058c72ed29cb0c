package responders

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sauna-io/sauna/schemas"
)

// Responder executes commands for one enabled responder config.
// Respond may be called concurrently; see the package doc for the meaning of
// its error.
type Responder interface {
	Respond(ctx context.Context, cmd *Command) error
}

// Config is one enabled responder config file, decoded against its schema
// (plain JSON, defaults filled in).
type Config struct {
	// ID is the config's data.id.
	ID string
	// File is the path the config came from, for error messages.
	File string
	// Schema is the config's iglu schema key.
	Schema schemas.Key
	// Parameters is data.parameters as plain JSON with schema defaults applied.
	Parameters json.RawMessage
	// Logger carries the responder attribute already.
	Logger *slog.Logger
}

// DecodeParameters unmarshals the parameters into v, refusing unknown fields
// so that a typo in a config never silently disables a setting.
func (c Config) DecodeParameters(v any) error {
	dec := json.NewDecoder(bytes.NewReader(c.Parameters))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &ParamError{Err: err}
	}
	return nil
}

// ParamError is a problem with one parameter of a responder config. New
// returns it for every parameter it refuses, so that the problem is reported
// at the parameter's path, with Err's message, like any other config error
// ("x.json: data.parameters.webhookUrl: must be an http(s) URL"); any other
// error from New is reported at "data". Context wrapped around a ParamError
// is not reported, so Err says all there is to say. Err's message must not quote the
// value of a secret parameter (a URL that is a credential, a key, a header
// value): it reaches logs and `sauna validate`'s output.
type ParamError struct {
	// Param is the parameter's path inside data.parameters, written as
	// schemas.FieldError paths are: "webhookUrl", "headers[\"X-Api-Key\"]"
	// for a map entry; "" is the parameters object itself.
	Param string
	Err   error
}

// ParamErrorf returns a *ParamError for param with fmt.Errorf(format,
// args...) as its Err, so that %w wraps.
func ParamErrorf(param, format string, args ...any) error {
	return &ParamError{Param: param, Err: fmt.Errorf(format, args...)}
}

// Path is the parameter's path inside the config's data:
// "parameters.webhookUrl".
func (e *ParamError) Path() string {
	switch {
	case e.Param == "":
		return "parameters"
	case e.Param[0] == '[':
		return "parameters" + e.Param
	}
	return "parameters." + e.Param
}

// Error reads "parameters.webhookUrl: message".
func (e *ParamError) Error() string { return e.Path() + ": " + e.Err.Error() }

func (e *ParamError) Unwrap() error { return e.Err }

// Module describes one responder implementation.
type Module struct {
	// Name is short and stable ("slack"); it labels logs and metrics.
	Name string
	// Summary is one line for `sauna list`.
	Summary string
	// ConfigSchemas are the exact config schema versions the module accepts,
	// the current one (the one new files name) last: every accepted config is
	// also decoded against it, so its schema file supplies the defaults of
	// the settings an older config predates.
	ConfigSchemas []schemas.Key
	// DeprecatedConfigs are ConfigSchemas that new files should not name; a
	// config naming one is accepted with a warning naming the current one.
	DeprecatedConfigs []schemas.Key
	// Commands are the command schemas the module serves; a command matches
	// when vendor, name, format, model and revision are equal (any addition).
	Commands []schemas.Key
	// Decode, if set, parses validated command data into the module's typed
	// form once, at decode time, so a malformed command is rejected before it
	// is dispatched. Its result is Command.Payload.
	Decode func(schema schemas.Key, data json.RawMessage) (any, error)
	// DecodeValue, if set, is Decode given the data as it was decoded for
	// validation, which spares a second parse. It returns false whenever it
	// cannot give exactly what Decode gives, which then decides.
	DecodeValue func(schema schemas.Key, data CommandData) (any, bool)
	// New builds a responder from its config. It must not do I/O or start
	// goroutines. It returns (nil, nil) when the config enables none of the
	// module's actions (Sauna's "...Enabled": false flags). A parameter it
	// refuses is reported as a *ParamError naming the parameter (see
	// ParamErrorf) rather than named in a plain error's message.
	New func(cfg Config) (Responder, error)
	// Retired, when non-empty, says why the service can no longer be used:
	// its configs are refused and its commands rejected with this text.
	Retired string
}

// Configs returns the module's config schemas.
func (m Module) Configs() schemas.ConfigSchemas {
	if len(m.ConfigSchemas) == 0 {
		return schemas.ConfigSchemas{}
	}
	n := len(m.ConfigSchemas) - 1
	return schemas.ConfigSchemas{Current: m.ConfigSchemas[n], Older: m.ConfigSchemas[:n], Deprecated: m.DeprecatedConfigs}
}

var (
	registryMu sync.RWMutex
	modules    = map[string]Module{}
	// byCommand maps each command schema's revision (Addition zero) to its
	// module. It is replaced whole on Register, so that ForCommand, called
	// for every record, reads it without the lock.
	byCommand atomic.Pointer[map[schemas.Key]*Module]
)

// revision is k without its addition: every key ForCommand matches to k
// has it.
func revision(k schemas.Key) schemas.Key {
	k.Addition = 0
	return k
}

// Register makes a responder module available. It panics on an empty name, a
// missing constructor, a duplicate name, or a config or command schema that
// another module already claims, because each of those is a build mistake.
func Register(m Module) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if m.Name == "" {
		panic("responders: Register with an empty name")
	}
	if m.New == nil && m.Retired == "" {
		panic("responders: Register " + m.Name + " without New")
	}
	if _, dup := modules[m.Name]; dup {
		panic("responders: Register called twice for " + m.Name)
	}
	for _, other := range modules {
		for _, k := range m.ConfigSchemas {
			if slices.Contains(other.ConfigSchemas, k) {
				panic(fmt.Sprintf("responders: %s and %s both claim config schema %s", other.Name, m.Name, k))
			}
		}
		for _, k := range m.Commands {
			for _, o := range other.Commands {
				if k.SameRevision(o) {
					panic(fmt.Sprintf("responders: %s and %s both claim command schema %s", other.Name, m.Name, k))
				}
			}
		}
	}
	modules[m.Name] = m
	index := map[schemas.Key]*Module{}
	if old := byCommand.Load(); old != nil {
		maps.Copy(index, *old)
	}
	for _, k := range m.Commands {
		index[revision(k)] = &m
	}
	byCommand.Store(&index)
}

// Modules lists the registered modules sorted by name.
func Modules() []Module {
	registryMu.RLock()
	defer registryMu.RUnlock()
	out := make([]Module, 0, len(modules))
	for _, m := range modules {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Module) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Lookup finds a module by name.
func Lookup(name string) (Module, error) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	m, ok := modules[name]
	if !ok {
		return Module{}, fmt.Errorf("unknown responder %q (forgotten import?)", name)
	}
	return m, nil
}

// ForConfig finds the module that accepts a config schema.
func ForConfig(k schemas.Key) (Module, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	for _, m := range modules {
		if slices.Contains(m.ConfigSchemas, k) {
			return m, true
		}
	}
	return Module{}, false
}

// ForCommand finds the module that serves a command schema.
func ForCommand(k schemas.Key) (Module, bool) {
	if index := byCommand.Load(); index != nil {
		if m, ok := (*index)[revision(k)]; ok {
			return *m, true
		}
	}
	return Module{}, false
}
