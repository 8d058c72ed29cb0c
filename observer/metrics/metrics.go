// Package metrics holds sauna's metrics: a private Prometheus registry served
// on the admin listener, the KCL MonitoringService adapter that feeds it, the
// counters command runs update (commands by verdict.Outcome, responder
// attempts), and an optional CloudWatch sink per observer.
//
// The KCL's bundled sinks are never used: its Prometheus sink registers on the
// global registry and the default mux (a second worker panics), and its
// CloudWatch sink has no endpoint override and buffers without bound.
//
// Every series is labelled by observer (and stream, shard or responder where
// they apply), never by command id or partition key: those are unbounded.
// Recording never blocks on I/O: Prometheus is pulled, and the CloudWatch sink
// aggregates in memory and sends from its own goroutine.
package metrics

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Label names.
const (
	LabelObserver  = "observer"
	LabelStream    = "stream"
	LabelShard     = "shard"
	LabelResponder = "responder"
	LabelOutcome   = "outcome"
	LabelReason    = "reason"
	LabelVerdict   = "verdict"
	LabelResult    = "result"
	LabelKind      = "kind"
)

// Buckets, in seconds. A GetRecords call takes milliseconds; a batch may
// take as long as its commands' retries, up to the iterator's 5 minutes; a
// responder attempt is one HTTP call with its client timeout.
var (
	getRecordsBuckets     = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	processRecordsBuckets = []float64{.001, .005, .01, .05, .1, .5, 1, 5, 10, 30, 60, 120, 300}
	responderBuckets      = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
)

// Metrics is the process's set of sauna metrics on a private registry. Build
// one per process with New and hand out per-observer handles with Observer.
type Metrics struct {
	reg *prometheus.Registry
	now func() time.Time

	records        *prometheus.CounterVec
	bytes          *prometheus.CounterVec
	behind         *prometheus.GaugeVec
	lastPoll       *prometheus.GaugeVec
	leasesGained   *prometheus.CounterVec
	leasesLost     *prometheus.CounterVec
	leaseRenewals  *prometheus.CounterVec
	getRecords     *prometheus.HistogramVec
	processRecords *prometheus.HistogramVec
	leasesHeld     *prometheus.GaugeVec
	running        *prometheus.GaugeVec
	handoffs       *prometheus.CounterVec
	workers        *prometheus.GaugeVec

	commands        *prometheus.CounterVec
	attempts        *prometheus.CounterVec
	attemptDuration *prometheus.HistogramVec
	idConflicts     *prometheus.CounterVec

	cwSent      *prometheus.CounterVec
	cwDropped   *prometheus.CounterVec
	cwPutErrors *prometheus.CounterVec
	cwBuffered  *prometheus.GaugeVec

	reloads funcCollector[ReloadStats]
	paused  funcCollector[bool]

	mu        sync.Mutex
	observers map[string]*Observer
}

// Options tune New.
type Options struct {
	// Now is the clock of the status timestamps (default time.Now).
	Now func() time.Time
}

