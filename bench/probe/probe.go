// Package probe is the benchmark's responder. Linked into a custom sauna
// build (bench/cmd/sauna-bench), it reports each probe command to the
// harness's TCP sink after an optional fixed delay that stands in for a slow
// vendor API, so the harness sees exactly when sauna delivered what.
//
// A responder only gets the decoded command, not the shard it came from, so
// the probe reports the partition key (the command's key) in the shard
// field; the harness maps keys to shards with the stream's hash-key ranges.
package probe

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/sauna-io/sauna/bench/sink"
	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

// Config and command schemas of the probe.
var (
	ConfigV100 = schemas.Key{Vendor: "io.sauna.bench.responders", Name: "ProbeConfig", Format: "avro", Model: 1, Revision: 0, Addition: 0}
	ProbeV1    = schemas.Key{Vendor: "io.sauna.bench.commands", Name: "probe", Format: "jsonschema", Model: 1, Revision: 0, Addition: 0}
)

// ConsumerEnv names the environment variable with the consumer id the probe
// reports under; the harness sets it so that it can tell two processes of
// one observer apart (failover). Without it the id is "sauna-<pid>".
const ConsumerEnv = "BENCH_CONSUMER_ID"

const maxDelay = 10 * time.Minute

//go:embed schemas
var schemaFiles embed.FS

func init() {
	tree, err := fs.Sub(schemaFiles, "schemas")
	if err != nil {
		panic(err) // the directory is embedded above: a build mistake
	}
	// Schemas first: responders.Register does not look at them, but the
	// config loader does as soon as the module is known.
	schemas.Register(tree)
	responders.Register(responders.Module{
		Name:          "probe",
		Summary:       "Benchmark probe: reports probe commands to the harness's TCP sink after a fixed delay",
		ConfigSchemas: []schemas.Key{ConfigV100},
		Commands:      []schemas.Key{ProbeV1},
		Decode:        Decode,
		New:           New,
	})
}

// Command is the data of a probe command.
type Command struct {
	Key      string `json:"key"`
	N        int64  `json:"n"`
	PutNanos int64  `json:"putNanos"`
}

// Decode parses validated command data once, at decode time.
func Decode(_ schemas.Key, data json.RawMessage) (any, error) {
	var c Command
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

type parameters struct {
	Sink        string `json:"sink"`
	DelayMillis int    `json:"delayMillis"`
}

// Probe is one enabled probe config.
type Probe struct {
	delay time.Duration
	out   *sink.Writer
}

var (
	_ responders.Responder = (*Probe)(nil)
	_ io.Closer            = (*Probe)(nil)
)

// New builds a probe from its config. It does no I/O: the sink is dialled on
// the first command.
func New(cfg responders.Config) (responders.Responder, error) {
	var p parameters
	if err := cfg.DecodeParameters(&p); err != nil {
		return nil, err
	}
	if err := checkLoopback(p.Sink); err != nil {
		return nil, &responders.ParamError{Param: "sink", Err: err}
	}
	delay := time.Duration(p.DelayMillis) * time.Millisecond
	if delay < 0 || delay > maxDelay {
		return nil, responders.ParamErrorf("delayMillis", "must be 0 to %d, got %d", maxDelay.Milliseconds(), p.DelayMillis)
	}
	id := os.Getenv(ConsumerEnv)
	if id == "" {
		id = "sauna-" + strconv.Itoa(os.Getpid())
	}
	return &Probe{delay: delay, out: sink.NewWriter(p.Sink, id)}, nil
}

// checkLoopback keeps reports on this machine: the sink is the harness.
func checkLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s is not a loopback address", host)
	}
	return nil
}

// Respond waits the configured delay, then reports the delivery.
func (p *Probe) Respond(ctx context.Context, cmd *responders.Command) error {
	c, ok := cmd.Payload.(*Command)
	if !ok {
		return responders.Permanent(fmt.Errorf("probe: payload is %T, not a probe command", cmd.Payload))
	}
	if p.delay > 0 {
		t := time.NewTimer(p.delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	// The partition key stands in for the shard id (see the package doc).
	return p.out.Report(c.Key, c.Key, c.N, c.PutNanos)
}

// Close flushes the reports still buffered.
func (p *Probe) Close() error { return p.out.Close() }
