package metrics

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
)

// ObserverOptions configure an observer handle.
type ObserverOptions struct {
	// CloudWatch, if set, also receives the observer's metrics. The caller
	// runs and stops it.
	CloudWatch *CloudWatch
}

// Observer is the metrics handle of one observer config. It outlives the
// observer's KCL workers: each worker gets its own MonitoringService from
// NewKCL, and the handle keeps the state /status and /readyz report (worker
// running, leases held, last poll per shard, in-flight commands, last error).
//
// Every method is safe for concurrent use and does no I/O.
type Observer struct {
	m      *Metrics
	id     string
	stream string
	cw     *CloudWatch

	inFlight    atomic.Int64
	responders  sync.Map // module name → *Responder
	shardSeries sync.Map // shard id → *shardSeries

	mu sync.Mutex
	// gen numbers the KCL adapters; only the newest one changes the state, so
	// a worker abandoned at shutdown cannot mark the next one's shards lost.
	gen       uint64
	running   bool
	workerID  string
	startedAt time.Time
	shards    map[string]*shardState
	lastErr   string
	lastErrAt time.Time
	closed    bool
	leases    []LeaseState
	workers   int
}

type shardState struct {
	gained   time.Time
	lastPoll time.Time
	behind   float64
}

// Observer returns a new handle for the observer id reading stream, and
// makes it the one Observers reports for that id (it inherits the last error
// of the handle it replaces). Handles of one id share their series, so a
// restarted observer continues its counters.
func (m *Metrics) Observer(id, stream string, opts ObserverOptions) *Observer {
	o := &Observer{
		m:      m,
		id:     id,
		stream: stream,
		cw:     opts.CloudWatch,
		shards: map[string]*shardState{},
	}
	m.running.WithLabelValues(id, stream).Set(0)
	m.leasesHeld.WithLabelValues(id, stream).Set(0)
	if o.cw != nil {
		streamDim := dims("KinesisStreamName", stream)
		o.cw.gauge("CurrentLeases", types.StandardUnitCount, streamDim, func() float64 {
			o.mu.Lock()
			defer o.mu.Unlock()
			return float64(len(o.shards))
		})
		o.cw.gauge("CommandsInFlight", types.StandardUnitCount, streamDim, func() float64 {
			return float64(o.inFlight.Load())
		})
	}
	m.mu.Lock()
	if prev := m.observers[id]; prev != nil {
		// A restart after a failure keeps showing why it restarted.
		prev.mu.Lock()
		o.lastErr, o.lastErrAt = prev.lastErr, prev.lastErrAt
		prev.mu.Unlock()
	}
	m.observers[id] = o
	m.mu.Unlock()
	return o
}

// ID returns the observer id.
func (o *Observer) ID() string { return o.id }

// Close stops reporting the observer in Observers and marks its worker
// stopped. Its series stay (see Metrics.Forget).
func (o *Observer) Close() {
	o.mu.Lock()
	o.closed = true
	o.stopLocked()
	o.mu.Unlock()
	o.m.mu.Lock()
	if o.m.observers[o.id] == o {
		delete(o.m.observers, o.id)
	}
	o.m.mu.Unlock()
}

// WorkerStopped records that the current worker ended, with the error that
// ended it (nil for a requested stop). Its leases are no longer counted as
// held, even if the worker was abandoned before it released them.
func (o *Observer) WorkerStopped(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.stopLocked()
	if err != nil {
		o.setErrLocked(err)
	}
}

// ReportError records err as the observer's last error, e.g. a start that
// failed before any worker existed.
func (o *Observer) ReportError(err error) {
	if err == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.setErrLocked(err)
}

func (o *Observer) setErrLocked(err error) {
	o.lastErr = err.Error()
	o.lastErrAt = o.m.now()
}

func (o *Observer) stopLocked() {
	o.running = false
	o.m.running.WithLabelValues(o.id, o.stream).Set(0)
	for shard := range o.shards {
		o.dropShardGaugesLocked(shard)
	}
	clear(o.shards)
	o.m.leasesHeld.WithLabelValues(o.id, o.stream).Set(0)
}