// New builds the metric set on a fresh private registry. Any number of sets
// may coexist (tests build one each).
func New(opts Options) *Metrics {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	shardLabels := []string{LabelObserver, LabelStream, LabelShard}
	observerLabels := []string{LabelObserver, LabelStream}
	v := vecs{reg: prometheus.NewRegistry()}
	m := &Metrics{
		reg: v.reg,
		now: opts.Now,

		records: v.counter("sauna_kinesis_records_total",
			"Records read from a shard and handed to the record processor (KPL aggregates count once per user record).",
			shardLabels),
		bytes: v.counter("sauna_kinesis_bytes_total",
			"Payload bytes of the records read from a shard.",
			shardLabels),
		behind: v.gauge("sauna_kinesis_millis_behind_latest",
			"How far the last GetRecords response of a held shard was behind the tip of the stream, in milliseconds. Dropped when the lease is released.",
			shardLabels),
		lastPoll: v.gauge("sauna_kinesis_last_poll_timestamp_seconds",
			"Unix time of the last successful GetRecords of a held shard. Dropped when the lease is released.",
			shardLabels),
		leasesGained: v.counter("sauna_kinesis_leases_gained_total",
			"Shard leases this process acquired.",
			shardLabels),
		leasesLost: v.counter("sauna_kinesis_leases_lost_total",
			"Shard leases this process released or lost (shutdown, shard end, renewal failure, read error).",
			shardLabels),
		leaseRenewals: v.counter("sauna_kinesis_lease_renewals_total",
			"Successful renewals of held shard leases.",
			shardLabels),
		getRecords: v.histogram("sauna_kinesis_get_records_duration_seconds",
			"Time from the start of a GetRecords call to its records being ready for the processor.",
			getRecordsBuckets, shardLabels),
		processRecords: v.histogram("sauna_kinesis_process_records_duration_seconds",
			"Time the record processor spent on one batch, retries and checkpoint included.",
			processRecordsBuckets, shardLabels),
		leasesHeld: v.gauge("sauna_kinesis_leases_held",
			"Shard leases the observer's current worker holds.",
			observerLabels),
		running: v.gauge("sauna_observer_running",
			"1 while the observer's KCL worker is started and not stopped, else 0.",
			observerLabels),
		handoffs: v.counter("sauna_kinesis_lease_handoffs_total",
			"Shard leases that moved between workers through this process: graceful (handed over, or released to a peer at shutdown, after the final checkpoint), expired (taken from a worker that stopped renewing) or released (given up after a record stopped without an outcome, for any worker to read the shard again, this process after a wait that doubles with each release of the shard).",
			[]string{LabelObserver, LabelStream, LabelKind}),
		workers: v.gauge("sauna_kinesis_workers",
			"Live workers of the observer id sharing the stream, as the last lease table scan counted them (this one included).",
			observerLabels),

		commands: v.counter("sauna_commands_total",
			"Records with a final outcome: executed, rejected (reason says why), duplicate, dead_lettered, or failed (permanently, with no dead-letter stream).",
			[]string{LabelObserver, LabelResponder, LabelOutcome, LabelReason}),
		attempts: v.counter("sauna_responder_attempts_total",
			"Responder calls by verdict: done, retryable or permanent.",
			[]string{LabelObserver, LabelResponder, LabelVerdict}),
		attemptDuration: v.histogram("sauna_responder_attempt_duration_seconds",
			"Latency of one responder call, by verdict.",
			responderBuckets, []string{LabelObserver, LabelResponder, LabelVerdict}),
		idConflicts: v.counter("sauna_command_id_conflicts_total",
			"Commands whose commandId was already recorded for a different command (another schema or data); each ran as a command of its own. Counted once per command, by the responder of the later one.",
			[]string{LabelObserver, LabelResponder}),

		cwSent: v.counter("sauna_cloudwatch_datums_sent_total",
			"Metric datums CloudWatch accepted.",
			[]string{LabelObserver}),
		cwDropped: v.counter("sauna_cloudwatch_datums_dropped_total",
			"Metric datums given up: overflow (the buffer was full while CloudWatch was unreachable; the oldest go first) or rejected (CloudWatch refused the request as invalid).",
			[]string{LabelObserver, LabelReason}),
		cwPutErrors: v.counter("sauna_cloudwatch_put_errors_total",
			"Failed PutMetricData calls.",
			[]string{LabelObserver}),
		cwBuffered: v.gauge("sauna_cloudwatch_buffered_datums",
			"Metric datums waiting to be sent.",
			[]string{LabelObserver}),

		observers: map[string]*Observer{},
	}
	m.reloads.descs = []*prometheus.Desc{reloadRescansDesc, reloadsDesc, refusedFilesDesc, lastReloadDesc}
	m.reloads.collect = collectReloads
	m.paused.descs = []*prometheus.Desc{pausedDesc}
	m.paused.collect = collectPaused
	m.reg.MustRegister(&m.reloads, &m.paused, inFlightCollector{m})
	return m
}

// vecs builds New's metric vectors and registers each as it is built, so
// that a metric is declared in one place and cannot be left unregistered.
type vecs struct{ reg *prometheus.Registry }

func (v vecs) counter(name, help string, labels []string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	v.reg.MustRegister(c)
	return c
}

func (v vecs) gauge(name, help string, labels []string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	v.reg.MustRegister(g)
	return g
}

func (v vecs) histogram(name, help string, buckets []float64, labels []string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	v.reg.MustRegister(h)
	return h
}

// Registry returns the private registry, e.g. for a test's Gather.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// RegisterRuntime adds the standard go_* and process_* collectors. They are
// not sauna's own, so they are opt-in; call it once.
func (m *Metrics) RegisterRuntime() {
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
}

// Handler serves the registry in the Prometheus exposition formats. A
// collector error still serves what could be gathered: one bad series should
// not blind the whole scrape.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// ReloadStats is what sauna_config_* report about config-directory reloads.
type ReloadStats struct {
	// Rescans counts rescans of the directory, including no-op ones.
	Rescans uint64
	// Applied counts files added, changed or removed in the running set.
	Applied uint64
	// Refused counts file versions refused.
	Refused uint64
	// Refusing is the number of files whose current content is refused.
	Refusing int
	// LastSuccess is when a rescan last found every file usable.
	LastSuccess time.Time
}

