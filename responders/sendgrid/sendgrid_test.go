package sendgrid

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
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

const apiKey = "SG.planted-test-key.0123456789abcdefghij"

func config(apiURL, extra string) []byte {
	return []byte(`{"schema":"iglu:com.snowplowanalytics.sauna.responders/SendgridConfig/avro/1-0-2",
		"data":{"enabled":true,"id":"sg","parameters":{"recipientsEnabled":false,"emailsEnabled":true,
		"apiKeyId":"` + apiKey + `","apiUrl":"` + apiURL + `"` + extra + `}}}`)
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
	return deliverytest.Command(t, deliverytest.Record(SendEmail.String(), data))
}

const minimal = `{"personalizations":[{"to":[{"email":"a@example.com"}]}],"from":{"email":"b@example.com"},"content":[{"type":"text/plain","value":"hi"}]}`

func TestRegistration(t *testing.T) {
	m, err := responders.Lookup("sendgrid")
	if err != nil {
		t.Fatal(err)
	}
	if m.New == nil || m.Decode == nil || m.Retired != "" {
		t.Errorf("module %+v lacks New or Decode, or is retired", m)
	}
	for _, k := range []schemas.Key{ConfigV101, ConfigV102} {
		if got, ok := responders.ForConfig(k); !ok || got.Name != "sendgrid" {
			t.Errorf("ForConfig(%s) = %v, %v", k, got.Name, ok)
		}
	}
	if got, ok := responders.ForCommand(SendEmail); !ok || got.Name != "sendgrid" {
		t.Errorf("ForCommand(%s) = %v, %v", SendEmail, got.Name, ok)
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

func TestNew(t *testing.T) {
	const v101 = `{"schema":"iglu:com.snowplowanalytics.sauna.responders/SendgridConfig/avro/1-0-1","data":{"enabled":true,"id":"sg","parameters":%s}}`
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
		{name: "example", file: exampleConfig, endpoint: "https://api.sendgrid.com/v3/mail/send", limit: DefaultLimit},
		{
			name:     "1-0-1 takes every default",
			file:     strings.Replace(v101, "%s", `{"recipientsEnabled":false,"emailsEnabled":true,"apiKeyId":"`+apiKey+`"}`, 1),
			endpoint: "https://api.sendgrid.com/v3/mail/send",
			limit:    DefaultLimit,
		},
		{
			name:     "1-0-2 EU region with a limit",
			file:     string(config("https://api.eu.sendgrid.com/", `,"rateLimitPerSecond":5,"rateLimitBurst":1`)),
			endpoint: "https://api.eu.sendgrid.com/v3/mail/send",
			limit:    delivery.PerSecond(5, 1),
		},
		{
			name:    "1-0-1 emails disabled builds nothing",
			file:    strings.Replace(v101, "%s", `{"recipientsEnabled":false,"emailsEnabled":false,"apiKeyId":"`+apiKey+`"}`, 1),
			nilResp: true,
		},
		{
			name:    "1-0-1 both flags",
			file:    strings.Replace(v101, "%s", `{"recipientsEnabled":true,"emailsEnabled":true,"apiKeyId":"`+apiKey+`"}`, 1),
			param:   "recipientsEnabled",
			wantErr: "parameters.recipientsEnabled",
		},
		{
			name:    "empty key",
			file:    strings.Replace(v101, "%s", `{"recipientsEnabled":false,"emailsEnabled":true,"apiKeyId":""}`, 1),
			param:   "apiKeyId",
			wantErr: "parameters.apiKeyId: missing",
		},
		{
			name:    "key with a line break",
			file:    strings.Replace(v101, "%s", `{"recipientsEnabled":false,"emailsEnabled":true,"apiKeyId":"`+apiKey+`\r\nX-Evil: 1"}`, 1),
			param:   "apiKeyId",
			wantErr: "parameters.apiKeyId: contains a space, a control or a non-ASCII character at byte 40",
		},
		{name: "bad apiUrl", file: string(config("api.sendgrid.com", "")), param: "apiUrl", wantErr: "parameters.apiUrl: must be an http(s) URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustConfig(t, []byte(tt.file), nil)
			s, err := newSendGrid(cfg, delivery.Options{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if pe, ok := errors.AsType[*responders.ParamError](err); !ok || pe.Param != tt.param {
					t.Errorf("err = %T: %v, want a *responders.ParamError for %q", err, err, tt.param)
				}
				if strings.Contains(err.Error(), "planted-test-key") {
					t.Errorf("config error quotes the API key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.nilResp {
				if r, err := New(cfg); s != nil || r != nil || err != nil {
					t.Fatalf("New = %v, %v; want nil, nil", r, err)
				}
				return
			}
			if s.endpoint != tt.endpoint || s.client.Limit() != tt.limit {
				t.Errorf("endpoint %q, limit %v", s.endpoint, s.client.Limit())
			}
		})
	}
}

func TestEveryFieldIsForwarded(t *testing.T) {
	data := readFile(t, "testdata/every-field.json")
	if missing := deliverytest.MissingFields(t, SendEmail, data); len(missing) > 0 {
		t.Fatalf("testdata/every-field.json lacks schema fields %v", missing)
	}
	vendor := deliverytest.NewVendor(R{Status: 202})
	srv := httptest.NewServer(vendor)
	defer srv.Close()
	s, err := newSendGrid(mustConfig(t, config(srv.URL, ""), nil), delivery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cmd := command(t, string(data))
	if _, ok := cmd.Payload.(*Mail); !ok {
		t.Fatalf("payload is %T", cmd.Payload)
	}
	if err := s.Respond(t.Context(), cmd); err != nil {
		t.Fatal(err)
	}
	got := vendor.Requests()[0]
	if got.Method != http.MethodPost || got.Path != "/v3/mail/send" || got.Query != "" {
		t.Errorf("request line = %s %s?%s", got.Method, got.Path, got.Query)
	}
	wantHeader := map[string]string{"Authorization": "Bearer " + apiKey, "Content-Type": "application/json"}
	for k, v := range wantHeader {
		if g := got.Header.Get(k); g != v {
			t.Errorf("%s = %q, want %q", k, g, v)
		}
	}
	if diff := cmp.Diff(deliverytest.JSON(t, data), deliverytest.JSON(t, got.Body)); diff != "" {
		t.Errorf("body (-command +sent):\n%s", diff)
	}
	for _, must := range []string{`"attachments"`, `"enable_text":false`} {
		if !bytes.Contains(got.Body, []byte(must)) {
			t.Errorf("body lacks %s (Sauna dropped or misspelled it)", must)
		}
	}
}

// TestDecodeChecksEveryArrayElement covers the draft-4 tuple quirk: the
// bundled schema accepts each of these, because it checks only the first
// element of each array.
func TestDecodeChecksEveryArrayElement(t *testing.T) {
	tests := map[string]struct{ data, want string }{
		"second personalization without to": {
			`{"personalizations":[{"to":[{"email":"a@example.com"}]},{"subject":"x"}],"from":{"email":"b@example.com"}}`,
			"at /personalizations/1: missing property 'to'",
		},
		"third personalization's recipient without email": {
			`{"personalizations":[{"to":[{"email":"a@example.com"}]},{"to":[{"email":"c@example.com"}]},{"to":[{"name":"No Address"}]}],"from":{"email":"b@example.com"}}`,
			"at /personalizations/2/to/0: missing property 'email'",
		},
		"second recipient without email": {
			`{"personalizations":[{"to":[{"email":"a@example.com"},{"name":"x"}]}],"from":{"email":"b@example.com"}}`,
			"at /personalizations/0/to/1: missing property 'email'",
		},
		"second cc with an unknown field": {
			`{"personalizations":[{"to":[{"email":"a@example.com"}],"cc":[{"email":"c@example.com"},{"email":"d@example.com","mail":"x"}]}],"from":{"email":"b@example.com"}}`,
			"at /personalizations/0/cc/1: additional properties 'mail' not allowed",
		},
		"second content without value": {
			`{"personalizations":[{"to":[{"email":"a@example.com"}]}],"from":{"email":"b@example.com"},"content":[{"type":"text/plain","value":"x"},{"type":"text/html"}]}`,
			"at /content/1: missing property 'value'",
		},
		"second attachment without filename": {
			`{"personalizations":[{"to":[{"email":"a@example.com"}]}],"from":{"email":"b@example.com"},"attachments":[{"content":"eA==","filename":"x"},{"content":"eQ=="}]}`,
			"at /attachments/1: missing property 'filename'",
		},
		"second category not a string": {
			`{"personalizations":[{"to":[{"email":"a@example.com"}]}],"from":{"email":"b@example.com"},"categories":["a",7]}`,
			"at /categories/1: got number, want string",
		},
		"second group not an integer": {
			`{"personalizations":[{"to":[{"email":"a@example.com"}]}],"from":{"email":"b@example.com"},"asm":{"group_id":1,"groups_to_display":[1,"2"]}}`,
			"at /asm/groups_to_display/1: got string, want integer",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if err := schemas.ValidateJSON(SendEmail, deliverytest.JSON(t, []byte(tt.data))); err != nil {
				t.Fatalf("the bundled schema already refuses it, the case tests nothing: %v", err)
			}
			_, err := Decode(SendEmail, []byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode = %v, want %q", err, tt.want)
			}
			// Through the daemon's decoder it is a rejection, never a delivery.
			_, err = responders.Decode(deliverytest.Record(SendEmail.String(), tt.data))
			if rej, ok := errors.AsType[*responders.RejectError](err); !ok || rej.Reason != responders.ReasonInvalidData {
				t.Errorf("responders.Decode = %v, want an invalid_data rejection", err)
			}
		})
	}
}

func TestDecodeRejectsUnknownAndMistypedFields(t *testing.T) {
	tests := map[string]struct{ data, want string }{
		"Sauna's attachment spelling": {`{"personalizations":[{"to":[{"email":"a@x.io"}]}],"from":{"email":"b@x.io"},"attachment":[]}`, "additional properties 'attachment' not allowed"},
		"Sauna's enableText spelling": {`{"personalizations":[{"to":[{"email":"a@x.io"}]}],"from":{"email":"b@x.io"},"tracking_settings":{"click_tracking":{"enableText":true}}}`, "additional properties 'enableText' not allowed"},
		"no from":                     {`{"personalizations":[{"to":[{"email":"a@x.io"}]}]}`, "missing property 'from'"},
		"fractional send_at":          {`{"personalizations":[{"to":[{"email":"a@x.io"}]}],"from":{"email":"b@x.io"},"send_at":1.5}`, "want integer"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(SendEmail, []byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestVerdicts plays Mail Send's documented answers (SPEC 3.4, 3.8).
func TestVerdicts(t *testing.T) {
	resetIn := func(d time.Duration) string { return strconv.FormatInt(time.Now().Add(d).Unix(), 10) }
	tests := []struct {
		name    string
		replies func() []R
		verdict responders.Verdict
		after   time.Duration // the delay the verdict carries
		errText string
	}{
		{"202 accepted", func() []R { return []R{{Status: 202}} }, responders.Done, 0, ""},
		{"200 in sandbox mode", func() []R { return []R{{Status: 200}} }, responders.Done, 0, ""},
		{
			"400 with errors",
			func() []R {
				return []R{{Status: 400, Body: `{"errors":[{"message":"The from email does not contain a valid address.","field":"from.email","help":"http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.from"},{"message":"Bad thing","field":null,"help":null}]}`}}
			},
			responders.Fail, 0,
			"HTTP 400 Bad Request: from.email: The from email does not contain a valid address.; Bad thing",
		},
		{
			"401 bad key",
			func() []R {
				return []R{{Status: 401, Body: `{"errors":[{"field":null,"message":"The provided authorization grant is invalid, expired, or revoked"}]}`}}
			},
			responders.Fail, 0, "HTTP 401 Unauthorized: The provided authorization grant is invalid, expired, or revoked",
		},
		{
			"403 unverified sender",
			func() []R {
				return []R{{Status: 403, Body: `{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":"from","help":null}]}`}}
			},
			responders.Fail, 0, "HTTP 403 Forbidden: from: The from address does not match a verified Sender Identity.",
		},
		{"413 too large", func() []R { return []R{{Status: 413, Body: "Payload Too Large"}} }, responders.Fail, 0, "HTTP 413"},
		{
			"429 hands up X-RateLimit-Reset",
			func() []R {
				return []R{{Status: 429, Header: map[string]string{"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": resetIn(4 * time.Second)}, Body: `{"errors":[{"field":null,"message":"too many requests"}]}`}}
			},
			responders.Retry, 4 * time.Second, "HTTP 429 Too Many Requests: too many requests",
		},
		{
			"429 with a reset a minute away",
			func() []R {
				return []R{{Status: 429, Header: map[string]string{"X-RateLimit-Reset": resetIn(time.Minute)}}}
			},
			responders.Retry, time.Minute, "HTTP 429 Too Many Requests",
		},
		{"500", func() []R { return []R{{Status: 500}} }, responders.Retry, 0, "HTTP 500"},
		{
			"slow past the request timeout",
			func() []R { return []R{{Status: 202, Delay: time.Minute}} },
			responders.Retry, 0, "no response within the 10s request timeout",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				vendor := deliverytest.NewVendor(tt.replies()...)
				srv := deliverytest.NewServer(t, vendor)
				s, err := newSendGrid(mustConfig(t, config(srv.URL, ""), nil), delivery.Options{
					Transport: srv.Transport,
				})
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				err = s.Respond(t.Context(), command(t, minimal))
				verdict, after := responders.Classify(err)
				if verdict != tt.verdict {
					t.Errorf("verdict = %v, want %v (err %v)", verdict, tt.verdict, err)
				}
				if tt.name == "429 with a reset a minute away" && after != time.Minute {
					t.Errorf("after = %v, want 1m", after)
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

func TestConfiguredLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		vendor := deliverytest.NewVendor(R{Status: 202})
		srv := deliverytest.NewServer(t, vendor)
		s, err := newSendGrid(mustConfig(t, config(srv.URL, `,"rateLimitPerSecond":2,"rateLimitBurst":1`), nil), delivery.Options{Transport: srv.Transport})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := s.Respond(t.Context(), command(t, minimal)); err != nil {
				t.Fatal(err)
			}
		}
		var at []time.Duration
		for _, q := range vendor.Requests() {
			at = append(at, q.At.Sub(start))
		}
		if diff := cmp.Diff([]time.Duration{0, 500 * time.Millisecond, time.Second}, at); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

func TestAPIKeyNeverLeaks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		vendor := deliverytest.NewVendor(
			R{Status: 500, Body: "internal error for Bearer " + apiKey},
			R{Status: 401, Body: `{"errors":[{"field":null,"message":"key ` + apiKey + ` is revoked"}]}`},
		)
		srv := deliverytest.NewServer(t, vendor)
		s, err := newSendGrid(mustConfig(t, config(srv.URL, ""), logger), delivery.Options{Transport: srv.Transport})
		if err != nil {
			t.Fatal(err)
		}
		// Twice, as the observer retries: a retryable then a permanent reply.
		for _, want := range []responders.Verdict{responders.Retry, responders.Fail} {
			err = s.Respond(t.Context(), command(t, minimal))
			if v, _ := responders.Classify(err); v != want {
				t.Fatalf("verdict %v, want %v (%v)", v, want, err)
			}
			if strings.Contains(err.Error(), "planted-test-key") || strings.Contains(logs.String(), "planted-test-key") {
				t.Errorf("API key leaked:\nerr: %v\nlogs:\n%s", err, logs.String())
			}
		}
		if !strings.Contains(err.Error(), "key [REDACTED] is revoked") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestDispatchEndToEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vendor := deliverytest.NewVendor(R{Status: 202})
		srv := deliverytest.NewServer(t, vendor)
		s, _ := newSendGrid(mustConfig(t, config(srv.URL, ""), nil), delivery.Options{Transport: srv.Transport})
		d := responders.NewDispatcher(func() time.Time { return time.Date(2017, 6, 29, 10, 20, 0, 0, time.UTC) })
		d.Replace(map[string]responders.Enabled{"sendgrid": {ID: "sg", Module: "sendgrid", Responder: s}})
		cmd := deliverytest.Command(t, readFile(t, "testdata/command.json"))
		if _, err := d.Dispatch(t.Context(), cmd); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(deliverytest.JSON(t, cmd.Data), deliverytest.JSON(t, vendor.Requests()[0].Body)); diff != "" {
			t.Errorf("(-command +sent):\n%s", diff)
		}
	})
}
