package pagerduty

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
	"github.com/sauna-io/sauna/schemas"
)

type R = deliverytest.Reply

const routingKey = "0123456789abcdef0123456789abcdef"

func config(apiURL, extra string) []byte {
	return []byte(`{"schema":"iglu:com.snowplowanalytics.sauna.responders/PagerDutyConfig/avro/1-0-1",
		"data":{"enabled":true,"id":"com.acme.pagerduty","parameters":{"createEventEnabled":true,"apiUrl":"` + apiURL + `"` + extra + `}}}`)
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

func command(t *testing.T, data string) *responders.Command {
	t.Helper()
	return deliverytest.Command(t, deliverytest.Record(CreateEvent.String(), data))
}

func TestRegistration(t *testing.T) {
	m, err := responders.Lookup("pagerduty")
	if err != nil {
		t.Fatal(err)
	}
	if m.New == nil || m.Decode == nil || m.Retired != "" {
		t.Errorf("module %+v lacks New or Decode, or is retired", m)
	}
	if got, ok := responders.ForCommand(CreateEvent); !ok || got.Name != "pagerduty" {
		t.Errorf("ForCommand(%s) = %v, %v", CreateEvent, got.Name, ok)
	}
	for _, k := range []schemas.Key{ConfigV100, ConfigV101} {
		if got, ok := responders.ForConfig(k); !ok || got.Name != "pagerduty" {
			t.Errorf("ForConfig(%s) = %v, %v", k, got.Name, ok)
		}
	}
}

func TestREADMEShowsTheExamples(t *testing.T) {
	readme := string(readFile(t, "README.md"))
	for name, example := range map[string]string{
		"example-config.json":      exampleConfig,
		"testdata/command.json":    string(readFile(t, "testdata/command.json")),
		"testdata/command.v2.json": string(readFile(t, "testdata/command.v2.json")),
	} {
		if !strings.Contains(readme, strings.TrimSpace(example)) {
			t.Errorf("README.md does not contain %s verbatim", name)
		}
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		endpoint string
		limit    delivery.Limit
		nilResp  bool
		// param is the ParamError's Param when New refuses the config.
		param   string
		wantErr string
	}{
		{
			name:     "1-0-0 takes every default",
			file:     `{"schema":"iglu:com.snowplowanalytics.sauna.responders/PagerDutyConfig/avro/1-0-0","data":{"enabled":true,"id":"pd","parameters":{"createEventEnabled":true}}}`,
			endpoint: "https://events.pagerduty.com/v2/enqueue",
			limit:    DefaultLimit,
		},
		{
			name:     "example",
			file:     exampleConfig,
			endpoint: "https://events.pagerduty.com/v2/enqueue",
			limit:    DefaultLimit,
		},
		{
			name:     "EU region, trailing slash, own limit",
			file:     string(config("https://events.eu.pagerduty.com/", `,"rateLimitPerSecond":0.5,"rateLimitBurst":2`)),
			endpoint: "https://events.eu.pagerduty.com/v2/enqueue",
			limit:    delivery.PerSecond(0.5, 2),
		},
		{
			name:    "createEventEnabled false builds nothing",
			file:    `{"schema":"iglu:com.snowplowanalytics.sauna.responders/PagerDutyConfig/avro/1-0-0","data":{"enabled":true,"id":"pd","parameters":{"createEventEnabled":false}}}`,
			nilResp: true,
		},
		{name: "ftp URL", file: string(config("ftp://events.pagerduty.com", "")), param: "apiUrl", wantErr: `parameters.apiUrl: must be an http(s) URL, got scheme "ftp"`},
		{name: "query", file: string(config("https://events.pagerduty.com?x=1", "")), param: "apiUrl", wantErr: "parameters.apiUrl: must be a base URL without credentials, query or fragment"},
		{name: "no host", file: string(config("https:///v2", "")), param: "apiUrl", wantErr: "parameters.apiUrl: has no host"},
		{name: "negative rate", file: string(config("https://events.pagerduty.com", `,"rateLimitPerSecond":-2`)), param: "rateLimitPerSecond", wantErr: "parameters.rateLimitPerSecond"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustConfig(t, []byte(tt.file), nil)
			p, err := newPagerDuty(cfg, delivery.Options{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if pe, ok := errors.AsType[*responders.ParamError](err); !ok || pe.Param != tt.param {
					t.Errorf("err = %T: %v, want a *responders.ParamError for %q", err, err, tt.param)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.nilResp {
				if r, err := New(cfg); p != nil || r != nil || err != nil {
					t.Fatalf("New = %v, %v; want nil, nil", r, err)
				}
				return
			}
			if p.endpoint != tt.endpoint || p.client.Limit() != tt.limit || p.source != cfg.ID {
				t.Errorf("endpoint %q, limit %v, source %q", p.endpoint, p.client.Limit(), p.source)
			}
		})
	}
}

func TestFixturesCoverTheSchema(t *testing.T) {
	// The acknowledge/resolve branch allows a subset of the trigger's fields.
	missing := deliverytest.MissingFields(t, CreateEvent, readFile(t, "testdata/trigger-full.json"))
	if len(missing) > 0 {
		t.Errorf("testdata/trigger-full.json lacks schema fields %v", missing)
	}
}

// TestV1ToV2Mapping sends each fixture to a loopback server and compares the
// request with its golden v2 body.
func TestV1ToV2Mapping(t *testing.T) {
	for _, name := range []string{"command", "trigger-full", "trigger-minimal", "acknowledge", "resolve-with-details", "resolve-details-only"} {
		t.Run(name, func(t *testing.T) {
			data := readFile(t, "testdata/"+name+".json")
			var cmd *responders.Command
			if name == "command" {
				cmd = deliverytest.Command(t, data)
			} else {
				cmd = command(t, string(data))
			}
			want := deliverytest.JSON(t, readFile(t, "testdata/"+name+".v2.json"))
			vendor := deliverytest.NewVendor(R{Status: 202, Body: `{"status":"success","message":"Event processed","dedup_key":"srv-1"}`})
			srv := httptest.NewServer(vendor)
			defer srv.Close()
			p, err := newPagerDuty(mustConfig(t, config(srv.URL, ""), nil), delivery.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if err := p.Respond(t.Context(), cmd); err != nil {
				t.Fatal(err)
			}
			got := vendor.Requests()[0]
			if got.Method != http.MethodPost || got.Path != "/v2/enqueue" || got.Query != "" {
				t.Errorf("request line = %s %s?%s", got.Method, got.Path, got.Query)
			}
			if ct := got.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if a := got.Header.Get("Authorization"); a != "" {
				t.Errorf("Authorization = %q; the Events API authenticates by routing_key", a)
			}
			if diff := cmp.Diff(want, deliverytest.JSON(t, got.Body)); diff != "" {
				t.Errorf("v2 body (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLongSummaryIsTruncated(t *testing.T) {
	long := strings.Repeat("ü", 2000)
	e := &Event{ServiceKey: routingKey, EventType: "trigger", Description: &long}
	got := []rune(toV2(e, "src").Payload.Summary)
	if len(got) != maxSummary || got[len(got)-1] != '…' {
		t.Errorf("summary has %d characters, ends in %q", len(got), got[len(got)-1])
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := map[string]struct{ data, want string }{
		"unknown field":             {`{"service_key":"k","event_type":"trigger","description":"d","context":[]}`, `unknown field "context"`},
		"no service_key":            {`{"event_type":"trigger","description":"d"}`, `missing "service_key"`},
		"trigger without summary":   {`{"service_key":"k","event_type":"trigger"}`, `a trigger needs "description"`},
		"resolve without key":       {`{"service_key":"k","event_type":"resolve"}`, `needs "incident_key"`},
		"acknowledge with contexts": {`{"service_key":"k","event_type":"acknowledge","incident_key":"i","contexts":[]}`, `"contexts" is only allowed on a trigger`},
		"resolve with client":       {`{"service_key":"k","event_type":"resolve","incident_key":"i","client":"c"}`, `"client" is only allowed on a trigger`},
		"unknown event type":        {`{"service_key":"k","event_type":"escalate","incident_key":"i"}`, `"event_type" must be trigger, acknowledge or resolve`},
		"link without href":         {`{"service_key":"k","event_type":"trigger","description":"d","contexts":[{"type":"link","href":"h"},{"type":"link","text":"t"}]}`, `contexts[1]: a link needs "href"`},
		"link with src":             {`{"service_key":"k","event_type":"trigger","description":"d","contexts":[{"type":"link","href":"h","src":"s"}]}`, `contexts[0]: a link has only`},
		"image without src":         {`{"service_key":"k","event_type":"trigger","description":"d","contexts":[{"type":"image","href":"h"}]}`, `contexts[0]: an image needs "src"`},
		"unknown context type":      {`{"service_key":"k","event_type":"trigger","description":"d","contexts":[{"type":"video","src":"s"}]}`, `contexts[0]: "type" must be link or image`},
		"details not an object":     {`{"service_key":"k","event_type":"trigger","description":"d","details":[1]}`, `"details" must be an object`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(CreateEvent, []byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestVerdicts plays the Events API v2 answers (SPEC 3.3, 3.8).
func TestVerdicts(t *testing.T) {
	tests := []struct {
		name    string
		replies []R
		verdict responders.Verdict
		after   time.Duration // the delay the verdict carries
		errText string
	}{
		{"202 accepted", []R{{Status: 202, Body: `{"status":"success","message":"Event processed","dedup_key":"k"}`}}, responders.Done, 0, ""},
		{
			"400 invalid event",
			[]R{{Status: 400, Body: `{"status":"invalid event","message":"Event object is invalid","errors":["'payload.summary' is missing or blank","Length of 'routing_key' is incorrect"]}`}},
			responders.Fail, 0,
			"HTTP 400 Bad Request: Event object is invalid: 'payload.summary' is missing or blank; Length of 'routing_key' is incorrect",
		},
		{"400 plain text", []R{{Status: 400, Body: "bad request"}}, responders.Fail, 0, "HTTP 400 Bad Request: bad request"},
		{"404 wrong apiUrl", []R{{Status: 404, Body: "not found"}}, responders.Fail, 0, "HTTP 404"},
		{"200 is not 202", []R{{Status: 200}}, responders.Fail, 0, "HTTP 200"},
		{
			"429 with Retry-After",
			[]R{{Status: 429, Header: map[string]string{"Retry-After": "3"}}},
			responders.Retry, 3 * time.Second, "HTTP 429",
		},
		{
			"429 without Retry-After: the caller backs off",
			[]R{{Status: 429, Body: `{"status":"throttle event","message":"Requests for this service are arriving too quickly. Please retry later."}`}},
			responders.Retry, 0, "HTTP 429",
		},
		{"500", []R{{Status: 500}}, responders.Retry, 0, "HTTP 500"},
		{
			"503",
			[]R{{Status: 503, Body: "maintenance"}},
			responders.Retry, 0, "HTTP 503 Service Unavailable: maintenance",
		},
		{
			"slow past the request timeout",
			[]R{{Status: 202, Delay: time.Minute}},
			responders.Retry, 0, "no response within the 10s request timeout",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				vendor := deliverytest.NewVendor(tt.replies...)
				srv := deliverytest.NewServer(t, vendor)
				p, err := newPagerDuty(mustConfig(t, config(srv.URL, ""), nil), delivery.Options{
					Transport: srv.Transport,
				})
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				err = p.Respond(t.Context(), command(t, string(readFile(t, "testdata/trigger-minimal.json"))))
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

func TestOneLimiterPerRoutingKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		vendor := deliverytest.NewVendor(R{Status: 202})
		srv := deliverytest.NewServer(t, vendor)
		p, err := newPagerDuty(mustConfig(t, config(srv.URL, `,"rateLimitPerSecond":1,"rateLimitBurst":1`), nil), delivery.Options{Transport: srv.Transport})
		if err != nil {
			t.Fatal(err)
		}
		keyA := `{"service_key":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","event_type":"trigger","description":"a"}`
		keyB := `{"service_key":"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb","event_type":"trigger","description":"b"}`
		for _, data := range []string{keyA, keyA, keyB, keyA} {
			if err := p.Respond(t.Context(), command(t, data)); err != nil {
				t.Fatal(err)
			}
		}
		var got []string
		for _, q := range vendor.Requests() {
			ev := deliverytest.JSON(t, q.Body).(map[string]any)
			got = append(got, ev["routing_key"].(string)[:1]+"@"+q.At.Sub(start).String())
		}
		// Key b has its own bucket, so it goes at once while a waits.
		want := []string{"a@0s", "a@1s", "b@1s", "a@2s"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

func TestRoutingKeyNeverLeaks(t *testing.T) {
	const planted = "PLANTEDroutingKEY0123456789abcde"
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		vendor := deliverytest.NewVendor(
			R{Status: 503, Body: "overloaded while handling " + planted},
			R{Status: 400, Body: `{"status":"invalid event","message":"Event object is invalid","errors":["unknown routing_key ` + planted + `"]}`},
		)
		srv := deliverytest.NewServer(t, vendor)
		p, err := newPagerDuty(mustConfig(t, config(srv.URL, ""), logger), delivery.Options{Transport: srv.Transport})
		if err != nil {
			t.Fatal(err)
		}
		// Twice, as the observer retries: a retryable then a permanent reply.
		cmd := command(t, `{"service_key":"`+planted+`","event_type":"trigger","description":"d"}`)
		for _, want := range []responders.Verdict{responders.Retry, responders.Fail} {
			err = p.Respond(t.Context(), cmd)
			if v, _ := responders.Classify(err); v != want {
				t.Fatalf("verdict %v, want %v (%v)", v, want, err)
			}
			if strings.Contains(err.Error(), planted) || strings.Contains(logs.String(), planted) {
				t.Errorf("routing key leaked:\nerr: %v\nlogs:\n%s", err, logs.String())
			}
		}
		if !strings.Contains(err.Error(), "unknown routing_key [REDACTED]") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestDispatchEndToEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vendor := deliverytest.NewVendor(R{Status: 202})
		srv := deliverytest.NewServer(t, vendor)
		p, _ := newPagerDuty(mustConfig(t, config(srv.URL, ""), nil), delivery.Options{Transport: srv.Transport})
		d := responders.NewDispatcher(func() time.Time { return time.Date(2017, 6, 29, 10, 20, 0, 0, time.UTC) })
		d.Replace(map[string]responders.Enabled{"pagerduty": {ID: "com.acme.pagerduty", Module: "pagerduty", Responder: p}})
		cmd := deliverytest.Command(t, readFile(t, "testdata/command.json"))
		if _, ok := cmd.Payload.(*Event); !ok {
			t.Fatalf("payload is %T", cmd.Payload)
		}
		if _, err := d.Dispatch(t.Context(), cmd); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(deliverytest.JSON(t, readFile(t, "testdata/command.v2.json")), deliverytest.JSON(t, vendor.Requests()[0].Body)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}
