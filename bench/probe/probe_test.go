package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sauna-io/sauna/bench/sink"
	"github.com/sauna-io/sauna/responders"
)

func config(sinkAddr string, delayMillis int) responders.Config {
	p, _ := json.Marshal(map[string]any{"sink": sinkAddr, "delayMillis": delayMillis})
	return responders.Config{ID: "probe", File: "probe.json", Schema: ConfigV100, Parameters: p}
}

// A probe command on the stream goes through sauna's decoding (its schemas
// come from schemas.Register) and reaches the sink as one delivery.
func TestProbeCommandReachesTheSink(t *testing.T) {
	got := make(chan sink.Delivery, 1)
	srv, err := sink.Listen("127.0.0.1:0", func(d sink.Delivery) { got <- d }, func(err error) { t.Error(err) })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	record := fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0","data":{`+
		`"envelope":{"schema":"iglu:com.snowplowanalytics.sauna.commands/envelope/jsonschema/1-0-0","data":{`+
		`"commandId":"5f1b8a52-5f2a-4c56-9a0b-3f0e1c9d2a11","whenCreated":%q,"execution":{"semantics":"AT_LEAST_ONCE","timeToLive":null},"tags":{}}},`+
		`"command":{"schema":"iglu:io.sauna.bench.commands/probe/jsonschema/1-0-0","data":{"key":"k7","n":3,"putNanos":42}}}}`,
		time.Now().UTC().Format(time.RFC3339))
	cmd, err := responders.Decode([]byte(record))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if cmd.Module != "probe" {
		t.Fatalf("routed to %q, want probe", cmd.Module)
	}
	r, err := New(config(srv.Addr(), 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Respond(context.Background(), cmd); err != nil {
		t.Fatal(err)
	}
	if err := r.(*Probe).Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-got:
		if d.Key != "k7" || d.N != 3 || d.PutNanos != 42 || d.DoneNanos <= 0 {
			t.Errorf("delivery %+v", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery reached the sink")
	}
}

func TestProbeConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg   responders.Config
		param string
		want  string
	}{
		{config("192.0.2.1:9", 0), "sink", "parameters.sink: 192.0.2.1 is not a loopback address"},
		{config("127.0.0.1:9", -1), "delayMillis", "parameters.delayMillis: must be 0 to"},
	} {
		_, err := New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New: %v, want an error containing %q", err, c.want)
		}
		if pe, ok := errors.AsType[*responders.ParamError](err); !ok || pe.Param != c.param {
			t.Errorf("New: %T %v, want a *responders.ParamError for %q", err, err, c.param)
		}
	}
}