func (o *Observer) dropShardGaugesLocked(shard string) {
	o.m.behind.DeleteLabelValues(o.id, o.stream, shard)
	o.m.lastPoll.DeleteLabelValues(o.id, o.stream, shard)
}

// AddInFlight moves the in-flight count by delta: +1 when a record is taken,
// -1 when it has its final outcome.
func (o *Observer) AddInFlight(delta int) { o.inFlight.Add(int64(delta)) }

// ObserverState is a snapshot of one observer for /status and /readyz.
type ObserverState struct {
	ID       string
	Stream   string
	WorkerID string
	// Running is true from the worker's start until it stops.
	Running   bool
	StartedAt time.Time
	// Shards are the leases the current worker holds, by shard id.
	Shards []ShardState
	// MillisBehindLatest is the largest lag among the held shards.
	MillisBehindLatest int64
	InFlight           int64
	LastError          string
	LastErrorAt        time.Time
	// Leases is the whole lease table as this worker's last scan saw it
	// (every worker's shards), and Workers the live workers it counted.
	Leases  []LeaseState
	Workers int
}

// LeaseState is one shard's lease in the lease table.
type LeaseState struct {
	Shard      string
	Owner      string // "" when none
	Checkpoint string
	// HandoffTo is the worker that asked for the lease, or that it is
	// reserved for after a handoff; "" when none.
	HandoffTo string
}

// SetLeases records the last lease table scan: every shard's lease and the
// number of live workers.
func (o *Observer) SetLeases(leases []LeaseState, workers int) {
	o.m.workers.WithLabelValues(o.id, o.stream).Set(float64(workers))
	o.mu.Lock()
	defer o.mu.Unlock()
	o.leases, o.workers = leases, workers
}

// CountHandoff counts one lease moved between workers; kind is "graceful",
// "expired" or "released".
func (o *Observer) CountHandoff(kind string) {
	o.m.handoffs.WithLabelValues(o.id, o.stream, kind).Inc()
}

// ShardState is one held lease.
type ShardState struct {
	ID            string
	LeaseGainedAt time.Time
	// LastPollAt is when the last GetRecords call returned; zero before the
	// first one (a child shard waits for its parent first).
	LastPollAt         time.Time
	MillisBehindLatest int64
}

// State returns a snapshot of the observer.
func (o *Observer) State() ObserverState {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := ObserverState{
		ID:          o.id,
		Stream:      o.stream,
		WorkerID:    o.workerID,
		Running:     o.running,
		StartedAt:   o.startedAt,
		InFlight:    o.inFlight.Load(),
		LastError:   o.lastErr,
		LastErrorAt: o.lastErrAt,
		Leases:      slices.Clone(o.leases),
		Workers:     o.workers,
	}
	for _, id := range slices.Sorted(maps.Keys(o.shards)) {
		s := o.shards[id]
		b := int64(s.behind)
		st.Shards = append(st.Shards, ShardState{ID: id, LeaseGainedAt: s.gained, LastPollAt: s.lastPoll, MillisBehindLatest: b})
		st.MillisBehindLatest = max(st.MillisBehindLatest, b)
	}
	return st
}

// Responder returns the handle that counts the commands of one responder
// module ("" for records rejected before a module was known). Handles are
// cached: keep the result, or call this per command (one map read).
func (o *Observer) Responder(module string) *Responder {
	if r, ok := o.responders.Load(module); ok {
		return r.(*Responder)
	}
	r, _ := o.responders.LoadOrStore(module, o.newResponder(module))
	return r.(*Responder)
}

// Responder counts one responder module's commands for one observer. Its
// counters are resolved once, so recording is a few atomic adds.
type Responder struct {
	o      *Observer
	module string

	outcomes  [len(verdict.Outcomes)]counter
	conflicts counter
	rejected  sync.Map // reason → *counter
	attempts  [numVerdicts]counter
	latency   [numVerdicts]prometheus.Observer
	cwLatency [numVerdicts]*cwSeries
}

