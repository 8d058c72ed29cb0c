package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
)

// vendorRequest is one request as a vendor API saw it.
type vendorRequest struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   []byte
	// Status is what the vendor answered.
	Status int
}

// vendorServer plays a vendor API on loopback and keeps every request.
type vendorServer struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []vendorRequest
	// reply answers a request; earlier counts the requests received before
	// it with the same body, so that a retry can be told from a first try.
	reply func(r vendorRequest, earlier int) (int, string)
}

func newVendorServer(t testing.TB, reply func(r vendorRequest, earlier int) (int, string)) *vendorServer {
	t.Helper()
	v := &vendorServer{reply: reply}
	v.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := vendorRequest{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body}
		v.mu.Lock()
		earlier := 0
		for _, p := range v.reqs {
			if bytes.Equal(p.Body, body) {
				earlier++
			}
		}
		status, text := v.reply(req, earlier)
		req.Status = status
		v.reqs = append(v.reqs, req)
		v.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(req.Status)
		io.WriteString(w, text)
	}))
	t.Cleanup(v.Close)
	return v
}

func (v *vendorServer) requests() []vendorRequest {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]vendorRequest(nil), v.reqs...)
}

// matching returns the requests whose body is JSON-equal to want.
func (v *vendorServer) matching(want any) []vendorRequest {
	var out []vendorRequest
	for _, r := range v.requests() {
		var got any
		if json.Unmarshal(r.Body, &got) == nil && reflect.DeepEqual(got, want) {
			out = append(out, r)
		}
	}
	return out
}

// waitRequests waits until at least n requests satisfy match.
func (v *vendorServer) waitRequests(t testing.TB, n int, what string, match func(vendorRequest) bool) []vendorRequest {
	t.Helper()
	var got []vendorRequest
	waitFor(t, giveUp, func() bool {
		got = got[:0]
		for _, r := range v.requests() {
			if match(r) {
				got = append(got, r)
			}
		}
		return len(got) >= n
	}, func() string {
		return fmt.Sprintf("%d requests %s, got %d of %d received", n, what, len(got), len(v.requests()))
	})
	return got
}

// jsonOf decodes JSON into a generic value, so that bodies compare by
// content, not by spacing or key order.
func jsonOf(t testing.TB, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return v
}