var (
	reloadRescansDesc = prometheus.NewDesc("sauna_config_rescans_total",
		"Rescans of the config directory, including those that found nothing new.", nil, nil)
	reloadsDesc = prometheus.NewDesc("sauna_config_reloads_total",
		"Config file changes by result: applied (a file added, changed or removed in the running set) or refused (a file version that was invalid or conflicted; the last good version keeps running).",
		[]string{LabelResult}, nil)
	refusedFilesDesc = prometheus.NewDesc("sauna_config_refused_files",
		"Config files whose current content is refused.", nil, nil)
	lastReloadDesc = prometheus.NewDesc("sauna_config_last_reload_success_timestamp_seconds",
		"Unix time of the last rescan that found every config file usable.", nil, nil)
	pausedDesc = prometheus.NewDesc("sauna_paused",
		"1 while intake is paused from the admin API, else 0.", nil, nil)
	inFlightDesc = prometheus.NewDesc("sauna_commands_in_flight",
		"Commands taken from the stream that have no final outcome yet.", []string{LabelObserver}, nil)
)

// inFlightCollector reads each open observer handle's count at scrape time.
// A gauge moved by every handle would drift: commands a stopped run
// abandoned would stay counted, or be taken off the next run's count when
// they finally end.
type inFlightCollector struct{ m *Metrics }

func (c inFlightCollector) Describe(ch chan<- *prometheus.Desc) { ch <- inFlightDesc }

func (c inFlightCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	for id, o := range c.m.observers {
		ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(o.inFlight.Load()), id)
	}
}

func collectReloads(st ReloadStats, ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(reloadRescansDesc, prometheus.CounterValue, float64(st.Rescans))
	ch <- prometheus.MustNewConstMetric(reloadsDesc, prometheus.CounterValue, float64(st.Applied), "applied")
	ch <- prometheus.MustNewConstMetric(reloadsDesc, prometheus.CounterValue, float64(st.Refused), "refused")
	ch <- prometheus.MustNewConstMetric(refusedFilesDesc, prometheus.GaugeValue, float64(st.Refusing))
	if !st.LastSuccess.IsZero() {
		ch <- prometheus.MustNewConstMetric(lastReloadDesc, prometheus.GaugeValue, unixSeconds(st.LastSuccess))
	}
}

func collectPaused(p bool, ch chan<- prometheus.Metric) {
	v := 0.0
	if p {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(pausedDesc, prometheus.GaugeValue, v)
}

// ObserveReloads makes sauna_config_* read the reload state at each scrape,
// so the reloader needs no hook of its own. A later call replaces f.
func (m *Metrics) ObserveReloads(f func() ReloadStats) { m.reloads.set(f) }

// ObservePaused makes sauna_paused read the pause state at each scrape.
func (m *Metrics) ObservePaused(f func() bool) { m.paused.set(f) }

// funcCollector reads a value from a function at scrape time. Registered
// before the function is known, it emits nothing until set.
type funcCollector[T any] struct {
	descs   []*prometheus.Desc
	collect func(T, chan<- prometheus.Metric)
	f       atomic.Pointer[func() T]
}

func (c *funcCollector[T]) set(f func() T) { c.f.Store(&f) }

func (c *funcCollector[T]) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *funcCollector[T]) Collect(ch chan<- prometheus.Metric) {
	if f := c.f.Load(); f != nil && *f != nil {
		c.collect((*f)(), ch)
	}
}

// Observers returns the state of every open observer handle, by id.
func (m *Metrics) Observers() []ObserverState {
	m.mu.Lock()
	obs := make([]*Observer, 0, len(m.observers))
	for _, o := range m.observers {
		obs = append(obs, o)
	}
	m.mu.Unlock()
	out := make([]ObserverState, 0, len(obs))
	for _, o := range obs {
		out = append(out, o.State())
	}
	slices.SortFunc(out, func(a, b ObserverState) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Forget deletes every series labelled with the observer id, for an observer
// whose config is gone for good. A restarted or changed observer keeps its
// series, so counters stay continuous.
func (m *Metrics) Forget(observerID string) {
	l := prometheus.Labels{LabelObserver: observerID}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.records, m.bytes, m.behind, m.lastPoll, m.leasesGained, m.leasesLost, m.leaseRenewals,
		m.getRecords, m.processRecords, m.leasesHeld, m.running, m.handoffs, m.workers,
		m.commands, m.attempts, m.attemptDuration, m.idConflicts,
		m.cwSent, m.cwDropped, m.cwPutErrors, m.cwBuffered,
	} {
		v.DeletePartialMatch(l)
	}
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
