package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// series finds the series of family name whose labels are exactly want.
func series(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) (*dto.Metric, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelsEqual(m.GetLabel(), want) {
				return m, true
			}
		}
	}
	return nil, false
}

// sample returns the value of a series (see series): a counter's or gauge's
// value, or a histogram's count.
func sample(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) (float64, bool) {
	t.Helper()
	m, ok := series(t, reg, name, want)
	switch {
	case !ok:
	case m.Counter != nil:
		return m.GetCounter().GetValue(), true
	case m.Gauge != nil:
		return m.GetGauge().GetValue(), true
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount()), true
	}
	return 0, false
}

// mustSample is sample that fails the test when the series is missing.
func mustSample(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	v, ok := sample(t, reg, name, want)
	if !ok {
		t.Fatalf("no series %s%v", name, want)
	}
	return v
}

func histogramSum(t *testing.T, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	m, ok := series(t, reg, name, want)
	if !ok || m.Histogram == nil {
		t.Fatalf("no histogram %s%v", name, want)
	}
	return m.GetHistogram().GetSampleSum()
}

func labelsEqual(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
			return false
		}
	}
	return true
}

func shardLabels(observer, stream, shard string) map[string]string {
	return map[string]string{LabelObserver: observer, LabelStream: stream, LabelShard: shard}
}
