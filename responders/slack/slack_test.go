package slack

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/responders/delivery"
	"github.com/sauna-io/sauna/responders/delivery/deliverytest"
)

type R = deliverytest.Reply

const hookPath = "/services/T000/B000/PlantedWebhookSecret42"

func config(url string, extra string) []byte {
	return []byte(`{"schema":"iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-1",
		"data":{"enabled":true,"id":"slack","parameters":{"sendMessageEnabled":true,"webhookUrl":"` + url + `"` + extra + `}}}`)
}

func mustConfig(t *testing.T, file []byte, logger *slog.Logger) responders.Config {
	t.Helper()
	cfg, err := deliverytest.Config(t, file, logger)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRegistration(t *testing.T) {
	m, err := responders.Lookup("slack")
	if err != nil {
		t.Fatal(err)
	}
	if m.New == nil || m.Decode == nil || m.Retired != "" {
		t.Errorf("module %+v lacks New or Decode, or is retired", m)
	}
	for _, k := range append(m.ConfigSchemas, m.Commands...) {
		if got, ok := responders.ForConfig(k); ok && got.Name != "slack" {
			t.Errorf("%s is served by %s", k, got.Name)
		}
	}
	if got, ok := responders.ForCommand(SendMessage); !ok || got.Name != "slack" {
		t.Errorf("ForCommand(%s) = %v, %v", SendMessage, got.Name, ok)
	}
}

func TestREADMEShowsTheExamples(t *testing.T) {
	readme := string(readFile(t, "README.md"))
	for name, example := range map[string]string{
		"example-config.json":   exampleConfig,
		"testdata/command.json": string(readFile(t, "testdata/command.json")),
	} {
		if !strings.Contains(readme, strings.TrimSpace(example)) {
			t.Errorf("README.md does not contain %s verbatim", name)
		}
	}
}

func TestExampleConfigBuilds(t *testing.T) {
	r, err := New(mustConfig(t, []byte(exampleConfig), nil))
	if err != nil || r == nil {
		t.Fatalf("New(example) = %v, %v", r, err)
	}
	if got := r.(*Slack).client.Policy(); got != delivery.DefaultPolicy() {
		t.Errorf("policy = %+v", got)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		want    delivery.Limit
		nilResp bool
		// param is the ParamError's Param when New refuses the config.
		param   string
		wantErr string
	}{
		{
			name: "1-0-0 takes the default limit",
			file: `{"schema":"iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-0",
				"data":{"enabled":true,"id":"s","parameters":{"sendMessageEnabled":true,"webhookUrl":"https://hooks.slack.com` + hookPath + `"}}}`,
			want: DefaultLimit,
		},
		{
			name: "1-0-1 defaults",
			file: string(config("https://hooks.slack.com"+hookPath, "")),
			want: DefaultLimit,
		},
		{
			name: "1-0-1 explicit limit",
			file: string(config("https://hooks.slack.com"+hookPath, `,"rateLimitPerSecond":0.5,"rateLimitBurst":1`)),
			want: delivery.PerSecond(0.5, 1),
		},
		{
			name: "1-0-1 null rate means no limit",
			file: string(config("https://hooks.slack.com"+hookPath, `,"rateLimitPerSecond":null`)),
			want: delivery.Limit{Rate: delivery.Unlimited.Rate, Burst: 3},
		},
		{
			name: "sendMessageEnabled false builds nothing",
			file: `{"schema":"iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-0",
				"data":{"enabled":true,"id":"s","parameters":{"sendMessageEnabled":false,"webhookUrl":""}}}`,
			nilResp: true,
		},
		{
			name:    "not a URL",
			file:    string(config("hooks.slack.com"+hookPath, "")),
			param:   "webhookUrl",
			wantErr: "parameters.webhookUrl: must be an http(s) URL",
		},
		{
			name:    "empty URL",
			file:    string(config("", "")),
			param:   "webhookUrl",
			wantErr: "parameters.webhookUrl: missing",
		},
		{
			name:    "unparsable URL",
			file:    string(config("https://hooks.slack.com:port"+hookPath, "")),
			param:   "webhookUrl",
			wantErr: "parameters.webhookUrl: not a valid URL",
		},
		{
			name:    "zero rate",
			file:    string(config("https://hooks.slack.com"+hookPath, `,"rateLimitPerSecond":0`)),
			param:   "rateLimitPerSecond",
			wantErr: "parameters.rateLimitPerSecond: must be greater than 0",
		},
		{
			name:    "zero burst",
			file:    string(config("https://hooks.slack.com"+hookPath, `,"rateLimitBurst":0`)),
			param:   "rateLimitBurst",
			wantErr: "parameters.rateLimitBurst: must be at least 1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustConfig(t, []byte(tt.file), nil)
			r, err := newSlack(cfg, delivery.Options{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if pe, ok := errors.AsType[*responders.ParamError](err); !ok || pe.Param != tt.param {
					t.Errorf("err = %T: %v, want a *responders.ParamError for %q", err, err, tt.param)
				}
				if strings.Contains(err.Error(), "PlantedWebhookSecret42") {
					t.Errorf("config error quotes the webhook secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.nilResp {
				if r != nil {
					t.Fatal("want no responder")
				}
				if resp, err := New(cfg); resp != nil || err != nil {
					t.Fatalf("New = %v, %v; want nil, nil", resp, err)
				}
				return
			}
			if got := r.client.Limit(); got != tt.want {
				t.Errorf("limit = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUnknownParameterIsRefused(t *testing.T) {
	cfg := responders.Config{Parameters: []byte(`{"sendMessageEnabled":true,"webhookUrl":"https://h.example","channel":"#x"}`)}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), `unknown field "channel"`) {
		t.Errorf("err = %v", err)
	}
}

// TestEveryFieldIsForwarded posts a message using every field of the schema
// to a loopback server and checks the exact request.
func TestEveryFieldIsForwarded(t *testing.T) {
	data := readFile(t, "testdata/every-field.json")
	if missing := deliverytest.MissingFields(t, SendMessage, data); len(missing) > 0 {
		t.Fatalf("testdata/every-field.json lacks schema fields %v", missing)
	}
	vendor := deliverytest.NewVendor(R{Status: 200, Body: "ok"})
	srv := httptest.NewServer(vendor)
	defer srv.Close()
	r, err := newSlack(mustConfig(t, config(srv.URL+hookPath, ""), nil), delivery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := deliverytest.Command(t, deliverytest.Record(SendMessage.String(), string(data)))
	if _, ok := cmd.Payload.(*Message); !ok {
		t.Fatalf("payload is %T", cmd.Payload)
	}
	if err := r.Respond(t.Context(), cmd); err != nil {
		t.Fatal(err)
	}
	reqs := vendor.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	got := reqs[0]
	if got.Method != http.MethodPost || got.Path != hookPath || got.Query != "" {
		t.Errorf("request line = %s %s?%s", got.Method, got.Path, got.Query)
	}
	if ct := got.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if diff := cmp.Diff(deliverytest.JSON(t, data), deliverytest.JSON(t, got.Body)); diff != "" {
		t.Errorf("body (-command +sent):\n%s", diff)
	}
	if bytes.Contains(got.Body, []byte(`\u003c`)) {
		t.Errorf("body escapes < as \\u003c: %s", got.Body)
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := map[string]struct{ data, want string }{
		"unknown field":        {`{"text":"x","blocks":[]}`, `unknown field "blocks"`},
		"wrong type":           {`{"text":1}`, "cannot unmarshal number"},
		"neither text nor att": {`{"channel":"#x"}`, `needs "text" or "attachments"`},
		"second attachment":    {`{"attachments":[{"fallback":"a"},{"title":"b"}]}`, `attachments[1]: missing "fallback"`},
		"field title":          {`{"attachments":[{"fallback":"a","fields":[{"title":"t","value":"v"},{"value":"v"}]}]}`, `attachments[0].fields[1]: missing "title"`},
		"field value":          {`{"attachments":[{"fallback":"a","fields":[{"title":"t"}]}]}`, `attachments[0].fields[0]: missing "value"`},
		"fractional ts":        {`{"attachments":[{"fallback":"a","ts":1.5}]}`, "cannot unmarshal number 1.5"},
		"trailing data":        {`{"text":"x"} {"text":"y"}`, "trailing data"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(SendMessage, []byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode(%s) = %v, want %q", tt.data, err, tt.want)
			}
		})
	}
}

// TestVerdicts plays Slack's documented answers (SPEC 3.1, 3.8).
func TestVerdicts(t *testing.T) {
	tests := []struct {
		name    string
		replies []R
		verdict responders.Verdict
		after   time.Duration // the delay the verdict carries
		errText string
	}{
		{"200 ok", []R{{Status: 200, Body: "ok"}}, responders.Done, 0, ""},
		{"400 invalid_payload", []R{{Status: 400, Body: "invalid_payload"}}, responders.Fail, 0, "HTTP 400 Bad Request: invalid_payload"},
		{"400 no_text", []R{{Status: 400, Body: "no_text"}}, responders.Fail, 0, "no_text"},
		{"403 invalid_token", []R{{Status: 403, Body: "invalid_token"}}, responders.Fail, 0, "HTTP 403 Forbidden: invalid_token"},
		{"403 action_prohibited", []R{{Status: 403, Body: "action_prohibited"}}, responders.Fail, 0, "action_prohibited"},
		{"404 channel_not_found", []R{{Status: 404, Body: "channel_not_found"}}, responders.Fail, 0, "HTTP 404 Not Found: channel_not_found"},
		{"404 no_service", []R{{Status: 404, Body: "no_service"}}, responders.Fail, 0, "no_service"},
		{"410 channel_is_archived", []R{{Status: 410, Body: "channel_is_archived"}}, responders.Fail, 0, "HTTP 410 Gone: channel_is_archived"},
		{
			"429 hands up Retry-After",
			[]R{{Status: 429, Header: map[string]string{"Retry-After": "5"}, Body: "rate_limited"}},
			responders.Retry, 5 * time.Second, "HTTP 429 Too Many Requests: rate_limited",
		},
		{
			"500 rollup_error",
			[]R{{Status: 500, Body: "rollup_error"}},
			responders.Retry, 0, "HTTP 500 Internal Server Error: rollup_error",
		},
		{
			"503",
			[]R{{Status: 503}},
			responders.Retry, 0, "HTTP 503 Service Unavailable",
		},
		{
			"slow past the request timeout",
			[]R{{Status: 200, Body: "ok", Delay: time.Minute}},
			responders.Retry, 0, "no response within the 10s request timeout",
		},
		{"200 is the only success", []R{{Status: 204}}, responders.Fail, 0, "HTTP 204"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				vendor := deliverytest.NewVendor(tt.replies...)
				srv := deliverytest.NewServer(t, vendor)
				r, err := newSlack(mustConfig(t, config(srv.URL+hookPath, `,"rateLimitPerSecond":null`), nil), delivery.Options{
					Transport: srv.Transport,
				})
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				cmd := deliverytest.Command(t, deliverytest.Record(SendMessage.String(), `{"text":"hi"}`))
				err = r.Respond(t.Context(), cmd)
				if v, after := responders.Classify(err); v != tt.verdict || after != tt.after {
					t.Errorf("verdict = %v after %v, want %v after %v (err %v)", v, after, tt.verdict, tt.after, err)
				}
				if tt.errText != "" && (err == nil || !strings.Contains(err.Error(), tt.errText)) {
					t.Errorf("err = %v, want %q", err, tt.errText)
				}
				// One request, sent at once: the caller owns the retries.
				if reqs := vendor.Requests(); len(reqs) != 1 || !reqs[0].At.Equal(start) {
					t.Errorf("%d requests, want one, sent at once", len(reqs))
				}
			})
		})
	}
}

func TestConfiguredLimitPacesMessages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		vendor := deliverytest.NewVendor(R{Status: 200, Body: "ok"})
		srv := deliverytest.NewServer(t, vendor)
		r, err := newSlack(mustConfig(t, config(srv.URL+hookPath, ""), nil), delivery.Options{Transport: srv.Transport})
		if err != nil {
			t.Fatal(err)
		}
		cmd := deliverytest.Command(t, deliverytest.Record(SendMessage.String(), `{"text":"hi"}`))
		for range 5 {
			if err := r.Respond(t.Context(), cmd); err != nil {
				t.Fatal(err)
			}
		}
		var at []time.Duration
		for _, q := range vendor.Requests() {
			at = append(at, q.At.Sub(start))
		}
		want := []time.Duration{0, 0, 0, time.Second, 2 * time.Second}
		if diff := cmp.Diff(want, at); diff != "" {
			t.Errorf("arrival times with 1/s, burst 3 (-want +got):\n%s", diff)
		}
	})
}

func TestWebhookSecretNeverLeaks(t *testing.T) {
	const secret = "PlantedWebhookSecret42"
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		// A vendor that echoes what it got, the worst case for a leak.
		vendor := deliverytest.NewVendor(
			R{Status: 500, Body: "upstream failed for " + hookPath},
			R{Status: 404, Body: "no_service for https://hooks.slack.com" + hookPath},
		)
		srv := deliverytest.NewServer(t, vendor)
		r, err := newSlack(mustConfig(t, config("http://"+deliverytest.Host+hookPath, ""), logger), delivery.Options{Transport: srv.Transport})
		if err != nil {
			t.Fatal(err)
		}
		cmd := deliverytest.Command(t, deliverytest.Record(SendMessage.String(), `{"text":"hi"}`))
		// Twice, as the observer retries: a retryable then a permanent reply.
		for _, want := range []responders.Verdict{responders.Retry, responders.Fail} {
			err = r.Respond(t.Context(), cmd)
			if v, _ := responders.Classify(err); v != want {
				t.Fatalf("verdict %v, want %v, err %v", v, want, err)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), secret) {
				t.Errorf("secret leaked:\nerr: %v\nlogs:\n%s", err, logs.String())
			}
		}
		if !strings.Contains(err.Error(), "no_service") {
			t.Errorf("err = %v, want Slack's error code", err)
		}
		if !strings.Contains(logs.String(), "webhookUrl is not https") {
			t.Errorf("no warning about a plain-http webhook:\n%s", logs.String())
		}
	})
}