func readTestdata(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// commandOf is the "command" object of a responder's example record,
// re-wrapped by the tests with a fresh envelope: the examples' whenCreated
// lies years past their time to live.
func commandOf(t testing.TB, recordPath string) string {
	t.Helper()
	var rec struct {
		Data struct {
			Command json.RawMessage `json:"command"`
		} `json:"data"`
	}
	if err := json.Unmarshal(readTestdata(t, recordPath), &rec); err != nil || rec.Data.Command == nil {
		t.Fatalf("%s: no command: %v", recordPath, err)
	}
	return string(rec.Data.Command)
}

// publish puts each record with `sauna publish`, one file per record.
func publish(t testing.TB, env emulator.Env, stream string, records ...string) {
	t.Helper()
	dir := t.TempDir()
	args := []string{"publish", "--stream", stream}
	for i, r := range records {
		args = append(args, writeFile(t, dir, fmt.Sprintf("cmd%d.json", i), r))
	}
	code, stdout, stderr := runCLI(t, env, "", args...)
	if code != 0 || strings.Count(stdout, "\n") != len(records) {
		t.Fatalf("publish: exit %d\nstdout %s\nstderr %s", code, stdout, stderr)
	}
}

// randomSecret is unique per run, so that finding it in the log can only
// mean the daemon printed it.
func randomSecret(prefix string) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// commandLogs returns the records logged about one command.
func commandLogs(p *process, commandID string) []map[string]any {
	return p.logsMatching(func(m map[string]any) bool { return m["command_id"] == commandID })
}

// isFinalFailure tells a command's terminal failure (failed permanently or
// dead-lettered, whatever the wording) from a failure that is retried.
func isFinalFailure(m map[string]any) bool {
	msg := strings.ToLower(fmt.Sprint(m["msg"]))
	if strings.Contains(msg, "retry") {
		return false
	}
	return strings.Contains(msg, "fail") || strings.Contains(msg, "dead")
}

func assertNoSecrets(t testing.TB, log string, secrets map[string]string) {
	t.Helper()
	for what, s := range secrets {
		if strings.Contains(log, s) {
			t.Errorf("the %s appears in the sauna log", what)
		}
	}
}

func stopCleanly(t testing.TB, p *process) {
	t.Helper()
	took, err := p.stop(t)
	if err != nil {
		t.Errorf("sauna exited with %v after SIGTERM", err)
	}
	t.Logf("stopped %s after SIGTERM", took)
}

// TestEndToEndPagerDuty sends create_event commands (Events API v1 fields)
// through the binary to a local Events API v2: each arrives mapped on
// /v2/enqueue; a 400 fails the command once and for all, a 503 is retried
// until the 202. A HipChat config beside it is refused without stopping the
// rest, and a HipChat command is rejected as retired.
func TestEndToEndPagerDuty(t *testing.T) {
	env := emulator.Require(t)
	started := time.Now()
	stream := emulator.UniqueName(t, "pd")
	observer := "com.acme." + emulator.UniqueName(t, "obs")
	env.CreateStream(t, stream, 2)

	badKey := randomSecret("bad")[:32]
	flakyKey := randomSecret("flaky")[:32]
	const exampleKey = "0123456789abcdef0123456789abcdef"
	pd := newVendorServer(t, func(r vendorRequest, earlier int) (int, string) {
		var ev struct {
			RoutingKey string `json:"routing_key"`
			DedupKey   string `json:"dedup_key"`
		}
		_ = json.Unmarshal(r.Body, &ev)
		switch {
		case ev.RoutingKey == badKey:
			// PagerDuty quotes what it refused; the key must still be
			// scrubbed before the reason reaches the log.
			return http.StatusBadRequest, fmt.Sprintf(`{"status":"invalid event","message":"Event object is invalid","errors":["Routing key %s is not an Events API v2 integration"]}`, badKey)
		case ev.RoutingKey == flakyKey && earlier == 0:
			return http.StatusServiceUnavailable, `{"status":"unavailable","message":"try again"}`
		}
		key := ev.DedupKey
		if key == "" {
			key = "pd-assigned-key"
		}
		return http.StatusAccepted, fmt.Sprintf(`{"status":"success","message":"Event processed","dedup_key":%q}`, key)
	})

	hipchatToken := randomSecret("hc")
	dir := t.TempDir()
	writeFile(t, dir, "observer.json", observerConfig(observer, stream, true))
	writeFile(t, dir, "pagerduty.json", fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.responders/PagerDutyConfig/avro/1-0-1",
 "data":{"enabled":true,"id":"com.acme.pagerduty","parameters":{"createEventEnabled":true,"apiUrl":%q,"rateLimitPerSecond":null,"rateLimitBurst":10}}}`, pd.URL))
	writeFile(t, dir, "hipchat.json", fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.responders/HipchatConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"com.acme.hipchat","parameters":{"sendRoomNotificationEnabled":true,"authToken":%q}}}`, hipchatToken))

	p := startSauna(t, env, dir)
	p.waitLogs(t, 1, giveUp, msgIs("observer started"))

	refused := p.waitLogs(t, 1, giveUp, func(m map[string]any) bool {
		return m["msg"] == "config refused" && strings.HasSuffix(fmt.Sprint(m["file"]), "hipchat.json")
	})
	if len(refused) != 1 || !strings.Contains(fmt.Sprint(refused[0]["problem"]), "HipChat Cloud was shut down") {
		t.Errorf("HipChat config: want one %q record explaining the shutdown, got %v", "config refused", refused)
	}

	// Every mapping case of the responder's own testdata, each expected
	// exactly once in its v2 form.
	const pdSchema = "iglu:com.pagerduty.sauna.commands/create_event/jsonschema/1-0-0"
	now := time.Now()
	want := map[string]any{}
	var records []string
	for i, name := range []string{"trigger-full", "trigger-minimal", "acknowledge", "resolve-with-details", "resolve-details-only", "command"} {
		id := uuidFor(3100 + i)
		data := readTestdata(t, "../../responders/pagerduty/testdata/"+name+".json")
		if name == "command" {
			data = []byte(commandOf(t, "../../responders/pagerduty/testdata/command.json"))
			records = append(records, commandRecord(id, now, "600000", string(data)))
		} else {
			records = append(records, commandRecord(id, now, "600000", fmt.Sprintf(`{"schema":%q,"data":%s}`, pdSchema, data)))
		}
		want[name] = jsonOf(t, readTestdata(t, "../../responders/pagerduty/testdata/"+name+".v2.json"))
	}
	badID, flakyID := uuidFor(3201), uuidFor(3202)
	records = append(records,
		commandRecord(badID, now, "600000", fmt.Sprintf(`{"schema":%q,"data":{"service_key":%q,"event_type":"trigger","description":"refused"}}`, pdSchema, badKey)),
		commandRecord(flakyID, now, "600000", fmt.Sprintf(`{"schema":%q,"data":{"service_key":%q,"event_type":"trigger","incident_key":"flaky-1","description":"after a 503"}}`, pdSchema, flakyKey)))
	publish(t, env, stream, records...)

	// publish refuses a HipChat command, so it goes in as any producer
	// would put it.
	hipchatID := uuidFor(3301)
	hipchat := commandRecord(hipchatID, now, "null", commandOf(t, "../../responders/hipchat/testdata/command.json"))
	code, _, stderr := runCLI(t, env, "", "publish", "--stream", stream, writeFile(t, t.TempDir(), "hipchat-cmd.json", hipchat))
	if code == 0 || !strings.Contains(stderr, "retired") {
		t.Errorf("publish of a HipChat command: exit %d, stderr %q; want it refused as retired", code, stderr)
	}
	if _, err := env.Kinesis(t).PutRecord(t.Context(), &kinesis.PutRecordInput{
		StreamName: aws.String(stream), PartitionKey: aws.String(hipchatID), Data: []byte(hipchat),
	}); err != nil {
		t.Fatal(err)
	}

	// A resent 400 event would hold its shard for the whole retry budget;
	// fail on it at once rather than time out on what queues behind it.
	sentBad := func() int {
		n := 0
		for _, r := range pd.requests() {
			if r.Status == http.StatusBadRequest {
				n++
			}
		}
		return n
	}
	flaky := pd.waitRequests(t, 2, "for the 503-then-202 event", func(r vendorRequest) bool {
		if n := sentBad(); n > 1 {
			t.Fatalf("the event answered 400 was sent %d times", n)
		}
		return bytes.Contains(r.Body, []byte(flakyKey))
	})
	if flaky[0].Status != http.StatusServiceUnavailable || flaky[1].Status != http.StatusAccepted || !bytes.Equal(flaky[0].Body, flaky[1].Body) {
		t.Errorf("flaky event: want the same event answered 503 then 202, got %d then %d", flaky[0].Status, flaky[1].Status)
	}
	for name, w := range want {
		waitFor(t, giveUp, func() bool { return len(pd.matching(w)) > 0 },
			func() string { return fmt.Sprintf("the v2 event of %s, got %d requests", name, len(pd.requests())) })
	}
	var failed []map[string]any
	waitFor(t, giveUp, func() bool {
		failed = failed[:0]
		for _, m := range commandLogs(p, badID) {
			if isFinalFailure(m) {
				failed = append(failed, m)
			}
		}
		return len(failed) > 0
	}, func() string {
		return fmt.Sprintf("a final failure logged for the 400 command; its records: %v", commandLogs(p, badID))
	})
	if line, _ := json.Marshal(failed[0]); !strings.Contains(string(line), "Event object is invalid") {
		t.Errorf("the failure does not carry PagerDuty's reason: %s", line)
	}
	rejected := p.waitLogs(t, 1, giveUp, func(m map[string]any) bool {
		return m["command_id"] == hipchatID && m["reason"] == "retired"
	})
	if lvl := rejected[0]["level"]; lvl != "WARN" && lvl != "ERROR" {
		t.Errorf("HipChat rejection logged at %v", lvl)
	}

	// Everything else has settled by now, the retried command included: a
	// retry of the 400 would have come first.
	for _, r := range pd.requests() {
		if r.Method != http.MethodPost || r.Path != "/v2/enqueue" || r.Query != "" {
			t.Errorf("request %s %s?%s, want POST /v2/enqueue", r.Method, r.Path, r.Query)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q, want application/json", ct)
		}
	}
	for name, w := range want {
		if n := len(pd.matching(w)); n != 1 {
			t.Errorf("%s: its v2 event arrived %d times, want once", name, n)
		}
	}
	if n := len(pd.matching(jsonOf(t, fmt.Appendf(nil, `{"routing_key":%q,"event_action":"trigger","payload":{"summary":"refused","source":"com.acme.pagerduty","severity":"error"}}`, badKey)))); n != 1 {
		t.Errorf("the event answered 400 arrived %d times, want exactly once", n)
	}
	if n := len(pd.requests()); n != len(want)+3 {
		t.Errorf("PagerDuty received %d requests, want %d", n, len(want)+3)
	}
	for _, m := range commandLogs(p, badID) {
		if msg := strings.ToLower(fmt.Sprint(m["msg"])); strings.Contains(msg, "retry") {
			t.Errorf("the 400 command was retried: %v", m)
		}
	}

	stopCleanly(t, p)
	assertNoSecrets(t, p.output(), map[string]string{
		"example routing key": exampleKey, "refused routing key": badKey, "retried routing key": flakyKey,
		"HipChat auth token": hipchatToken,
	})
	t.Logf("took %s", time.Since(started).Round(time.Millisecond))
}

