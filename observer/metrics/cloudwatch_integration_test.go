package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
)

// motoSum reads back the Sum of one metric over the last hour. moto's
// GetMetricData ignores the namespace when dimensions are given, so callers
// use dimension values unique to the test.
func motoSum(t *testing.T, reader *cloudwatch.Client, ns, name string, d []types.Dimension) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	now := time.Now()
	out, err := reader.GetMetricData(ctx, &cloudwatch.GetMetricDataInput{
		StartTime: aws.Time(now.Add(-time.Hour)),
		EndTime:   aws.Time(now.Add(time.Hour)),
		MetricDataQueries: []types.MetricDataQuery{{
			Id: aws.String("q"),
			MetricStat: &types.MetricStat{
				Metric: &types.Metric{Namespace: aws.String(ns), MetricName: aws.String(name), Dimensions: d},
				Period: aws.Int32(60),
				Stat:   aws.String("Sum"),
			},
		}},
	})
	if err != nil {
		t.Fatalf("GetMetricData %s: %v", name, err)
	}
	sum := 0.0
	for _, r := range out.MetricDataResults {
		for _, v := range r.Values {
			sum += v
		}
	}
	return sum
}

func metricNames(t *testing.T, reader *cloudwatch.Client, ns string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	seen := map[string]bool{}
	p := cloudwatch.NewListMetricsPaginator(reader, &cloudwatch.ListMetricsInput{Namespace: aws.String(ns)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListMetrics: %v", err)
		}
		for _, m := range page.Metrics {
			seen[aws.ToString(m.MetricName)] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// feed records a run's worth of KCL and command metrics: 40 shards, so
// that one flush is well above the SDK's 10 KiB compression threshold.
func feed(o *Observer, module string) *KCL {
	k := o.NewKCL()
	_ = k.Init(o.id, o.stream, "test-worker")
	_ = k.Start()
	for i := range 40 {
		shard := fmt.Sprintf("shardId-%012d", i)
		k.LeaseGained(shard)
		k.RecordGetRecordsTime(shard, 12)
		k.IncrRecordsProcessed(shard, 10)
		k.IncrBytesProcessed(shard, 1000)
		k.MillisBehindLatest(shard, 0)
		k.RecordProcessRecordsTime(shard, 30)
		k.LeaseRenewed(shard)
	}
	r := o.Responder(module)
	for range 3 {
		r.Attempt(responders.Done, 20*time.Millisecond)
		r.Count(verdict.Executed, "")
	}
	r.Count(verdict.Rejected, string(responders.ReasonExpired))
	return k
}

func TestCloudWatchSinkAgainstMoto(t *testing.T) {
	env := emulator.FromEnv()
	reader := env.CloudWatch(t)
	ns := emulator.UniqueName(t, "ns")
	stream := emulator.UniqueName(t, "stream")
	module := emulator.UniqueName(t, "resp")

	client := NewCloudWatchClient(env.AWSConfig(t), func(o *cloudwatch.Options) {
		o.BaseEndpoint = aws.String(env.CloudWatchURL)
	})
	m := New(Options{})
	cw, err := NewCloudWatch(CloudWatchOptions{Client: client, Namespace: ns, Metrics: m, Observer: "obs",
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	o := m.Observer("obs", stream, ObserverOptions{CloudWatch: cw})
	k := feed(o, module)
	if err := cw.Flush(t.Context()); err != nil {
		t.Fatalf("flush: %v", err)
	}
	// A second interval adds to the first.
	k.IncrRecordsProcessed("shardId-000000000007", 5)
	if err := cw.Flush(t.Context()); err != nil {
		t.Fatalf("second flush: %v", err)
	}
	st := cw.Stats()
	if st.Sent < 40*6 || st.Buffered != 0 || st.PutErrors != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}

	shard7 := dims("Shard", "shardId-000000000007", "KinesisStreamName", stream)
	for _, c := range []struct {
		name string
		d    []types.Dimension
		want float64
	}{
		{"RecordsProcessed", shard7, 15},
		{"DataBytesProcessed", shard7, 1000},
		{"RenewLease.Success", shard7, 1},
		{"KinesisDataFetcher.getRecords.Time", shard7, 12},
		{"Commands", dims("Responder", module, "Outcome", "executed"), 3},
		{"Commands", dims("Responder", module, "Outcome", "rejected", "Reason", "expired"), 1},
		{"ResponderAttempts", dims("Responder", module, "Verdict", "done"), 3},
		{"ResponderLatency", dims("Responder", module, "Verdict", "done"), 60},
	} {
		if got := motoSum(t, reader, ns, c.name, c.d); got != c.want {
			t.Errorf("%s %s: Sum = %v, want %v", c.name, view([]types.MetricDatum{{Dimensions: c.d}})[0].Dims, got, c.want)
		}
	}
	names := metricNames(t, reader, ns)
	for _, want := range []string{"Commands", "CommandsInFlight", "CurrentLeases", "DataBytesProcessed", "KinesisDataFetcher.getRecords.Time",
		"MillisBehindLatest", "RecordProcessor.processRecords.Time", "RecordsProcessed", "RenewLease.Success", "ResponderAttempts", "ResponderLatency"} {
		if !slices.Contains(names, want) {
			t.Errorf("ListMetrics(%s) lacks %s: %v", ns, want, names)
		}
	}
	if got := mustSample(t, m.Registry(), "sauna_cloudwatch_datums_sent_total", map[string]string{LabelObserver: "obs"}); got != float64(st.Sent) {
		t.Errorf("sent counter %v, want %d", got, st.Sent)
	}
}

// TestCloudWatchClientFollowsEndpointEnv checks AWS_ENDPOINT_URL_CLOUDWATCH
// both for a hand-built aws.Config and for one from LoadDefaultConfig (the
// observer's kind).
func TestCloudWatchClientFollowsEndpointEnv(t *testing.T) {
	env := emulator.FromEnv()
	reader := env.CloudWatch(t)
	t.Setenv("AWS_ENDPOINT_URL_CLOUDWATCH", env.CloudWatchURL)
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "")
	// LoadDefaultConfig must see nothing of a developer's own AWS setup.
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_ACCESS_KEY_ID", emulator.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", emulator.SecretAccessKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", emulator.Region)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")

	loaded, err := awsconfig.LoadDefaultConfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]aws.Config{"by hand": env.AWSConfig(t), "LoadDefaultConfig": loaded} {
		t.Run(name, func(t *testing.T) {
			ns := emulator.UniqueName(t, "ns")
			cw, err := NewCloudWatch(CloudWatchOptions{Client: NewCloudWatchClient(cfg), Namespace: ns, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			probe := emulator.UniqueName(t, "probe")
			cw.series("Probe", types.StandardUnitCount, dims("Probe", probe)).observe(4)
			if err := cw.Flush(t.Context()); err != nil {
				t.Fatalf("flush: %v", err)
			}
			if got := motoSum(t, reader, ns, "Probe", dims("Probe", probe)); got != 4 {
				t.Errorf("Sum = %v, want 4", got)
			}
		})
	}
}

// TestCloudWatchSinkUnreachable runs the sink against endpoints that never
// take the data, a closed port and a listener that never answers, while a
// processing loop records metrics: the loop must never wait, the buffer must
// stay within its bound, and the drops must be counted.
func TestCloudWatchSinkUnreachable(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held sync.WaitGroup
	var connsMu sync.Mutex
	var conns []net.Conn
	held.Go(func() {
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
		}
	})
	t.Cleanup(func() {
		hole.Close()
		held.Wait()
		connsMu.Lock()
		defer connsMu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})

	cfg := emulator.Env{}.AWSConfig(t)
	for name, endpoint := range map[string]string{"closed port": closedAddr, "black hole": hole.Addr().String()} {
		t.Run(name, func(t *testing.T) {
			const maxBuffered = 60
			client := NewCloudWatchClient(cfg, func(o *cloudwatch.Options) { o.BaseEndpoint = aws.String("http://" + endpoint) })
			m := New(Options{})
			cw, err := NewCloudWatch(CloudWatchOptions{
				Client: client, Namespace: "unreachable", FlushInterval: 20 * time.Millisecond,
				PutTimeout: 150 * time.Millisecond, FinalFlushTimeout: 150 * time.Millisecond,
				MaxBuffered: maxBuffered, Metrics: m, Observer: "obs", Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				t.Fatal(err)
			}
			o := m.Observer("obs", "s", ObserverOptions{CloudWatch: cw})
			k := o.NewKCL()
			_ = k.Start()
			shards := []string{"shardId-0", "shardId-1", "shardId-2", "shardId-3"}
			for _, s := range shards {
				k.LeaseGained(s)
			}
			r := o.Responder("slack")

			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = cw.Run(ctx)
			}()

			maxSeen := 0
			deadline := time.Now().Add(20 * time.Second)
			for cw.Stats().Dropped == 0 || cw.Stats().PutErrors < 3 {
				if time.Now().After(deadline) {
					t.Fatalf("no drops after 20 s: %+v", cw.Stats())
				}
				for _, s := range shards {
					k.RecordGetRecordsTime(s, 5)
					k.IncrRecordsProcessed(s, 10)
					k.IncrBytesProcessed(s, 1000)
					k.MillisBehindLatest(s, 0)
					k.RecordProcessRecordsTime(s, 3)
				}
				o.AddInFlight(1)
				r.Attempt(responders.Done, time.Millisecond)
				r.Count(verdict.Executed, "")
				o.AddInFlight(-1)
				maxSeen = max(maxSeen, cw.Stats().Buffered)
				time.Sleep(time.Millisecond)
			}
			cancel()
			<-done

			st := cw.Stats()
			if maxSeen > maxBuffered || st.Buffered > maxBuffered {
				t.Errorf("buffer grew to %d (now %d), bound %d", maxSeen, st.Buffered, maxBuffered)
			}
			if st.Sent != 0 {
				t.Errorf("sent %d datums to an unreachable endpoint", st.Sent)
			}
			// That recording never waits on an unreachable CloudWatch is
			// TestRecordingNeverWaitsOnCloudWatch's, exactly (synctest): a
			// wall-clock bound here would only measure the machine.
			if got := mustSample(t, m.Registry(), "sauna_cloudwatch_datums_dropped_total", map[string]string{LabelObserver: "obs", LabelReason: "overflow"}); got != float64(st.Dropped) || got == 0 {
				t.Errorf("dropped counter %v, stats %+v", got, st)
			}
		})
	}
}
