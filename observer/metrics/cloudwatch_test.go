package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/verdict"
)

// fakeCW records PutMetricData calls; put, if set, decides each call's
// result.
type fakeCW struct {
	mu    sync.Mutex
	ins   []*cloudwatch.PutMetricDataInput
	tries int
	put   func(ctx context.Context, in *cloudwatch.PutMetricDataInput) error
}

func (f *fakeCW) PutMetricData(ctx context.Context, in *cloudwatch.PutMetricDataInput, _ ...func(*cloudwatch.Options)) (*cloudwatch.PutMetricDataOutput, error) {
	f.mu.Lock()
	f.tries++
	put := f.put
	f.mu.Unlock()
	if put != nil {
		if err := put(ctx, in); err != nil {
			return nil, err
		}
	}
	// The sink reuses its buffer once a call returns.
	cp := *in
	cp.MetricData = slices.Clone(in.MetricData)
	f.mu.Lock()
	f.ins = append(f.ins, &cp)
	f.mu.Unlock()
	return &cloudwatch.PutMetricDataOutput{}, nil
}

func (f *fakeCW) calls() []*cloudwatch.PutMetricDataInput {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ins)
}

func (f *fakeCW) setPut(put func(ctx context.Context, in *cloudwatch.PutMetricDataInput) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.put = put
}

// datum is a comparable view of a MetricDatum.
type datum struct {
	Name                 string
	Dims                 string
	Unit                 types.StandardUnit
	Value                float64
	Count, Sum, Min, Max float64
}

func view(in []types.MetricDatum) []datum {
	out := make([]datum, 0, len(in))
	for _, d := range in {
		v := datum{Name: aws.ToString(d.MetricName), Unit: d.Unit}
		var dims []string
		for _, x := range d.Dimensions {
			dims = append(dims, aws.ToString(x.Name)+"="+aws.ToString(x.Value))
		}
		v.Dims = strings.Join(dims, ",")
		if d.Value != nil {
			v.Value = *d.Value
		}
		if s := d.StatisticValues; s != nil {
			v.Count, v.Sum, v.Min, v.Max = *s.SampleCount, *s.Sum, *s.Minimum, *s.Maximum
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b datum) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.Dims, b.Dims)
	})
	return out
}

func newSink(t *testing.T, opts CloudWatchOptions) *CloudWatch {
	t.Helper()
	if opts.Namespace == "" {
		opts.Namespace = "orders"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	cw, err := NewCloudWatch(opts)
	if err != nil {
		t.Fatal(err)
	}
	return cw
}

func TestCloudWatchFlushesEveryInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := &fakeCW{}
		cw := newSink(t, CloudWatchOptions{Client: fake, FlushInterval: 10 * time.Second})
		m := New(Options{})
		o := m.Observer("orders", "orders-stream", ObserverOptions{CloudWatch: cw})
		k := o.NewKCL()
		_ = k.Start()
		k.LeaseGained("shardId-0")

		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = cw.Run(ctx)
		}()

		k.IncrRecordsProcessed("shardId-0", 7)
		k.IncrRecordsProcessed("shardId-0", 3)
		k.MillisBehindLatest("shardId-0", 500)
		k.MillisBehindLatest("shardId-0", 100)
		o.Responder("slack").Count(verdict.Executed, "")
		o.Responder("slack").Attempt(0, 40*time.Millisecond)
		o.AddInFlight(2)

		time.Sleep(9 * time.Second)
		synctest.Wait()
		if n := len(fake.calls()); n != 0 {
			t.Fatalf("%d calls before the first interval ended", n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		calls := fake.calls()
		if len(calls) != 1 {
			t.Fatalf("%d calls after one interval, want 1", len(calls))
		}
		if ns := aws.ToString(calls[0].Namespace); ns != "orders" {
			t.Errorf("namespace %q", ns)
		}
		shard := "Shard=shardId-0,KinesisStreamName=orders-stream"
		want := []datum{
			{Name: "Commands", Dims: "Responder=slack,Outcome=executed", Unit: types.StandardUnitCount, Count: 1, Sum: 1, Min: 1, Max: 1},
			{Name: "CommandsInFlight", Dims: "KinesisStreamName=orders-stream", Unit: types.StandardUnitCount, Value: 2},
			{Name: "CurrentLeases", Dims: "KinesisStreamName=orders-stream", Unit: types.StandardUnitCount, Value: 1},
			{Name: "MillisBehindLatest", Dims: shard, Unit: types.StandardUnitMilliseconds, Count: 2, Sum: 600, Min: 100, Max: 500},
			{Name: "RecordsProcessed", Dims: shard, Unit: types.StandardUnitCount, Count: 2, Sum: 10, Min: 3, Max: 7},
			{Name: "ResponderAttempts", Dims: "Responder=slack,Verdict=done", Unit: types.StandardUnitCount, Count: 1, Sum: 1, Min: 1, Max: 1},
			{Name: "ResponderLatency", Dims: "Responder=slack,Verdict=done", Unit: types.StandardUnitMilliseconds, Count: 1, Sum: 40, Min: 40, Max: 40},
		}
		if diff := cmp.Diff(want, view(calls[0].MetricData)); diff != "" {
			t.Errorf("first flush (-want +got):\n%s", diff)
		}
		for _, d := range calls[0].MetricData {
			if got := aws.ToTime(d.Timestamp); !got.Equal(time.Now()) {
				t.Errorf("%s timestamp %v, want the flush time %v", aws.ToString(d.MetricName), got, time.Now())
			}
		}

		// A quiet interval sends only the gauges.
		time.Sleep(10 * time.Second)
		synctest.Wait()
		calls = fake.calls()
		if len(calls) != 2 {
			t.Fatalf("%d calls after two intervals, want 2", len(calls))
		}
		var names []string
		for _, d := range view(calls[1].MetricData) {
			names = append(names, d.Name)
		}
		if diff := cmp.Diff([]string{"CommandsInFlight", "CurrentLeases"}, names); diff != "" {
			t.Errorf("quiet flush (-want +got):\n%s", diff)
		}

		// Stopping sends what the last partial interval recorded.
		time.Sleep(3 * time.Second)
		k.IncrRecordsProcessed("shardId-0", 5)
		cancel()
		<-done
		calls = fake.calls()
		if len(calls) != 3 {
			t.Fatalf("%d calls after stop, want 3 (a final flush)", len(calls))
		}
		found := false
		for _, d := range view(calls[2].MetricData) {
			if d.Name == "RecordsProcessed" {
				found = d.Sum == 5
			}
		}
		if !found {
			t.Errorf("final flush lacks RecordsProcessed 5: %+v", view(calls[2].MetricData))
		}
		if st := cw.Stats(); st.Buffered != 0 || st.Dropped != 0 || st.PutErrors != 0 {
			t.Errorf("stats %+v", st)
		}
	})
}

