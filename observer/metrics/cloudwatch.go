package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
)

// CloudWatchAPI is the part of the CloudWatch client the sink uses.
type CloudWatchAPI interface {
	PutMetricData(ctx context.Context, in *cloudwatch.PutMetricDataInput, optFns ...func(*cloudwatch.Options)) (*cloudwatch.PutMetricDataOutput, error)
}

// Defaults of CloudWatchOptions.
const (
	DefaultFlushInterval = 10 * time.Second
	// DefaultMaxBuffered keeps roughly the last hour of a 4-shard observer
	// with a few responders while CloudWatch is unreachable, in a few MB.
	DefaultMaxBuffered = 10000
	// DefaultMaxBatch stays well under PutMetricData's limits (1000 datums,
	// 1 MB per request).
	DefaultMaxBatch          = 500
	DefaultPutTimeout        = 10 * time.Second
	DefaultFinalFlushTimeout = 5 * time.Second
)

// CloudWatchOptions configure a sink.
type CloudWatchOptions struct {
	// Client sends the data; build it with NewCloudWatchClient.
	Client CloudWatchAPI
	// Namespace receives every datum; required.
	Namespace string
	// FlushInterval is the aggregation period (default 10 s).
	FlushInterval time.Duration
	// MaxBuffered bounds the datums kept while CloudWatch cannot be reached;
	// beyond it the oldest are dropped and counted.
	MaxBuffered int
	// MaxBatch is the number of datums per PutMetricData call.
	MaxBatch int
	// PutTimeout bounds one PutMetricData call.
	PutTimeout time.Duration
	// FinalFlushTimeout bounds the flush Run does when its context ends.
	FinalFlushTimeout time.Duration
	Logger            *slog.Logger
	// Metrics and Observer, if set, export the sink's own counters
	// (sauna_cloudwatch_*) with that observer label.
	Metrics  *Metrics
	Observer string
}

// CloudWatch aggregates an observer's metrics in memory and publishes them
// with PutMetricData once per flush interval.
//
// Recording (from the KCL adapter and the per-command handles) takes one
// short per-series lock and never waits on the network. Each flush turns the
// interval's aggregates into datums (one StatisticSet per series, or the
// current value of a gauge), appends them to a bounded buffer, and sends the
// buffer oldest first. What CloudWatch could not take stays buffered for the
// next flush; when the buffer is full the oldest datums are dropped and
// counted, so an unreachable endpoint costs a fixed amount of memory.
type CloudWatch struct {
	client    CloudWatchAPI
	namespace string
	interval  time.Duration
	maxBuf    int
	maxBatch  int
	putTO     time.Duration
	finalTO   time.Duration
	log       *slog.Logger

	mu    sync.Mutex
	byKey map[string]*cwSeries
	order []*cwSeries

	// flushMu serialises flushes; buf is only touched under it.
	flushMu sync.Mutex
	buf     []types.MetricDatum
	failing bool

	buffered  atomic.Int64
	sent      atomic.Uint64
	overflow  atomic.Uint64
	rejected  atomic.Uint64
	putErrors atomic.Uint64

	promSent, promOverflow, promRejected, promErrors prometheus.Counter
	promBuffered                                     prometheus.Gauge
}