func TestRespondWithoutPayloadDecodesData(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vendor := deliverytest.NewVendor(R{Status: 200, Body: "ok"})
		srv := deliverytest.NewServer(t, vendor)
		r, _ := newSlack(mustConfig(t, config(srv.URL+hookPath, ""), nil), delivery.Options{Transport: srv.Transport})
		if err := r.Respond(t.Context(), &responders.Command{Schema: SendMessage, Data: []byte(`{"text":"hi"}`)}); err != nil {
			t.Fatal(err)
		}
		err := r.Respond(t.Context(), &responders.Command{Schema: SendMessage, Data: []byte(`{"bogus":1}`)})
		if !errors.Is(err, responders.ErrPermanent) {
			t.Errorf("malformed data: err = %v, want permanent", err)
		}
	})
}

func TestDispatchEndToEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vendor := deliverytest.NewVendor(R{Status: 200, Body: "ok"})
		srv := deliverytest.NewServer(t, vendor)
		r, _ := newSlack(mustConfig(t, config(srv.URL+hookPath, ""), nil), delivery.Options{Transport: srv.Transport})
		d := responders.NewDispatcher(func() time.Time { return time.Date(2017, 6, 29, 10, 20, 0, 0, time.UTC) })
		d.Replace(map[string]responders.Enabled{"slack": {ID: "slack", Module: "slack", Responder: r}})
		cmd := deliverytest.Command(t, readFile(t, "testdata/command.json"))
		if _, err := d.Dispatch(t.Context(), cmd); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(deliverytest.JSON(t, cmd.Data), deliverytest.JSON(t, vendor.Requests()[0].Body)); diff != "" {
			t.Errorf("body (-command +sent):\n%s", diff)
		}
	})
}
