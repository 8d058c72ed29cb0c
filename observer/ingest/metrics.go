package ingest

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the ingest endpoint's series. One set serves every endpoint
// of the process.
type Metrics struct {
	requests *prometheus.CounterVec
	commands prometheus.Counter
	latency  *prometheus.HistogramVec
}

// NewMetrics registers the ingest series on reg (the process's private
// registry, metrics.Metrics.Registry).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sauna_ingest_requests_total",
			Help: "Requests to POST /v1/commands, by HTTP status code.",
		}, []string{"code"}),
		commands: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sauna_ingest_commands_total",
			Help: "Commands acknowledged by Kinesis and answered 202.",
		}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sauna_ingest_request_duration_seconds",
			Help:    "Time from reading a request to answering it, by HTTP status code.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"code"}),
	}
	reg.MustRegister(m.requests, m.commands, m.latency)
	return m
}

func (m *Metrics) observe(code, accepted int, took time.Duration) {
	if m == nil {
		return
	}
	c := strconv.Itoa(code)
	m.requests.WithLabelValues(c).Inc()
	m.latency.WithLabelValues(c).Observe(took.Seconds())
	if accepted > 0 {
		m.commands.Add(float64(accepted))
	}
}