// NewCloudWatch builds a sink; it does nothing until Run or Flush.
func NewCloudWatch(opts CloudWatchOptions) (*CloudWatch, error) {
	if opts.Client == nil {
		return nil, errors.New("cloudwatch sink: no client")
	}
	if err := ValidNamespace(opts.Namespace); err != nil {
		return nil, fmt.Errorf("cloudwatch sink: %w", err)
	}
	if opts.FlushInterval <= 0 {
		opts.FlushInterval = DefaultFlushInterval
	}
	if opts.MaxBuffered <= 0 {
		opts.MaxBuffered = DefaultMaxBuffered
	}
	if opts.MaxBatch <= 0 || opts.MaxBatch > 1000 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.PutTimeout <= 0 {
		opts.PutTimeout = DefaultPutTimeout
	}
	if opts.FinalFlushTimeout <= 0 {
		opts.FinalFlushTimeout = DefaultFinalFlushTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &CloudWatch{
		client:    opts.Client,
		namespace: opts.Namespace,
		interval:  opts.FlushInterval,
		maxBuf:    opts.MaxBuffered,
		maxBatch:  opts.MaxBatch,
		putTO:     opts.PutTimeout,
		finalTO:   opts.FinalFlushTimeout,
		log:       opts.Logger.With("cloudwatch_namespace", opts.Namespace),
		byKey:     map[string]*cwSeries{},
	}
	if m := opts.Metrics; m != nil {
		id := opts.Observer
		c.promSent = m.cwSent.WithLabelValues(id)
		c.promOverflow = m.cwDropped.WithLabelValues(id, "overflow")
		c.promRejected = m.cwDropped.WithLabelValues(id, "rejected")
		c.promErrors = m.cwPutErrors.WithLabelValues(id)
		c.promBuffered = m.cwBuffered.WithLabelValues(id)
	} else {
		// Unregistered stand-ins keep the send path free of nil checks.
		c.promSent = prometheus.NewCounter(prometheus.CounterOpts{Name: "unused"})
		c.promOverflow, c.promRejected, c.promErrors = c.promSent, c.promSent, c.promSent
		c.promBuffered = prometheus.NewGauge(prometheus.GaugeOpts{Name: "unused"})
	}
	return c, nil
}

// Namespace returns the namespace the sink writes to.
func (c *CloudWatch) Namespace() string { return c.namespace }

// CloudWatchStats are the sink's counters.
type CloudWatchStats struct {
	// Buffered datums wait to be sent.
	Buffered int
	// Sent datums were accepted by CloudWatch.
	Sent uint64
	// Dropped datums were the oldest when the buffer was full.
	Dropped uint64
	// Rejected datums were in a request CloudWatch refused as invalid.
	Rejected uint64
	// PutErrors counts failed PutMetricData calls.
	PutErrors uint64
}

// Stats returns the sink's counters.
func (c *CloudWatch) Stats() CloudWatchStats {
	return CloudWatchStats{
		Buffered:  int(c.buffered.Load()),
		Sent:      c.sent.Load(),
		Dropped:   c.overflow.Load(),
		Rejected:  c.rejected.Load(),
		PutErrors: c.putErrors.Load(),
	}
}

// Run flushes every interval until ctx ends, then flushes once more within
// the final-flush timeout. It always returns nil: CloudWatch trouble is
// counted and logged, never a reason to stop the observer.
func (c *CloudWatch) Run(ctx context.Context) error {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.finalTO)
			_ = c.Flush(fctx)
			cancel()
			return nil
		case <-t.C:
			_ = c.Flush(ctx)
		}
	}
}

// Flush aggregates what was recorded since the last flush and sends every
// buffered datum it can. It returns the error that stopped the sending, if
// any; the unsent datums stay buffered.
func (c *CloudWatch) Flush(ctx context.Context) error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	c.collect(time.Now())
	err := c.send(ctx)
	c.buffered.Store(int64(len(c.buf)))
	c.promBuffered.Set(float64(len(c.buf)))
	return err
}

func (c *CloudWatch) collect(now time.Time) {
	c.mu.Lock()
	all := slices.Clone(c.order)
	gauges := make([]func() float64, len(all))
	for i, s := range all {
		gauges[i] = s.gauge
	}
	c.mu.Unlock()
	ts := aws.Time(now.UTC())
	for i, s := range all {
		d := types.MetricDatum{MetricName: &s.name, Dimensions: s.dims, Unit: s.unit, Timestamp: ts}
		if g := gauges[i]; g != nil {
			v := g()
			if !finite(v) {
				continue
			}
			d.Value = aws.Float64(v)
		} else {
			st, ok := s.take()
			if !ok {
				continue
			}
			d.StatisticValues = &st
		}
		c.buf = append(c.buf, d)
	}
	if n := len(c.buf) - c.maxBuf; n > 0 {
		// Drop the oldest: they are the least useful, and CloudWatch refuses
		// datums older than two weeks anyway.
		clear(c.buf[:n])
		c.buf = c.buf[n:]
		c.overflow.Add(uint64(n))
		c.promOverflow.Add(float64(n))
	}
}

