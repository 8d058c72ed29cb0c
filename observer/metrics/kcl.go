package metrics

import (
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/prometheus/client_golang/prometheus"
	kclmetrics "github.com/vmware/vmware-go-kcl-v2/clientlibrary/metrics"
)

// KCL is the KCL MonitoringService of one worker of an observer. Build a new
// one with Observer.NewKCL for every worker: only the newest updates the
// observer's state, so a worker abandoned at shutdown (its Shutdown can hang)
// cannot disturb its successor. Counters and timings of any generation are
// recorded, since that work did happen.
//
// The KCL calls it from its shard consumers, once per GetRecords batch; each
// call is a few atomic adds and at most one short lock.
type KCL struct {
	o   *Observer
	gen uint64
}

var _ kclmetrics.MonitoringService = (*KCL)(nil)

// NewKCL returns the MonitoringService for the observer's next worker and
// makes it the current one.
func (o *Observer) NewKCL() *KCL {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.gen++
	o.stopLocked()
	return &KCL{o: o, gen: o.gen}
}

// shardSeries are the per-shard children resolved once. Gauges are not
// cached: a released lease deletes them from their vectors, and a cached child
// would then be set without being exported.
type shardSeries struct {
	records, bytes                    prometheus.Counter
	gained, lost, renewed             prometheus.Counter
	getRecords, processRecords        prometheus.Observer
	cwRecords, cwBytes, cwBehind      *cwSeries
	cwGetRecords, cwProcess, cwRenews *cwSeries
}

func (o *Observer) shard(id string) *shardSeries {
	if s, ok := o.shardSeries.Load(id); ok {
		return s.(*shardSeries)
	}
	m := o.m
	// The KCL's bundled sink published these names and dimensions; keeping
	// them keeps Sauna users' dashboards and alarms working.
	d := dims("Shard", id, "KinesisStreamName", o.stream)
	s := &shardSeries{
		records:        m.records.WithLabelValues(o.id, o.stream, id),
		bytes:          m.bytes.WithLabelValues(o.id, o.stream, id),
		gained:         m.leasesGained.WithLabelValues(o.id, o.stream, id),
		lost:           m.leasesLost.WithLabelValues(o.id, o.stream, id),
		renewed:        m.leaseRenewals.WithLabelValues(o.id, o.stream, id),
		getRecords:     m.getRecords.WithLabelValues(o.id, o.stream, id),
		processRecords: m.processRecords.WithLabelValues(o.id, o.stream, id),
		cwRecords:      o.cw.series("RecordsProcessed", types.StandardUnitCount, d),
		cwBytes:        o.cw.series("DataBytesProcessed", types.StandardUnitBytes, d),
		cwBehind:       o.cw.series("MillisBehindLatest", types.StandardUnitMilliseconds, d),
		cwGetRecords:   o.cw.series("KinesisDataFetcher.getRecords.Time", types.StandardUnitMilliseconds, d),
		cwProcess:      o.cw.series("RecordProcessor.processRecords.Time", types.StandardUnitMilliseconds, d),
		cwRenews:       o.cw.series("RenewLease.Success", types.StandardUnitCount, d),
	}
	got, _ := o.shardSeries.LoadOrStore(id, s)
	return got.(*shardSeries)
}

// current runs f under the observer's lock if k is the newest adapter.
func (k *KCL) current(f func(o *Observer)) {
	o := k.o
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.gen == k.gen && !o.closed {
		f(o)
	}
}

// Init records the worker id. The KCL calls it on every worker start and
// only logs its error.
func (k *KCL) Init(_, _, workerID string) error {
	k.current(func(o *Observer) { o.workerID = workerID })
	return nil
}

// Start marks the worker running: the KCL calls it once its lease table is
// ready, just before its event loop starts.
func (k *KCL) Start() error {
	k.current(func(o *Observer) {
		o.running = true
		o.startedAt = o.m.now()
		o.m.running.WithLabelValues(o.id, o.stream).Set(1)
	})
	return nil
}

// Shutdown marks the worker stopped; the KCL calls it after every shard
// consumer ended. The CloudWatch sink is not stopped here: it belongs to the
// observer and outlives its workers.
func (k *KCL) Shutdown() {
	k.current(func(o *Observer) { o.stopLocked() })
}

// IncrRecordsProcessed counts the records of one batch (zero for an empty
// poll, which still tells CloudWatch the shard is read).
func (k *KCL) IncrRecordsProcessed(shard string, count int) {
	s := k.o.shard(shard)
	s.records.Add(float64(count))
	s.cwRecords.observe(float64(count))
}

// IncrBytesProcessed counts the payload bytes of one batch.
func (k *KCL) IncrBytesProcessed(shard string, count int64) {
	s := k.o.shard(shard)
	s.bytes.Add(float64(count))
	s.cwBytes.observe(float64(count))
}

// MillisBehindLatest records the lag the last GetRecords reported.
func (k *KCL) MillisBehindLatest(shard string, ms float64) {
	k.o.shard(shard).cwBehind.observe(ms)
	k.current(func(o *Observer) {
		st, ok := o.shards[shard]
		if !ok {
			return
		}
		st.behind = ms
		o.m.behind.WithLabelValues(o.id, o.stream, shard).Set(ms)
	})
}

// DeleteMetricMillisBehindLatest drops a shard's lag when its lease goes.
func (k *KCL) DeleteMetricMillisBehindLatest(shard string) {
	k.current(func(o *Observer) { o.m.behind.DeleteLabelValues(o.id, o.stream, shard) })
}

// LeaseGained records a new lease.
func (k *KCL) LeaseGained(shard string) {
	k.o.shard(shard).gained.Inc()
	k.current(func(o *Observer) {
		o.shards[shard] = &shardState{gained: o.m.now()}
		o.m.leasesHeld.WithLabelValues(o.id, o.stream).Set(float64(len(o.shards)))
	})
}

// LeaseLost records a released or lost lease. The KCL calls it whenever a
// shard consumer ends, whatever the reason.
func (k *KCL) LeaseLost(shard string) {
	k.o.shard(shard).lost.Inc()
	k.current(func(o *Observer) {
		delete(o.shards, shard)
		o.dropShardGaugesLocked(shard)
		o.m.leasesHeld.WithLabelValues(o.id, o.stream).Set(float64(len(o.shards)))
	})
}

// LeaseRenewed records a renewal.
func (k *KCL) LeaseRenewed(shard string) {
	s := k.o.shard(shard)
	s.renewed.Inc()
	s.cwRenews.observe(1)
}

// RecordGetRecordsTime records a GetRecords call's duration in milliseconds.
// The KCL calls it as soon as the call returned, before the batch is
// processed, so it also marks the shard as polled.
func (k *KCL) RecordGetRecordsTime(shard string, ms float64) {
	s := k.o.shard(shard)
	s.getRecords.Observe(ms / 1000)
	s.cwGetRecords.observe(ms)
	k.current(func(o *Observer) {
		st, ok := o.shards[shard]
		if !ok {
			return
		}
		st.lastPoll = o.m.now()
		o.m.lastPoll.WithLabelValues(o.id, o.stream, shard).Set(unixSeconds(st.lastPoll))
	})
}

// RecordProcessRecordsTime records how long ProcessRecords took, in
// milliseconds.
func (k *KCL) RecordProcessRecordsTime(shard string, ms float64) {
	s := k.o.shard(shard)
	s.processRecords.Observe(ms / 1000)
	s.cwProcess.observe(ms)
}