// counter pairs a Prometheus child with its CloudWatch series (nil when the
// sink is off).
type counter struct {
	prom prometheus.Counter
	cw   *cwSeries
}

func (c *counter) add(v float64) {
	c.prom.Add(v)
	c.cw.observe(v)
}

// Verdicts are indexed by responders.Verdict.
const numVerdicts = int(responders.Fail) + 1

func (o *Observer) newResponder(module string) *Responder {
	m := o.m
	r := &Responder{o: o, module: module}
	for i, out := range verdict.Outcomes {
		if out == verdict.Rejected {
			continue // by reason, on demand
		}
		r.outcomes[i] = counter{
			prom: m.commands.WithLabelValues(o.id, module, string(out), ""),
			cw:   o.cw.series("Commands", types.StandardUnitCount, commandDims(module, out, "")),
		}
	}
	r.conflicts = counter{
		prom: m.idConflicts.WithLabelValues(o.id, module),
		cw:   o.cw.series("CommandIdConflicts", types.StandardUnitCount, dims("Responder", orNone(module))),
	}
	for v := range numVerdicts {
		name := responders.Verdict(v).String()
		r.attempts[v] = counter{
			prom: m.attempts.WithLabelValues(o.id, module, name),
			cw:   o.cw.series("ResponderAttempts", types.StandardUnitCount, dims("Responder", orNone(module), "Verdict", name)),
		}
		r.latency[v] = m.attemptDuration.WithLabelValues(o.id, module, name)
		r.cwLatency[v] = o.cw.series("ResponderLatency", types.StandardUnitMilliseconds, dims("Responder", orNone(module), "Verdict", name))
	}
	return r
}

// Count records a record's final outcome. reason is kept only for
// verdict.Rejected (a responders.Reason); other outcomes are counted with an
// empty reason.
func (r *Responder) Count(out verdict.Outcome, reason string) {
	switch i := out.Index(); {
	case out == verdict.Rejected:
		r.rejectedCounter(reason).add(1)
	case i >= 0:
		r.outcomes[i].add(1)
	}
}

func (r *Responder) rejectedCounter(reason string) *counter {
	if c, ok := r.rejected.Load(reason); ok {
		return c.(*counter)
	}
	c := &counter{
		prom: r.o.m.commands.WithLabelValues(r.o.id, r.module, string(verdict.Rejected), reason),
		cw:   r.o.cw.series("Commands", types.StandardUnitCount, commandDims(r.module, verdict.Rejected, reason)),
	}
	got, _ := r.rejected.LoadOrStore(reason, c)
	return got.(*counter)
}

// CommandIDConflict counts a command that ran although its commandId was
// already recorded for a different command.
func (r *Responder) CommandIDConflict() { r.conflicts.add(1) }

// Attempt records one responder call: its verdict and how long it took.
func (r *Responder) Attempt(v responders.Verdict, took time.Duration) {
	if v < 0 || int(v) >= numVerdicts {
		return
	}
	r.attempts[v].add(1)
	r.latency[v].Observe(took.Seconds())
	r.cwLatency[v].observe(float64(took) / float64(time.Millisecond))
}

func commandDims(module string, out verdict.Outcome, reason string) []types.Dimension {
	d := dims("Responder", orNone(module), "Outcome", string(out))
	if reason != "" {
		d = append(d, dims("Reason", reason)...)
	}
	return d
}

// orNone names the missing responder of a record rejected before its module
// was known: CloudWatch refuses empty dimension values.
func orNone(module string) string {
	if module == "" {
		return "none"
	}
	return module
}

func dims(kv ...string) []types.Dimension {
	d := make([]types.Dimension, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		name, value := kv[i], kv[i+1]
		d = append(d, types.Dimension{Name: &name, Value: &value})
	}
	return d
}

// dimsKey identifies a series by name and dimensions.
func dimsKey(name string, d []types.Dimension) string {
	var b strings.Builder
	b.WriteString(name)
	for _, x := range d {
		b.WriteByte(0)
		b.WriteString(*x.Name)
		b.WriteByte('=')
		b.WriteString(*x.Value)
	}
	return b.String()
}