func TestCloudWatchKeepsTheNewestWhenUnreachable(t *testing.T) {
	fake := &fakeCW{}
	unreachable := errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	fake.setPut(func(context.Context, *cloudwatch.PutMetricDataInput) error { return unreachable })
	m := New(Options{})
	cw := newSink(t, CloudWatchOptions{Client: fake, MaxBuffered: 5, Metrics: m, Observer: "orders"})
	s := cw.series("Probe", types.StandardUnitCount, dims("K", "v"))

	ctx := t.Context()
	for i := range 8 {
		s.observe(float64(i))
		if err := cw.Flush(ctx); !errors.Is(err, unreachable) {
			t.Fatalf("flush %d: %v, want the put error", i, err)
		}
	}
	st := cw.Stats()
	if diff := cmp.Diff(CloudWatchStats{Buffered: 5, Dropped: 3, PutErrors: 8}, st); diff != "" {
		t.Errorf("while unreachable (-want +got):\n%s", diff)
	}
	reg := m.Registry()
	if got := mustSample(t, reg, "sauna_cloudwatch_datums_dropped_total", map[string]string{LabelObserver: "orders", LabelReason: "overflow"}); got != 3 {
		t.Errorf("dropped counter %v, want 3", got)
	}
	if got := mustSample(t, reg, "sauna_cloudwatch_buffered_datums", map[string]string{LabelObserver: "orders"}); got != 5 {
		t.Errorf("buffered gauge %v, want 5", got)
	}

	fake.setPut(nil)
	s.observe(8)
	if err := cw.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var sums []float64
	for _, in := range fake.calls() {
		for _, d := range in.MetricData {
			sums = append(sums, *d.StatisticValues.Sum)
		}
	}
	// The buffer held 3..7; the ninth flush added 8 and pushed 3 out.
	if diff := cmp.Diff([]float64{4, 5, 6, 7, 8}, sums); diff != "" {
		t.Errorf("sent after recovery, oldest first (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(CloudWatchStats{Sent: 5, Dropped: 4, PutErrors: 8}, cw.Stats()); diff != "" {
		t.Errorf("after recovery (-want +got):\n%s", diff)
	}
	if got := mustSample(t, reg, "sauna_cloudwatch_datums_sent_total", map[string]string{LabelObserver: "orders"}); got != 5 {
		t.Errorf("sent counter %v, want 5", got)
	}
}

// TestRecordingNeverWaitsOnCloudWatch holds a PutMetricData call open (a
// black-holed endpoint) and records meanwhile: no recording call may wait
// for it. Under synctest the clock only moves when every goroutine is
// blocked, so a recording loop that finishes at the same instant never
// blocked.
func TestRecordingNeverWaitsOnCloudWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inPut := make(chan struct{}, 1)
		fake := &fakeCW{}
		fake.setPut(func(ctx context.Context, _ *cloudwatch.PutMetricDataInput) error {
			inPut <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		})
		cw := newSink(t, CloudWatchOptions{Client: fake, FlushInterval: time.Second, PutTimeout: 30 * time.Second, MaxBuffered: 100})
		m := New(Options{})
		o := m.Observer("orders", "s", ObserverOptions{CloudWatch: cw})
		k := o.NewKCL()
		_ = k.Start()
		k.LeaseGained("shardId-0")
		k.IncrRecordsProcessed("shardId-0", 1)

		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = cw.Run(ctx)
		}()
		time.Sleep(time.Second)
		<-inPut // the flush is now stuck in PutMetricData

		start := time.Now()
		r := o.Responder("slack")
		for i := range 10000 {
			o.AddInFlight(1)
			k.IncrRecordsProcessed("shardId-0", 1)
			k.MillisBehindLatest("shardId-0", float64(i))
			r.Attempt(0, time.Millisecond)
			r.Count(verdict.Executed, "")
			o.AddInFlight(-1)
		}
		if took := time.Since(start); took != 0 {
			t.Errorf("recording took %v of the fake clock while a put hung, want 0", took)
		}

		// The hung put ends at its timeout; its data stays buffered.
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if st := cw.Stats(); st.PutErrors == 0 || st.Buffered == 0 {
			t.Errorf("after the timeout: %+v, want a put error and buffered data", st)
		}
		fake.setPut(nil)
		cancel()
		<-done
		if st := cw.Stats(); st.Buffered != 0 {
			t.Errorf("after the final flush: %+v, want nothing buffered", st)
		}
	})
}

