package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	kclmetrics "github.com/vmware/vmware-go-kcl-v2/clientlibrary/metrics"

	"github.com/sauna-io/sauna/observer/internal/testclock"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
)

// newClock is the settable clock of the status timestamps.
func newClock() *testclock.Clock {
	return testclock.New(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
}

func TestKCLAdapterUpdatesTheShardSeries(t *testing.T) {
	clock := newClock()
	m := New(Options{Now: clock.Now})
	o := m.Observer("orders", "orders-stream", ObserverOptions{})
	var k kclmetrics.MonitoringService = o.NewKCL()
	reg := m.Registry()

	if err := k.Init("orders", "orders-stream", "host:w1"); err != nil {
		t.Fatal(err)
	}
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
	k.LeaseGained("shardId-0")
	k.LeaseGained("shardId-1")
	k.RecordGetRecordsTime("shardId-0", 20)
	k.RecordProcessRecordsTime("shardId-0", 1500)
	k.IncrRecordsProcessed("shardId-0", 7)
	k.IncrBytesProcessed("shardId-0", 700)
	k.MillisBehindLatest("shardId-0", 1234)
	k.IncrRecordsProcessed("shardId-0", 3)
	k.IncrRecordsProcessed("shardId-1", 0)
	k.LeaseRenewed("shardId-1")
	k.LeaseRenewed("shardId-1")

	s0 := shardLabels("orders", "orders-stream", "shardId-0")
	s1 := shardLabels("orders", "orders-stream", "shardId-1")
	obs := map[string]string{LabelObserver: "orders", LabelStream: "orders-stream"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sauna_kinesis_records_total", s0, 10},
		{"sauna_kinesis_records_total", s1, 0},
		{"sauna_kinesis_bytes_total", s0, 700},
		{"sauna_kinesis_millis_behind_latest", s0, 1234},
		{"sauna_kinesis_leases_gained_total", s0, 1},
		{"sauna_kinesis_lease_renewals_total", s1, 2},
		{"sauna_kinesis_get_records_duration_seconds", s0, 1},
		{"sauna_kinesis_process_records_duration_seconds", s0, 1},
		{"sauna_kinesis_last_poll_timestamp_seconds", s0, float64(clock.Now().Unix())},
		{"sauna_kinesis_leases_held", obs, 2},
		{"sauna_observer_running", obs, 1},
	} {
		if got := mustSample(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := histogramSum(t, reg, "sauna_kinesis_process_records_duration_seconds", s0); got != 1.5 {
		t.Errorf("process time sum = %v s, want 1.5 (the KCL reports milliseconds)", got)
	}

	clock.Add(time.Second)
	st := o.State()
	want := ObserverState{
		ID: "orders", Stream: "orders-stream", WorkerID: "host:w1", Running: true,
		StartedAt: clock.Now().Add(-time.Second),
		Shards: []ShardState{
			{ID: "shardId-0", LeaseGainedAt: clock.Now().Add(-time.Second), LastPollAt: clock.Now().Add(-time.Second), MillisBehindLatest: 1234},
			{ID: "shardId-1", LeaseGainedAt: clock.Now().Add(-time.Second)},
		},
		MillisBehindLatest: 1234,
	}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("state (-want +got):\n%s", diff)
	}

	// The KCL releases a lease thus when a shard consumer ends.
	k.DeleteMetricMillisBehindLatest("shardId-0")
	k.LeaseLost("shardId-0")
	if _, ok := sample(t, reg, "sauna_kinesis_millis_behind_latest", s0); ok {
		t.Error("millis behind latest of a released shard is still exported")
	}
	if _, ok := sample(t, reg, "sauna_kinesis_last_poll_timestamp_seconds", s0); ok {
		t.Error("last poll of a released shard is still exported")
	}
	if got := mustSample(t, reg, "sauna_kinesis_leases_lost_total", s0); got != 1 {
		t.Errorf("leases lost = %v, want 1", got)
	}
	if got := mustSample(t, reg, "sauna_kinesis_leases_held", obs); got != 1 {
		t.Errorf("leases held = %v, want 1", got)
	}
	if got := mustSample(t, reg, "sauna_kinesis_records_total", s0); got != 10 {
		t.Errorf("records after release = %v, want 10 (counters are kept)", got)
	}

	k.Shutdown()
	st = o.State()
	if st.Running || len(st.Shards) != 0 {
		t.Errorf("after Shutdown: running %v, shards %v; want stopped with none", st.Running, st.Shards)
	}
	if got := mustSample(t, reg, "sauna_observer_running", obs); got != 0 {
		t.Errorf("running after shutdown = %v", got)
	}
}

func TestTwoObserversShareOneRegistry(t *testing.T) {
	m := New(Options{})
	a := m.Observer("obs-a", "stream-a", ObserverOptions{})
	b := m.Observer("obs-b", "stream-b", ObserverOptions{})
	ka, kb := a.NewKCL(), b.NewKCL()
	for _, k := range []*KCL{ka, kb} {
		// The KCL calls Init and Start on every worker start; a second
		// worker must not register anything again.
		if err := k.Init("x", "y", "w"); err != nil {
			t.Fatal(err)
		}
		if err := k.Start(); err != nil {
			t.Fatal(err)
		}
		k.LeaseGained("shardId-000000000000")
	}
	ka.IncrRecordsProcessed("shardId-000000000000", 5)
	kb.IncrRecordsProcessed("shardId-000000000000", 9)
	a.Responder("slack").Count(verdict.Executed, "")
	b.Responder("slack").Count(verdict.Executed, "")
	b.Responder("slack").Count(verdict.Executed, "")

	// A restarted observer gets a new handle on the same series.
	a2 := m.Observer("obs-a", "stream-a", ObserverOptions{})
	ka2 := a2.NewKCL()
	ka2.LeaseGained("shardId-000000000000")
	ka2.IncrRecordsProcessed("shardId-000000000000", 1)
	a2.Responder("slack").Count(verdict.Executed, "")

	// A second metric set in the same process (as in tests, or a reload of
	// the whole daemon) is independent.
	other := New(Options{})
	other.Observer("obs-a", "stream-a", ObserverOptions{}).NewKCL().IncrRecordsProcessed("shardId-000000000000", 100)

	reg := m.Registry()
	if got := mustSample(t, reg, "sauna_kinesis_records_total", shardLabels("obs-a", "stream-a", "shardId-000000000000")); got != 6 {
		t.Errorf("obs-a records = %v, want 6", got)
	}
	if got := mustSample(t, reg, "sauna_kinesis_records_total", shardLabels("obs-b", "stream-b", "shardId-000000000000")); got != 9 {
		t.Errorf("obs-b records = %v, want 9", got)
	}
	cmd := func(obs string) map[string]string {
		return map[string]string{LabelObserver: obs, LabelResponder: "slack", LabelOutcome: "executed", LabelReason: ""}
	}
	if got := mustSample(t, reg, "sauna_commands_total", cmd("obs-a")); got != 2 {
		t.Errorf("obs-a executed = %v, want 2", got)
	}
	if got := mustSample(t, reg, "sauna_commands_total", cmd("obs-b")); got != 2 {
		t.Errorf("obs-b executed = %v, want 2", got)
	}

	ids := []string{}
	for _, st := range m.Observers() {
		ids = append(ids, st.ID)
	}
	if diff := cmp.Diff([]string{"obs-a", "obs-b"}, ids); diff != "" {
		t.Errorf("observers (-want +got):\n%s", diff)
	}
	a2.Close()
	if got := len(m.Observers()); got != 1 {
		t.Errorf("after Close: %d observers, want 1", got)
	}
	// Closing the replaced handle must not remove its successor.
	a.Close()
	b.Close()
	if got := len(m.Observers()); got != 0 {
		t.Errorf("after closing all: %d observers", got)
	}
}

func TestAbandonedWorkerCannotDisturbItsSuccessor(t *testing.T) {
	m := New(Options{})
	o := m.Observer("obs", "s", ObserverOptions{})
	old := o.NewKCL()
	_ = old.Start()
	old.LeaseGained("shardId-0")
	old.LeaseGained("shardId-1")

	// The observer gave up on the old worker's shutdown and started a new one.
	o.WorkerStopped(errors.New("worker did not stop in time"))
	cur := o.NewKCL()
	_ = cur.Start()
	cur.LeaseGained("shardId-0")

	// Much later the abandoned worker's consumers end.
	old.DeleteMetricMillisBehindLatest("shardId-0")
	old.LeaseLost("shardId-0")
	old.LeaseLost("shardId-1")
	old.Shutdown()
	old.IncrRecordsProcessed("shardId-0", 4)

	st := o.State()
	if !st.Running || len(st.Shards) != 1 || st.Shards[0].ID != "shardId-0" {
		t.Errorf("state = running %v, shards %+v; want running with shardId-0", st.Running, st.Shards)
	}
	if st.LastError != "worker did not stop in time" {
		t.Errorf("last error = %q", st.LastError)
	}
	reg := m.Registry()
	if got := mustSample(t, reg, "sauna_kinesis_leases_held", map[string]string{LabelObserver: "obs", LabelStream: "s"}); got != 1 {
		t.Errorf("leases held = %v, want 1", got)
	}
	// What the old worker did still happened.
	if got := mustSample(t, reg, "sauna_kinesis_records_total", shardLabels("obs", "s", "shardId-0")); got != 4 {
		t.Errorf("records = %v, want 4", got)
	}
}

func TestRestartKeepsTheLastError(t *testing.T) {
	m := New(Options{})
	first := m.Observer("obs", "s", ObserverOptions{})
	first.ReportError(errors.New("lease table: AccessDeniedException"))
	first.WorkerStopped(nil)
	second := m.Observer("obs", "s", ObserverOptions{})
	if got := second.State().LastError; got != "lease table: AccessDeniedException" {
		t.Errorf("restarted observer's last error %q", got)
	}
	states := m.Observers()
	if len(states) != 1 || states[0].LastError == "" || states[0].Running {
		t.Errorf("observers %+v, want one, not running, with its last error", states)
	}
}

// TestInFlightFollowsTheCurrentRun: commands a stopped run abandoned must
// neither stay counted nor be taken off the next run's count.
func TestInFlightFollowsTheCurrentRun(t *testing.T) {
	m := New(Options{})
	first := m.Observer("obs", "s", ObserverOptions{})
	first.AddInFlight(3)
	second := m.Observer("obs", "s", ObserverOptions{})
	second.AddInFlight(1)
	first.AddInFlight(-3) // the abandoned commands end late
	if got := mustSample(t, m.Registry(), "sauna_commands_in_flight", map[string]string{LabelObserver: "obs"}); got != 1 {
		t.Errorf("in flight %v, want 1", got)
	}
	second.Close()
	if _, ok := sample(t, m.Registry(), "sauna_commands_in_flight", map[string]string{LabelObserver: "obs"}); ok {
		t.Error("a closed observer still reports commands in flight")
	}
}

func TestCommandOutcomesAndAttempts(t *testing.T) {
	m := New(Options{})
	o := m.Observer("obs", "s", ObserverOptions{})
	slack := o.Responder("slack")
	slack.Count(verdict.Executed, "")
	slack.Count(verdict.Executed, "ignored")
	slack.Count(verdict.Duplicate, "")
	slack.Count(verdict.DeadLettered, "")
	slack.Count(verdict.Failed, "")
	slack.Count(verdict.Rejected, string(responders.ReasonExpired))
	o.Responder("").Count(verdict.Rejected, string(responders.ReasonInvalidJSON))
	o.Responder("").Count(verdict.Rejected, string(responders.ReasonInvalidJSON))
	slack.Attempt(responders.Retry, 200*time.Millisecond)
	slack.Attempt(responders.Done, 50*time.Millisecond)
	slack.Attempt(responders.Verdict(42), time.Second) // ignored, not a panic
	o.AddInFlight(3)
	o.AddInFlight(-1)

	reg := m.Registry()
	cmd := func(resp, out, reason string) map[string]string {
		return map[string]string{LabelObserver: "obs", LabelResponder: resp, LabelOutcome: out, LabelReason: reason}
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sauna_commands_total", cmd("slack", "executed", ""), 2},
		{"sauna_commands_total", cmd("slack", "duplicate", ""), 1},
		{"sauna_commands_total", cmd("slack", "dead_lettered", ""), 1},
		{"sauna_commands_total", cmd("slack", "failed", ""), 1},
		{"sauna_commands_total", cmd("slack", "rejected", "expired"), 1},
		{"sauna_commands_total", cmd("", "rejected", "invalid_json"), 2},
		{"sauna_responder_attempts_total", map[string]string{LabelObserver: "obs", LabelResponder: "slack", LabelVerdict: "retryable"}, 1},
		{"sauna_responder_attempts_total", map[string]string{LabelObserver: "obs", LabelResponder: "slack", LabelVerdict: "done"}, 1},
		{"sauna_responder_attempts_total", map[string]string{LabelObserver: "obs", LabelResponder: "slack", LabelVerdict: "permanent"}, 0},
		{"sauna_responder_attempt_duration_seconds", map[string]string{LabelObserver: "obs", LabelResponder: "slack", LabelVerdict: "retryable"}, 1},
		{"sauna_commands_in_flight", map[string]string{LabelObserver: "obs"}, 2},
	} {
		if got := mustSample(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if _, ok := sample(t, reg, "sauna_commands_total", cmd("slack", "executed", "ignored")); ok {
		t.Error("a reason was kept on a non-rejected outcome")
	}
	if got := o.State().InFlight; got != 2 {
		t.Errorf("state in-flight = %d, want 2", got)
	}
}

// TestSeriesNamesAndLabels pins the naming rules: every family is sauna_*,
// documented, and labelled only with bounded values (never a command id or a
// partition key).
func TestSeriesNamesAndLabels(t *testing.T) {
	m := New(Options{})
	m.ObserveReloads(func() ReloadStats {
		return ReloadStats{Rescans: 3, Applied: 2, Refused: 1, Refusing: 1, LastSuccess: time.Unix(1700000000, 0)}
	})
	m.ObservePaused(func() bool { return true })
	o := m.Observer("obs", "s", ObserverOptions{})
	k := o.NewKCL()
	_ = k.Start()
	k.LeaseGained("shardId-0")
	k.RecordGetRecordsTime("shardId-0", 1)
	k.RecordProcessRecordsTime("shardId-0", 1)
	k.MillisBehindLatest("shardId-0", 1)
	k.LeaseRenewed("shardId-0")
	k.IncrBytesProcessed("shardId-0", 1)
	k.IncrRecordsProcessed("shardId-0", 1)
	k.LeaseLost("shardId-0")
	k.LeaseGained("shardId-0")
	k.RecordGetRecordsTime("shardId-0", 1)
	k.MillisBehindLatest("shardId-0", 1)
	r := o.Responder("slack")
	for _, out := range verdict.Outcomes {
		r.Count(out, "r")
	}
	r.Attempt(responders.Done, time.Millisecond)
	o.AddInFlight(1)
	if _, err := NewCloudWatch(CloudWatchOptions{Client: &fakeCW{}, Namespace: "ns", Metrics: m, Observer: "obs"}); err != nil {
		t.Fatal(err)
	}
	m.cwDropped.WithLabelValues("obs", "overflow").Add(0)

	allowed := map[string]bool{LabelObserver: true, LabelStream: true, LabelShard: true, LabelResponder: true,
		LabelOutcome: true, LabelReason: true, LabelVerdict: true, LabelResult: true}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if !strings.HasPrefix(mf.GetName(), "sauna_") {
			t.Errorf("%s does not start with sauna_", mf.GetName())
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s has no help", mf.GetName())
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if !allowed[l.GetName()] {
					t.Errorf("%s has label %q", mf.GetName(), l.GetName())
				}
			}
		}
	}
	for _, want := range []string{
		"sauna_kinesis_records_total", "sauna_kinesis_bytes_total", "sauna_kinesis_millis_behind_latest",
		"sauna_kinesis_last_poll_timestamp_seconds", "sauna_kinesis_leases_gained_total", "sauna_kinesis_leases_lost_total",
		"sauna_kinesis_lease_renewals_total", "sauna_kinesis_get_records_duration_seconds",
		"sauna_kinesis_process_records_duration_seconds", "sauna_kinesis_leases_held", "sauna_observer_running",
		"sauna_commands_total", "sauna_commands_in_flight", "sauna_responder_attempts_total",
		"sauna_responder_attempt_duration_seconds", "sauna_config_rescans_total", "sauna_config_reloads_total",
		"sauna_config_refused_files", "sauna_config_last_reload_success_timestamp_seconds", "sauna_paused",
		"sauna_cloudwatch_datums_dropped_total",
	} {
		if !names[want] {
			t.Errorf("family %s missing", want)
		}
	}
	reg := m.Registry()
	if got := mustSample(t, reg, "sauna_config_reloads_total", map[string]string{LabelResult: "refused"}); got != 1 {
		t.Errorf("refused reloads = %v", got)
	}
	if got := mustSample(t, reg, "sauna_paused", map[string]string{}); got != 1 {
		t.Errorf("paused = %v", got)
	}

	o.Close()
	m.Forget("obs")
	mfs, _ = reg.Gather()
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == LabelObserver {
					t.Errorf("%s still has a series of the forgotten observer", mf.GetName())
				}
			}
		}
	}
}