// TestEndToEndSendGrid sends send_email commands through the binary to a
// local Mail Send API: each arrives on /v3/mail/send with the API key as a
// bearer token and every field of the command, attachments and
// click_tracking.enable_text included.
func TestEndToEndSendGrid(t *testing.T) {
	env := emulator.Require(t)
	started := time.Now()
	stream := emulator.UniqueName(t, "sg")
	observer := "com.acme." + emulator.UniqueName(t, "obs")
	env.CreateStream(t, stream, 2)

	sg := newVendorServer(t, func(vendorRequest, int) (int, string) { return http.StatusAccepted, "" })
	apiKey := "SG." + randomSecret("") + "." + randomSecret("")
	dir := t.TempDir()
	writeFile(t, dir, "observer.json", observerConfig(observer, stream, true))
	writeFile(t, dir, "sendgrid.json", fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.responders/SendgridConfig/avro/1-0-2",
 "data":{"enabled":true,"id":"com.acme.sendgrid","parameters":{"recipientsEnabled":false,"emailsEnabled":true,
   "apiKeyId":%q,"apiUrl":%q,"rateLimitPerSecond":null,"rateLimitBurst":10}}}`, apiKey, sg.URL))

	p := startSauna(t, env, dir)
	p.waitLogs(t, 1, giveUp, msgIs("observer started"))

	const sgSchema = "iglu:com.sendgrid.sauna.commands/send_email/jsonschema/1-0-0"
	everyField := readTestdata(t, "../../responders/sendgrid/testdata/every-field.json")
	example := commandOf(t, "../../responders/sendgrid/testdata/command.json")
	var exampleData struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(example), &exampleData); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	publish(t, env, stream,
		commandRecord(uuidFor(3401), now, "600000", fmt.Sprintf(`{"schema":%q,"data":%s}`, sgSchema, everyField)),
		commandRecord(uuidFor(3402), now, "600000", example))

	want := map[string]any{"every-field": jsonOf(t, everyField), "README example": jsonOf(t, exampleData.Data)}
	sg.waitRequests(t, len(want), "to Mail Send", func(vendorRequest) bool { return true })
	for name, w := range want {
		got := sg.matching(w)
		if len(got) != 1 {
			t.Errorf("%s: its mail arrived %d times with exactly its fields, want once; received:\n%s", name, len(got), bodies(sg.requests()))
		}
	}
	// Named on their own: both were lost by Sauna, so a failure here should
	// say so plainly.
	for _, r := range sg.requests() {
		var m struct {
			Attachments      []map[string]any `json:"attachments"`
			TrackingSettings struct {
				ClickTracking map[string]any `json:"click_tracking"`
			} `json:"tracking_settings"`
		}
		_ = json.Unmarshal(r.Body, &m)
		if bytes.Contains(r.Body, []byte("hello.txt")) {
			if len(m.Attachments) != 2 {
				t.Errorf("attachments: got %v, want both of every-field.json", m.Attachments)
			}
			if v, ok := m.TrackingSettings.ClickTracking["enable_text"]; !ok || v != false {
				t.Errorf("click_tracking.enable_text: got %v (present %v), want false", v, ok)
			}
		}
	}
	for _, r := range sg.requests() {
		if r.Method != http.MethodPost || r.Path != "/v3/mail/send" || r.Query != "" {
			t.Errorf("request %s %s?%s, want POST /v3/mail/send", r.Method, r.Path, r.Query)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer "+apiKey {
			t.Errorf("Authorization header is not Bearer and the configured key (%d bytes)", len(got))
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q, want application/json", ct)
		}
	}

	stopCleanly(t, p)
	if n := len(sg.requests()); n != len(want) {
		t.Errorf("SendGrid received %d requests, want %d", n, len(want))
	}
	assertNoSecrets(t, p.output(), map[string]string{"SendGrid API key": apiKey})
	t.Logf("took %s", time.Since(started).Round(time.Millisecond))
}

func bodies(rs []vendorRequest) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%s\n", r.Body)
	}
	return b.String()
}

// verifySauna is the receiver's check documented in the webhook README.
func verifySauna(secret []byte, header http.Header, body []byte, now time.Time) error {
	ts := header.Get("X-Sauna-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("missing or malformed X-Sauna-Timestamp")
	}
	if age := now.Sub(time.Unix(sec, 0)); age > 5*time.Minute || age < -5*time.Minute {
		return errors.New("X-Sauna-Timestamp is more than 5 minutes away: a replay?")
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "." + header.Get("X-Sauna-Command-Id") + "."))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(header.Get("X-Sauna-Signature"))) {
		return errors.New("X-Sauna-Signature does not match")
	}
	return nil
}

// TestEndToEndWebhook sends webhook commands through the binary to a local
// receiver: each body arrives byte for byte (key order, number spelling,
// escapes; publish only removes whitespace) at the configured URL, with the
// config's and the command's headers, signed as the README documents.
func TestEndToEndWebhook(t *testing.T) {
	env := emulator.Require(t)
	started := time.Now()
	stream := emulator.UniqueName(t, "wh")
	observer := "com.acme." + emulator.UniqueName(t, "obs")
	env.CreateStream(t, stream, 2)

	hook := newVendorServer(t, func(vendorRequest, int) (int, string) { return http.StatusNoContent, "" })
	path := "/hooks/" + randomSecret("path")
	token := randomSecret("tok")
	receiverToken := randomSecret("rcv")
	secret := randomSecret("sign")
	dir := t.TempDir()
	writeFile(t, dir, "observer.json", observerConfig(observer, stream, true))
	writeFile(t, dir, "webhook.json", fmt.Sprintf(`{"schema":"iglu:io.sauna.responders/WebhookConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"com.acme.webhook","parameters":{"url":%q,
   "headers":{"Authorization":%q,"X-Tenant":"acme"},"signingSecret":%q,"timeoutMillis":5000,
   "rateLimitPerSecond":null,"rateLimitBurst":5}}}`, hook.URL+path+"?token="+token, "Bearer "+receiverToken, secret))

	p := startSauna(t, env, dir)
	p.waitLogs(t, 1, giveUp, msgIs("observer started"))

	const whSchema = "iglu:io.sauna.commands/webhook/jsonschema/1-0-0"
	// Bodies a re-encoding would change: keys out of order, 1.50 and 1e3,
	// -0, \u escapes, and characters Go's encoder would HTML-escape.
	objectBody := `{ "z": 1, "a": [1.50, 1e3, -0, true, null], "s": "caf\u00e9 \"q\" <b>&</b>", "nested": {"b": 2, "a": 1} }`
	arrayBody := `[ "only", 2.0, {"x": []} ]`
	objectID, arrayID := uuidFor(3501), uuidFor(3502)
	now := time.Now()
	publish(t, env, stream,
		commandRecord(objectID, now, "600000", fmt.Sprintf(`{"schema":%q,"data":{"body":%s,"headers":{"X-Event":"build_failed"}}}`, whSchema, objectBody)),
		commandRecord(arrayID, now, "600000", fmt.Sprintf(`{"schema":%q,"data":{"body":%s}}`, whSchema, arrayBody)))

	hook.waitRequests(t, 2, "at the webhook", func(vendorRequest) bool { return true })
	byID := map[string]vendorRequest{}
	for _, r := range hook.requests() {
		byID[r.Header.Get("X-Sauna-Command-Id")] = r
	}
	for id, body := range map[string]string{objectID: objectBody, arrayID: arrayBody} {
		r, ok := byID[id]
		if !ok {
			t.Errorf("no request with X-Sauna-Command-Id %s", id)
			continue
		}
		var want bytes.Buffer
		if err := json.Compact(&want, []byte(body)); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(r.Body, want.Bytes()) {
			t.Errorf("command %s: body\n%s\nwant\n%s", id, r.Body, want.Bytes())
		}
		if r.Method != http.MethodPost || r.Path != path || r.Query != "token="+token {
			t.Errorf("command %s: request is not a POST to the configured path and query", id)
		}
		if r.Header.Get("Authorization") != "Bearer "+receiverToken || r.Header.Get("X-Tenant") != "acme" {
			t.Errorf("command %s: the config's headers are missing or altered", id)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("command %s: Content-Type %q, want application/json", id, ct)
		}
		if ua := r.Header.Get("User-Agent"); ua != "sauna" {
			t.Errorf("command %s: User-Agent %q, want sauna", id, ua)
		}
		wantEvent := ""
		if id == objectID {
			wantEvent = "build_failed"
		}
		if got := r.Header.Get("X-Event"); got != wantEvent {
			t.Errorf("command %s: X-Event %q, want %q", id, got, wantEvent)
		}
		if err := verifySauna([]byte(secret), r.Header, r.Body, time.Now()); err != nil {
			t.Errorf("command %s: %v", id, err)
		}
	}

	stopCleanly(t, p)
	if n := len(hook.requests()); n != 2 {
		t.Errorf("the webhook received %d requests, want 2", n)
	}
	assertNoSecrets(t, p.output(), map[string]string{
		"webhook path": strings.TrimPrefix(path, "/hooks/"), "webhook query token": token,
		"configured Authorization header": receiverToken, "signing secret": secret,
	})
	t.Logf("took %s", time.Since(started).Round(time.Millisecond))
}
