package kinesis

import (
	"testing"

	"github.com/sauna-io/sauna/observer/command"
	"github.com/sauna-io/sauna/observer/metrics"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
)

// TestEveryResultIsCounted keeps sauna_commands_total in step with the
// results the processor reports.
func TestEveryResultIsCounted(t *testing.T) {
	m := metrics.New(metrics.Options{})
	o := New(Config{ID: "obs", StreamName: "s"}, nil, Options{Metrics: m})
	o.met = m.Observer("obs", "s", metrics.ObserverOptions{})
	results := []verdict.Outcome{verdict.Executed, verdict.Rejected, verdict.Duplicate, verdict.DeadLettered, verdict.Failed}
	for _, r := range results {
		out := command.Outcome{Verdict: r, Responder: "slack"}
		if r == verdict.Rejected {
			out.Reason = responders.ReasonExpired
		}
		o.report(out)
	}
	o.addInFlight(2)
	o.addInFlight(-1)
	o.countAttempt("slack", responders.Retry, 0)

	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	counted := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "sauna_commands_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			var outcome, reason string
			for _, l := range s.GetLabel() {
				switch l.GetName() {
				case "outcome":
					outcome = l.GetValue()
				case "reason":
					reason = l.GetValue()
				}
			}
			counted[outcome+"/"+reason] += s.GetCounter().GetValue()
		}
	}
	for _, r := range results {
		key := string(r) + "/"
		if r == verdict.Rejected {
			key += string(responders.ReasonExpired)
		}
		if counted[key] != 1 {
			t.Errorf("result %s counted %v times (all: %v)", r, counted[key], counted)
		}
	}
	if st := o.met.State(); st.InFlight != 1 || o.inFlight.Load() != 1 {
		t.Errorf("in flight: metrics %d, observer %d; want 1", st.InFlight, o.inFlight.Load())
	}
}