func (c *CloudWatch) send(ctx context.Context) error {
	for len(c.buf) > 0 {
		n := min(c.maxBatch, len(c.buf))
		pctx, cancel := context.WithTimeout(ctx, c.putTO)
		_, err := c.client.PutMetricData(pctx, &cloudwatch.PutMetricDataInput{
			Namespace:  &c.namespace,
			MetricData: c.buf[:n],
		})
		cancel()
		if err == nil {
			c.sent.Add(uint64(n))
			c.promSent.Add(float64(n))
			c.drop(n)
			if c.failing {
				c.failing = false
				c.log.Info("CloudWatch accepts metrics again")
			}
			continue
		}
		c.putErrors.Add(1)
		c.promErrors.Inc()
		if invalidRequest(err) {
			// Sending the same datums again would fail the same way and block
			// the buffer behind them.
			c.rejected.Add(uint64(n))
			c.promRejected.Add(float64(n))
			c.drop(n)
			c.log.Error("CloudWatch refused metric data; dropping it", "datums", n, "err", err)
			continue
		}
		if !c.failing {
			c.failing = true
			c.log.Warn("cannot publish metrics to CloudWatch; keeping them buffered and retrying at the next flush",
				"buffered", len(c.buf), "max_buffered", c.maxBuf, "err", err)
		} else {
			c.log.Debug("cannot publish metrics to CloudWatch", "buffered", len(c.buf), "err", err)
		}
		return err
	}
	return nil
}

func (c *CloudWatch) drop(n int) {
	clear(c.buf[:n])
	c.buf = c.buf[n:]
	if len(c.buf) == 0 {
		// Let go of the array the dropped datums were in.
		c.buf = nil
	}
}

// invalidRequest reports a 400 other than throttling: CloudWatch answers
// InvalidParameterValue and the like with 400, and throttling with 400 too.
func invalidRequest(err error) bool {
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusBadRequest {
		return false
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException":
			return false
		}
	}
	return true
}

// cwSeries aggregates one metric name and dimension set over a flush
// interval. A nil series records nothing, so handles built without a sink
// need no checks.
type cwSeries struct {
	name string
	unit types.StandardUnit
	dims []types.Dimension
	// gauge, if set, is read at each flush instead of aggregating; guarded
	// by the sink's mu, since a new observer handle may replace it.
	gauge func() float64

	mu             sync.Mutex
	n, sum, lo, hi float64
}

func (s *cwSeries) observe(v float64) {
	if s == nil || !finite(v) {
		return
	}
	s.mu.Lock()
	if s.n == 0 {
		s.lo, s.hi = v, v
	} else {
		s.lo, s.hi = min(s.lo, v), max(s.hi, v)
	}
	s.n++
	s.sum += v
	s.mu.Unlock()
}

func (s *cwSeries) take() (types.StatisticSet, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n == 0 {
		return types.StatisticSet{}, false
	}
	st := types.StatisticSet{SampleCount: aws.Float64(s.n), Sum: aws.Float64(s.sum), Minimum: aws.Float64(s.lo), Maximum: aws.Float64(s.hi)}
	s.n, s.sum, s.lo, s.hi = 0, 0, 0, 0
	return st, true
}

// series returns the series of name and dimensions, creating it once.
func (c *CloudWatch) series(name string, unit types.StandardUnit, d []types.Dimension) *cwSeries {
	if c == nil {
		return nil
	}
	return c.add(&cwSeries{name: name, unit: unit, dims: d})
}

// gauge registers a series whose value is read at each flush.
func (c *CloudWatch) gauge(name string, unit types.StandardUnit, d []types.Dimension, f func() float64) {
	if c == nil {
		return
	}
	c.add(&cwSeries{name: name, unit: unit, dims: d, gauge: f})
}

func (c *CloudWatch) add(s *cwSeries) *cwSeries {
	key := dimsKey(s.name, s.dims)
	c.mu.Lock()
	defer c.mu.Unlock()
	if got, ok := c.byKey[key]; ok {
		if s.gauge != nil {
			// A new handle of the same observer takes over the gauge.
			got.gauge = s.gauge
		}
		return got
	}
	c.byKey[key] = s
	c.order = append(c.order, s)
	return s
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
