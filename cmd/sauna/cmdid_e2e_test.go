package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
)

// saunaTestCommands reads Sauna's own integration-test commands and
// substitutes their placeholders, as Sauna's tests do.
func saunaTestCommands(t *testing.T, serviceKey, inbox, subject string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, name := range []string{"slack", "pagerDuty", "sendgrid"} {
		b, err := os.ReadFile(filepath.Join("testdata", "sauna-commands", name+".json"))
		if err != nil {
			t.Fatal(err)
		}
		out[name] = strings.NewReplacer(
			"PAGERDUTY_SERVICE_KEY", serviceKey, "POSTMARK_INBOUND_EMAIL", inbox, "RANDOM_UUID", subject,
		).Replace(string(b))
	}
	return out
}

// innerData is a command record's inner command data, as a generic value.
func innerData(t *testing.T, record string) any {
	t.Helper()
	var rec struct {
		Data struct {
			Command struct {
				Data json.RawMessage `json:"data"`
			} `json:"command"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(record), &rec); err != nil {
		t.Fatal(err)
	}
	return jsonOf(t, rec.Data.Command.Data)
}

// TestEndToEndSaunaTestCommands puts Sauna's three integration-test
// commands, which share one commandId, through the binary with Slack,
// PagerDuty and SendGrid configured: each vendor receives its one request,
// mapped, and the two later commands are reported as id conflicts. The same
// three again are duplicates: nothing more is sent.
func TestEndToEndSaunaTestCommands(t *testing.T) {
	env := emulator.Require(t)
	started := time.Now()
	stream := emulator.UniqueName(t, "cmdid")
	observer := "com.acme." + emulator.UniqueName(t, "obs")
	env.CreateStream(t, stream, 1)

	slack := newVendorServer(t, func(vendorRequest, int) (int, string) { return http.StatusOK, "ok" })
	pd := newVendorServer(t, func(vendorRequest, int) (int, string) {
		return http.StatusAccepted, `{"status":"success","message":"Event processed","dedup_key":"pd-assigned"}`
	})
	sg := newVendorServer(t, func(vendorRequest, int) (int, string) { return http.StatusAccepted, "" })
	const pdID = "com.acme.pagerduty"
	dir := t.TempDir()
	writeFile(t, dir, "observer.json", observerConfig(observer, stream, true))
	writeFile(t, dir, "slack.json", slackConfig("com.acme.slack", slack.URL+"/services/T000/B000/x"))
	writeFile(t, dir, "pagerduty.json", fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.responders/PagerDutyConfig/avro/1-0-1",
 "data":{"enabled":true,"id":%q,"parameters":{"createEventEnabled":true,"apiUrl":%q,"rateLimitPerSecond":null,"rateLimitBurst":10}}}`, pdID, pd.URL))
	writeFile(t, dir, "sendgrid.json", fmt.Sprintf(`{"schema":"iglu:com.snowplowanalytics.sauna.responders/SendgridConfig/avro/1-0-2",
 "data":{"enabled":true,"id":"com.acme.sendgrid","parameters":{"recipientsEnabled":false,"emailsEnabled":true,
   "apiKeyId":"SG.test.key","apiUrl":%q,"rateLimitPerSecond":null,"rateLimitBurst":10}}}`, sg.URL))

	p := startSauna(t, env, dir)
	base := p.adminURL(t)
	p.waitLogs(t, 1, giveUp, msgIs("observer started"))

	serviceKey := randomSecret("")[:32]
	subject := rand.Text()
	cmds := saunaTestCommands(t, serviceKey, "inbox@saunatests.example", subject)
	order := []string{cmds["slack"], cmds["pagerDuty"], cmds["sendgrid"]}
	const commandID = "9dadfc92-9311-43c7-9cee-61ab590a6e81"
	publish(t, env, stream, order...)

	vendors := map[string]*vendorServer{"slack": slack, "pagerduty": pd, "sendgrid": sg}
	for name, v := range vendors {
		v.waitRequests(t, 1, "at "+name, func(vendorRequest) bool { return true })
	}
	wantSlack := innerData(t, cmds["slack"])
	wantPD := jsonOf(t, fmt.Appendf(nil, `{"routing_key":%q,"event_action":"trigger",
 "payload":{"summary":"Sauna integration test completed successfully","source":%q,"severity":"error","custom_details":{"project":"Sauna RT"}},
 "client":"Sauna RT","client_url":"https://example.com","links":[{"href":"https://example.com/","text":"Example"}]}`, serviceKey, pdID))
	wantSG := innerData(t, cmds["sendgrid"])
	for name, w := range map[string]struct {
		v    *vendorServer
		body any
	}{"slack": {slack, wantSlack}, "pagerduty": {pd, wantPD}, "sendgrid": {sg, wantSG}} {
		if got := w.v.matching(w.body); len(got) != 1 {
			t.Errorf("%s: %d requests with the mapped command, want 1; received:\n%s", name, len(got), bodies(w.v.requests()))
		}
	}

	conflicts := p.waitLogs(t, 2, giveUp, msgIs("command id reused by a different command; running it as a separate command"))
	for _, m := range conflicts {
		if m["level"] != "WARN" || m["command_id"] != commandID ||
			m["other_schema"] != "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0" {
			t.Errorf("conflict record %v: want a WARN naming the slack command as the other", m)
		}
	}
	schemas := []string{fmt.Sprint(conflicts[0]["schema"]), fmt.Sprint(conflicts[1]["schema"])}
	if !strings.Contains(strings.Join(schemas, " "), "com.pagerduty.sauna.commands/create_event") ||
		!strings.Contains(strings.Join(schemas, " "), "com.sendgrid.sauna.commands/send_email") {
		t.Errorf("conflicts name schemas %v, want the PagerDuty and SendGrid commands", schemas)
	}

	// Redelivery of all three: each is a duplicate of itself.
	publish(t, env, stream, order...)
	metrics := func() string {
		code, body := httpDo(t, "GET", base+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d", code)
		}
		return body
	}
	count := func(body, responder, outcome string) float64 {
		v, _ := promValue(body, "sauna_commands_total", map[string]string{"observer": observer, "responder": responder, "outcome": outcome, "reason": ""})
		return v
	}
	waitFor(t, giveUp, func() bool {
		b := metrics()
		for name := range vendors {
			if count(b, name, "executed") != 1 || count(b, name, "duplicate") != 1 {
				return false
			}
		}
		return true
	}, func() string { return "one executed and one duplicate per responder:\n" + metrics() })
	b := metrics()
	if n := promSum(b, "sauna_command_id_conflicts_total", map[string]string{"observer": observer}); n != 2 {
		t.Errorf("sauna_command_id_conflicts_total = %v, want 2:\n%s", n, b)
	}
	for _, name := range []string{"pagerduty", "sendgrid"} {
		if v, _ := promValue(b, "sauna_command_id_conflicts_total", map[string]string{"observer": observer, "responder": name}); v != 1 {
			t.Errorf("sauna_command_id_conflicts_total{responder=%q} = %v, want 1", name, v)
		}
	}
	if n := len(p.logsMatching(msgIs("command already executed; skipped"))); n != 3 {
		t.Errorf("%d commands skipped as duplicates, want the 3 redelivered", n)
	}
	if n := len(p.logsMatching(msgIs("command id reused by a different command; running it as a separate command"))); n != 2 {
		t.Errorf("%d conflict warnings, want 2", n)
	}
	for name, v := range vendors {
		if n := len(v.requests()); n != 1 {
			t.Errorf("%s received %d requests, want 1", name, n)
		}
	}

	// The outcome table shows all three under the id.
	code, stdout, stderr := runCLI(t, env, "", "outcome", "--table", observer+"-commands", commandID)
	if code != 0 {
		t.Fatalf("sauna outcome: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{
		"(1 of 3 different commands under this id)", "(3 of 3 different commands under this id)",
		"schema:        iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0",
		"schema:        iglu:com.pagerduty.sauna.commands/create_event/jsonschema/1-0-0",
		"schema:        iglu:com.sendgrid.sauna.commands/send_email/jsonschema/1-0-0",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("sauna outcome output lacks %q:\n%s", want, stdout)
		}
	}
	if n := strings.Count(stdout, "verdict:       executed"); n != 3 {
		t.Errorf("sauna outcome shows %d executed commands, want 3:\n%s", n, stdout)
	}

	stopCleanly(t, p)
	t.Logf("took %s", time.Since(started).Round(time.Millisecond))
}
