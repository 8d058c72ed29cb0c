package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
)

// adminURL waits for the admin listener's log line and returns its base URL.
func (p *process) adminURL(t testing.TB) string {
	t.Helper()
	rec := p.waitLogs(t, 1, giveUp, msgIs("admin endpoints listening"))
	return "http://" + fmt.Sprint(rec[0]["addr"])
}

func httpDo(t testing.TB, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// promValue finds a sample in a text exposition. labels must list every
// label of the series, in any order.
func promValue(body, name string, labels map[string]string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		got := map[string]string{}
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			for _, pair := range strings.Split(rest[1:end], ",") {
				if k, v, ok := strings.Cut(pair, "="); ok {
					got[k] = strings.Trim(v, `"`)
				}
			}
			rest = rest[end+1:]
		}
		if len(got) != len(labels) {
			continue
		}
		match := true
		for k, v := range labels {
			match = match && got[k] == v
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}

// promSum adds up the samples of name whose labels include want.
func promSum(body, name string, want map[string]string) float64 {
	sum := 0.0
	for _, line := range strings.Split(body, "\n") {
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		end := strings.Index(rest, "}")
		match := true
		for k, v := range want {
			match = match && strings.Contains(rest[:end], k+`="`+v+`"`)
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(rest[end+1:]), 64); match && err == nil {
			sum += v
		}
	}
	return sum
}

// TestOperationsEndToEnd runs the binary with its admin endpoints: /readyz
// turns ready once the leases are held, /metrics counts what was published
// and rejected, a pause holds intake without losing what arrives meanwhile,
// /status describes the daemon, the CloudWatch sink publishes to moto, and
// no planted secret leaves the process through the log or the endpoints.
func TestOperationsEndToEnd(t *testing.T) {
	env := emulator.Require(t)
	stream := emulator.UniqueName(t, "ops")
	id := "com.acme." + emulator.UniqueName(t, "obs")
	namespace := "Sauna/" + emulator.UniqueName(t, "ns")
	env.CreateStream(t, stream, 2)

	// Recognisable secrets in every secret-bearing field of the configs.
	accessKeyID := "AKIA" + strings.ToUpper(randomSecret(""))[:16]
	secretKey := randomSecret("awssecret")
	slackPath := "/services/T000/B000/" + randomSecret("slackpath")
	sendgridKey := "SG." + randomSecret("") + "." + randomSecret("")
	hookToken, hookAuth, hookSigning := randomSecret("hooktok"), randomSecret("hookauth"), randomSecret("hooksign")
	secrets := []string{accessKeyID, secretKey, slackPath, sendgridKey, hookToken, hookAuth, hookSigning}

	slack := newWebhookSink(t)
	cloudwatchOn := env.CloudWatchURL != ""
	dir := t.TempDir()
	writeFile(t, dir, "observer.json", fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.observers/AmazonKinesisConfig/avro/1-0-2",
 "data":{"enabled":true,"id":%q,"parameters":{
   "aws":{"accessKeyId":%q,"secretAccessKey":%q},
   "kinesis":{"region":"us-east-1","streamName":%q,"maxRecords":100,
              "initialPosition":"TRIM_HORIZON","initialPositionModifiers":null,
              "shardSyncIntervalMillis":300,"idleTimeBetweenReadsMillis":250,
              "failoverTimeMillis":3000,"leaseRefreshMillis":1000,"parentShardPollMillis":500},
   "cloudwatch":{"enabled":%t,"namespace":%q,"flushIntervalMillis":1000}}}}`,
		id, accessKeyID, secretKey, stream, cloudwatchOn, namespace))
	writeFile(t, dir, "slack.json", slackConfig("com.acme.slack", slack.URL+slackPath))
	writeFile(t, dir, "sendgrid.json", fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.responders/SendgridConfig/avro/1-0-2",
 "data":{"enabled":true,"id":"com.acme.sendgrid","parameters":{"recipientsEnabled":false,"emailsEnabled":true,
   "apiKeyId":%q,"apiUrl":"http://127.0.0.1:1","rateLimitPerSecond":null,"rateLimitBurst":10}}}`, sendgridKey))
	writeFile(t, dir, "webhook.json", fmt.Sprintf(`{"schema":"iglu:io.sauna.responders/WebhookConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"com.acme.webhook","parameters":{"url":%q,
   "headers":{"Authorization":%q},"signingSecret":%q,"timeoutMillis":5000,
   "rateLimitPerSecond":null,"rateLimitBurst":5}}}`, "http://127.0.0.1:1/hook?token="+hookToken, "Bearer "+hookAuth, hookSigning))

	// DynamoDB answers nothing until /readyz was asked once: the observer
	// cannot have taken a lease by then, whatever the machine's speed.
	leasesHeld := make(chan struct{})
	heldEnv := env
	heldEnv.DynamoDBURL = emulator.NewProxy(t, env.DynamoDBURL, func(r *http.Request, _ []byte) {
		select {
		case <-leasesHeld:
		case <-r.Context().Done():
		}
	})
	p := startSauna(t, heldEnv, dir)
	base := p.adminURL(t)

	// The listener is up before any observer holds a lease: not ready yet.
	if code, body := httpDo(t, "GET", base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before the leases: %d %q, want 503", code, body)
	}
	if code, _ := httpDo(t, "GET", base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	close(leasesHeld)
	waitFor(t, giveUp, func() bool {
		code, _ := httpDo(t, "GET", base+"/readyz")
		return code == http.StatusOK
	}, func() string {
		_, body := httpDo(t, "GET", base+"/readyz")
		return "/readyz 200; last answer: " + body
	})

	kin := env.Kinesis(t)
	put := func(pk, data string) {
		t.Helper()
		if _, err := kin.PutRecord(t.Context(), &kinesis.PutRecordInput{
			StreamName: aws.String(stream), PartitionKey: aws.String(pk), Data: []byte(data),
		}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	for i := 1; i <= 3; i++ {
		put(fmt.Sprintf("k%d", i), commandRecord(uuidFor(100+i), now, "600000", slackInner(fmt.Sprintf("before %d", i))))
	}
	put("bad", `{"schema": "not json`)
	put("old", commandRecord(uuidFor(199), now.Add(-time.Hour), "1000", slackInner("expired")))
	waitFor(t, giveUp, func() bool { return len(slack.received()) >= 3 },
		func() string { return fmt.Sprintf("3 Slack messages, got %q", slack.texts()) })
	p.waitLogs(t, 2, giveUp, msgIs("command rejected"))

	metricsBody := func() string {
		t.Helper()
		code, body := httpDo(t, "GET", base+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d", code)
		}
		return body
	}
	commands := func(body, responder, outcome, reason string) float64 {
		v, _ := promValue(body, "sauna_commands_total",
			map[string]string{"observer": id, "responder": responder, "outcome": outcome, "reason": reason})
		return v
	}
	// The outcome is counted just after it is reported, and the KCL counts
	// a batch's records only once the processor has paced the shard's next
	// read, so wait a moment.
	waitFor(t, giveUp, func() bool {
		b := metricsBody()
		return commands(b, "slack", "executed", "") == 3 && commands(b, "", "rejected", "invalid_json") == 1 &&
			commands(b, "slack", "rejected", "expired") == 1 &&
			promSum(b, "sauna_kinesis_records_total", map[string]string{"observer": id}) == 5
	}, func() string {
		return "sauna_commands_total and sauna_kinesis_records_total to match:\n" + metricsBody()
	})
	body := metricsBody()
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"sauna_kinesis_leases_held", map[string]string{"observer": id, "stream": stream}, 2},
		{"sauna_observer_running", map[string]string{"observer": id, "stream": stream}, 1},
		{"sauna_responder_attempts_total", map[string]string{"observer": id, "responder": "slack", "verdict": "done"}, 3},
		{"sauna_commands_in_flight", map[string]string{"observer": id}, 0},
		{"sauna_paused", map[string]string{}, 0},
	} {
		if got, ok := promValue(body, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if got := promSum(body, "sauna_kinesis_records_total", map[string]string{"observer": id}); got != 5 {
		t.Errorf("records read = %v, want 5", got)
	}
	if got, _ := promValue(body, "sauna_config_reloads_total", map[string]string{"result": "applied"}); got < 4 {
		t.Errorf("config reloads applied = %v, want at least the 4 files", got)
	}

	// Pause: records put meanwhile wait, and all run after the resume.
	if code, body := httpDo(t, "POST", base+"/pause"); code != http.StatusOK || !strings.Contains(body, `"paused": true`) {
		t.Fatalf("POST /pause: %d %s", code, body)
	}
	for i := 1; i <= 4; i++ {
		put(fmt.Sprintf("p%d", i), commandRecord(uuidFor(200+i), time.Now(), "600000", slackInner(fmt.Sprintf("paused %d", i))))
	}
	if code, body := httpDo(t, "GET", base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "paused") {
		t.Errorf("/readyz while paused: %d %q", code, body)
	}
	time.Sleep(3 * time.Second) // several polls' worth
	if n := len(slack.received()); n != 3 {
		t.Errorf("%d Slack messages while paused, want still 3: %q", n, slack.texts())
	}
	_, statusBody := httpDo(t, "GET", base+"/status")
	var status struct {
		Paused    bool `json:"paused"`
		Ready     bool `json:"ready"`
		Observers []struct {
			ID         string `json:"id"`
			Stream     string `json:"stream"`
			Running    bool   `json:"running"`
			ShardsHeld int    `json:"shardsHeld"`
		} `json:"observers"`
		Responders []struct {
			ID, Module, State string
		} `json:"responders"`
		Reload struct {
			Applied uint64 `json:"applied"`
		} `json:"reload"`
	}
	if err := json.Unmarshal([]byte(statusBody), &status); err != nil {
		t.Fatalf("/status: %v\n%s", err, statusBody)
	}
	if !status.Paused || status.Ready || len(status.Observers) != 1 || status.Observers[0].ID != id ||
		status.Observers[0].Stream != stream || !status.Observers[0].Running || status.Observers[0].ShardsHeld != 2 ||
		len(status.Responders) != 3 || status.Reload.Applied < 4 {
		t.Errorf("/status while paused:\n%s", statusBody)
	}
	if code, body := httpDo(t, "POST", base+"/resume"); code != http.StatusOK || !strings.Contains(body, `"paused": false`) {
		t.Fatalf("POST /resume: %d %s", code, body)
	}
	waitFor(t, giveUp, func() bool { return len(slack.received()) >= 7 },
		func() string { return fmt.Sprintf("7 Slack messages after resume, got %q", slack.texts()) })
	for i := 1; i <= 4; i++ {
		if !strings.Contains(strings.Join(slack.texts(), "\n"), fmt.Sprintf("paused %d", i)) {
			t.Errorf("command %d put while paused never ran", i)
		}
	}

	if cloudwatchOn {
		reader := env.CloudWatch(t)
		// moto's GetMetricData ignores the namespace when dimensions are set,
		// so the stream's unique name tells this run's data apart.
		waitFor(t, giveUp, func() bool {
			sum := 0.0
			for _, shard := range []string{"shardId-000000000000", "shardId-000000000001"} {
				out, err := reader.GetMetricData(t.Context(), &cloudwatch.GetMetricDataInput{
					StartTime: aws.Time(now.Add(-time.Hour)), EndTime: aws.Time(time.Now().Add(time.Hour)),
					MetricDataQueries: []cwtypes.MetricDataQuery{{Id: aws.String("q"), MetricStat: &cwtypes.MetricStat{
						Metric: &cwtypes.Metric{Namespace: aws.String(namespace), MetricName: aws.String("RecordsProcessed"),
							Dimensions: []cwtypes.Dimension{{Name: aws.String("Shard"), Value: aws.String(shard)},
								{Name: aws.String("KinesisStreamName"), Value: aws.String(stream)}}},
						Period: aws.Int32(60), Stat: aws.String("Sum")}}},
				})
				if err != nil {
					t.Fatalf("GetMetricData: %v", err)
				}
				for _, r := range out.MetricDataResults {
					for _, v := range r.Values {
						sum += v
					}
				}
			}
			return sum == 9
		}, func() string { return "CloudWatch RecordsProcessed to reach 9" })
		out, err := reader.ListMetrics(t.Context(), &cloudwatch.ListMetricsInput{Namespace: aws.String(namespace), MetricName: aws.String("Commands")})
		if err != nil || len(out.Metrics) == 0 {
			t.Errorf("ListMetrics Commands in %s: %v, %d metrics", namespace, err, len(out.Metrics))
		}
	}

	// Nothing secret in any endpoint, nor in the log.
	for _, path := range []string{"/status", "/readyz", "/healthz", "/metrics"} {
		_, body := httpDo(t, "GET", base+path)
		for _, s := range secrets {
			if strings.Contains(body, s) {
				t.Errorf("%s shows a planted secret %q", path, s)
			}
		}
	}
	if _, err := p.stop(t); err != nil {
		t.Errorf("sauna exited with %v after SIGTERM", err)
	}
	for _, s := range secrets {
		if strings.Contains(p.output(), s) {
			t.Errorf("the log shows a planted secret %q", s)
		}
	}
}
