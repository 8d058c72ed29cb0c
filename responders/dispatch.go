package responders

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Enabled is one configured responder instance.
type Enabled struct {
	// ID is the config's id.
	ID string
	// File is the config file it came from.
	File      string
	Module    string
	Responder Responder
}

// Dispatcher routes commands to the enabled responder of their module. The
// set of responders can be replaced while commands flow: a command that is
// already running keeps the responder it started with.
type Dispatcher struct {
	now func() time.Time
	set atomic.Pointer[map[string]Enabled]
	mu  sync.Mutex // serialises Replace
}

// NewDispatcher returns a dispatcher with no responders. now may be nil.
func NewDispatcher(now func() time.Time) *Dispatcher {
	if now == nil {
		now = time.Now
	}
	d := &Dispatcher{now: now}
	empty := map[string]Enabled{}
	d.set.Store(&empty)
	return d
}

// Replace installs a new set of responders keyed by module name and returns
// the previous set so the caller can close the ones it no longer uses.
func (d *Dispatcher) Replace(set map[string]Enabled) map[string]Enabled {
	d.mu.Lock()
	defer d.mu.Unlock()
	cp := make(map[string]Enabled, len(set))
	for k, v := range set {
		cp[k] = v
	}
	return *d.set.Swap(&cp)
}

// Current returns the installed responders keyed by module name.
func (d *Dispatcher) Current() map[string]Enabled { return *d.set.Load() }

// Route is a command resolved to the enabled responder that serves it.
type Route struct {
	Command *Command
	Enabled
	// set is the responder set it was resolved in.
	set *map[string]Enabled
}

// Resolve finds the responder for cmd, or a RejectError when the command has
// expired or no responder of its module is enabled.
func (d *Dispatcher) Resolve(cmd *Command) (Route, error) {
	return d.resolve(cmd, d.set.Load())
}

func (d *Dispatcher) resolve(cmd *Command, set *map[string]Enabled) (Route, error) {
	if err := d.expired(cmd); err != nil {
		return Route{}, err
	}
	e, ok := (*set)[cmd.Module]
	if !ok || e.Responder == nil {
		return Route{}, reject(ReasonNoResponder, cmd.ID, commandPart.schemaPointer(), "no enabled %s responder config for %s", cmd.Module, cmd.Schema)
	}
	return Route{Command: cmd, Enabled: e, set: set}, nil
}

func (d *Dispatcher) expired(cmd *Command) error {
	// Without a time to live the clock is not read at all.
	if cmd.TimeToLiveMillis == nil || !cmd.Expired(d.now()) {
		return nil
	}
	return reject(ReasonExpired, cmd.ID, envelopePart.dataPointer()+"/execution/timeToLive", "time to live %d ms exceeded: created %s, now %s",
		*cmd.TimeToLiveMillis, cmd.Created.Format(time.RFC3339Nano), d.now().UTC().Format(time.RFC3339Nano))
}

// Send runs one attempt of a resolved command on its responder. The TTL is
// checked just before the call, so a command that expires while waiting is
// not executed. A route resolved before the responders were replaced (a
// reload) follows the replacement: a retry reaches its module's new config,
// or is rejected when none is enabled any more.
func (d *Dispatcher) Send(ctx context.Context, r *Route) error {
	if set := d.set.Load(); set != r.set {
		nr, err := d.resolve(r.Command, set)
		if err != nil {
			return err
		}
		*r = nr
	} else if err := d.expired(r.Command); err != nil {
		return err
	}
	return r.Responder.Respond(ctx, r.Command)
}

// Dispatch resolves cmd and runs one attempt of it: Resolve and Send, for a
// caller that makes a single attempt.
func (d *Dispatcher) Dispatch(ctx context.Context, cmd *Command) (Enabled, error) {
	r, err := d.Resolve(cmd)
	if err != nil {
		return Enabled{}, err
	}
	return r.Enabled, d.Send(ctx, &r)
}

// CloseResponder closes r if it holds resources.
func CloseResponder(r Responder) error {
	if c, ok := r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}