func apiError(status int, code string) error {
	return &awshttp.ResponseError{ResponseError: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
		Err:      &smithy.GenericAPIError{Code: code, Message: "test"},
	}}
}

func TestCloudWatchDropsWhatItRefusesButKeepsThrottled(t *testing.T) {
	for _, c := range []struct {
		err          error
		wantRejected uint64
		wantBuffered int
	}{
		{apiError(400, "InvalidParameterValue"), 2, 0},
		{apiError(400, "Throttling"), 0, 2},
		{apiError(403, "AccessDenied"), 0, 2},
		{apiError(500, "InternalServiceError"), 0, 2},
	} {
		t.Run(c.err.Error(), func(t *testing.T) {
			fake := &fakeCW{}
			fake.setPut(func(context.Context, *cloudwatch.PutMetricDataInput) error { return c.err })
			cw := newSink(t, CloudWatchOptions{Client: fake})
			cw.series("A", types.StandardUnitCount, nil).observe(1)
			cw.series("B", types.StandardUnitCount, nil).observe(1)
			_ = cw.Flush(t.Context())
			st := cw.Stats()
			if st.Rejected != c.wantRejected || st.Buffered != c.wantBuffered || st.PutErrors != 1 {
				t.Errorf("stats %+v, want rejected %d, buffered %d, 1 put error", st, c.wantRejected, c.wantBuffered)
			}
		})
	}
}

func TestCloudWatchBatchesAndSkipsNonFinite(t *testing.T) {
	fake := &fakeCW{}
	cw := newSink(t, CloudWatchOptions{Client: fake, MaxBatch: 3})
	for i := range 7 {
		s := cw.series("M", types.StandardUnitCount, dims("I", string(rune('a'+i))))
		s.observe(1)
		s.observe(nan())
	}
	cw.gauge("G", types.StandardUnitCount, nil, nan)
	if err := cw.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for _, in := range fake.calls() {
		sizes = append(sizes, len(in.MetricData))
		for _, d := range in.MetricData {
			if *d.StatisticValues.SampleCount != 1 {
				t.Errorf("%v: a NaN was counted", view([]types.MetricDatum{d}))
			}
		}
	}
	if diff := cmp.Diff([]int{3, 3, 1}, sizes); diff != "" {
		t.Errorf("batch sizes (-want +got):\n%s", diff)
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

func TestNewCloudWatchValidates(t *testing.T) {
	if _, err := NewCloudWatch(CloudWatchOptions{Namespace: "ns"}); err == nil {
		t.Error("no client accepted")
	}
	if _, err := NewCloudWatch(CloudWatchOptions{Client: &fakeCW{}, Namespace: "AWS/Kinesis"}); err == nil {
		t.Error("reserved namespace accepted")
	}
}

func TestValidNamespace(t *testing.T) {
	for ns, ok := range map[string]bool{
		"orders":                  true,
		"Sauna/prod-1_a.b#c:d e":  true,
		strings.Repeat("a", 255):  true,
		strings.Repeat("a", 256):  false,
		"":                        false,
		":x":                      false,
		"AWS/Kinesis":             false,
		"caf\u00e9":               false,
		"with\nnewline":           false,
		"observer-id.with_dots-1": true,
	} {
		if err := ValidNamespace(ns); (err == nil) != ok {
			t.Errorf("ValidNamespace(%q) = %v, want ok=%v", ns, err, ok)
		}
	}
}