func TestHandlerServesTheRegistry(t *testing.T) {
	m := New(Options{})
	m.Observer("obs", "s", ObserverOptions{}).Responder("slack").Count(verdict.Executed, "")
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := `sauna_commands_total{observer="obs",outcome="executed",reason="",responder="slack"} 1`; !strings.Contains(string(b), want) {
		t.Errorf("exposition lacks %q:\n%s", want, b)
	}
}

// TestHotPathDoesNotAllocate keeps the per-command recording cheap: the
// children are resolved once, so counting is a few atomic adds.
func TestHotPathDoesNotAllocate(t *testing.T) {
	m := New(Options{})
	cw, err := NewCloudWatch(CloudWatchOptions{Client: &fakeCW{}, Namespace: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		sink *CloudWatch
	}{{"prometheus only", nil}, {"with CloudWatch", cw}} {
		t.Run(c.name, func(t *testing.T) {
			o := m.Observer("obs-"+strings.ReplaceAll(c.name, " ", "-"), "s", ObserverOptions{CloudWatch: c.sink})
			r := o.Responder("slack")
			k := o.NewKCL()
			r.Count(verdict.Rejected, "expired")
			k.IncrRecordsProcessed("shardId-0", 1)
			if n := testing.AllocsPerRun(1000, func() {
				r := o.Responder("slack")
				r.Count(verdict.Executed, "")
				r.Attempt(responders.Done, time.Millisecond)
				o.AddInFlight(1)
				o.AddInFlight(-1)
				k.IncrRecordsProcessed("shardId-0", 10)
				k.IncrBytesProcessed("shardId-0", 1000)
			}); n > 0 {
				t.Errorf("%v allocations per command, want 0", n)
			}
			if n := testing.AllocsPerRun(1000, func() { r.Count(verdict.Rejected, "expired") }); n > 1 {
				t.Errorf("%v allocations per rejection, want at most 1", n)
			}
		})
	}
}

func BenchmarkCommandRecording(b *testing.B) {
	m := New(Options{})
	o := m.Observer("obs", "s", ObserverOptions{})
	for b.Loop() {
		r := o.Responder("slack")
		o.AddInFlight(1)
		r.Attempt(responders.Done, time.Millisecond)
		r.Count(verdict.Executed, "")
		o.AddInFlight(-1)
	}
}

// The lease table as last scanned shows in the state and as the worker
// gauge; handoffs count by kind; Forget drops both series.
func TestLeasesAndHandoffs(t *testing.T) {
	m := New(Options{})
	o := m.Observer("obs", "s", ObserverOptions{})
	leases := []LeaseState{{Shard: "shardId-0", Owner: "w1", Checkpoint: "7"}, {Shard: "shardId-1", HandoffTo: "w2"}}
	o.SetLeases(leases, 2)
	o.CountHandoff("graceful")
	o.CountHandoff("graceful")
	o.CountHandoff("expired")
	st := o.State()
	if diff := cmp.Diff(leases, st.Leases); diff != "" || st.Workers != 2 {
		t.Errorf("state leases (-want +got):\n%s\nworkers %d", diff, st.Workers)
	}
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	scrape := func() string {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	body := scrape()
	for _, want := range []string{
		`sauna_kinesis_workers{observer="obs",stream="s"} 2`,
		`sauna_kinesis_lease_handoffs_total{kind="graceful",observer="obs",stream="s"} 2`,
		`sauna_kinesis_lease_handoffs_total{kind="expired",observer="obs",stream="s"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("exposition lacks %q:\n%s", want, body)
		}
	}
	m.Forget("obs")
	if body := scrape(); strings.Contains(body, "sauna_kinesis_workers{") || strings.Contains(body, "sauna_kinesis_lease_handoffs_total{") {
		t.Errorf("series left after Forget:\n%s", body)
	}
}
