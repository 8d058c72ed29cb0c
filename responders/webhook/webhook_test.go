package webhook

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

const (
	urlToken      = "PlantedUrlToken0123456789"
	signingSecret = "planted-signing-secret-0123456789"
	authToken     = "Bearer planted-auth-token-0123456789"
)

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func config(t *testing.T, file []byte, logger *slog.Logger) (responders.Config, error) {
	t.Helper()
	return deliverytest.Config(t, file, logger)
}

func configFile(url, params string) []byte {
	return []byte(`{"schema":"iglu:io.sauna.responders/WebhookConfig/avro/1-0-0",
		"data":{"enabled":true,"id":"hook","parameters":{"url":"` + url + `"` + params + `}}}`)
}

func mustNew(t *testing.T, file []byte, logger *slog.Logger, o delivery.Options) *Webhook {
	t.Helper()
	cfg, err := config(t, file, logger)
	if err != nil {
		t.Fatal(err)
	}
	w, err := newWebhook(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

func command(t *testing.T, data string) *responders.Command {
	t.Helper()
	return deliverytest.Command(t, deliverytest.Record(WebhookV1.String(), data))
}

func TestRegistration(t *testing.T) {
	m, err := responders.Lookup("webhook")
	if err != nil {
		t.Fatal(err)
	}
	if m.New == nil || m.Decode == nil || m.Retired != "" {
		t.Errorf("module %+v lacks New or Decode, or is retired", m)
	}
	if got, ok := responders.ForCommand(WebhookV1); !ok || got.Name != "webhook" {
		t.Errorf("ForCommand(%s) = %v, %v", WebhookV1, got.Name, ok)
	}
	if got, ok := responders.ForConfig(ConfigV100); !ok || got.Name != "webhook" {
		t.Errorf("ForConfig(%s) = %v, %v", ConfigV100, got.Name, ok)
	}
}

func TestREADMEShowsTheExamples(t *testing.T) {
	readme := string(readFile(t, "README.md"))
	verify := string(readFile(t, "verify_test.go"))
	start := strings.Index(verify, "func verifySignature(")
	end := strings.Index(verify[start:], "\n}\n") + start + 2
	for name, example := range map[string]string{
		"example-config.json":   exampleConfig,
		"testdata/command.json": string(readFile(t, "testdata/command.json")),
		"verifySignature":       verify[start:end],
	} {
		if !strings.Contains(readme, strings.TrimSpace(example)) {
			t.Errorf("README.md does not contain %s verbatim", name)
		}
	}
}

func TestExampleConfigBuilds(t *testing.T) {
	cfg, err := config(t, []byte(exampleConfig), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := New(cfg); r == nil || err != nil {
		t.Fatalf("New(example) = %v, %v", r, err)
	}
}

// TestCommandSchema checks what the new command schema lets through to
// Decode.
func TestCommandSchema(t *testing.T) {
	tests := []struct {
		data  string
		valid bool
	}{
		{`{"body":{"a":1}}`, true},
		{`{"body":null}`, true},
		{`{"body":"text","headers":{}}`, true},
		{`{"body":[1,2],"headers":{"X-Event":"a","Idempotency-Key":"k"}}`, true},
		{`{}`, false},
		{`{"headers":{"X":"y"}}`, false},
		{`{"body":1,"url":"http://169.254.169.254/"}`, false},
		{`{"body":1,"headers":{"X":1}}`, false},
		{`{"body":1,"headers":{"Bad Name":"x"}}`, false},
		{`{"body":1,"headers":{"X":"a\r\nInjected: 1"}}`, false},
		{`{"body":1,"headers":{"X":"a\u0000"}}`, false},
	}
	for _, tt := range tests {
		err := schemas.ValidateJSON(WebhookV1, deliverytest.JSON(t, []byte(tt.data)))
		if (err == nil) != tt.valid {
			t.Errorf("%s: valid = %v, want %v (%v)", tt.data, err == nil, tt.valid, err)
		}
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name   string
		params string
		url    string
		// param is the ParamError's Param when New refuses the config.
		param   string
		wantErr string
		timeout time.Duration
		limit   delivery.Limit
	}{
		{name: "defaults", url: "https://hooks.example.com/x", timeout: 10 * time.Second, limit: DefaultLimit},
		{name: "long timeout and a limit", url: "https://hooks.example.com/x", params: `,"timeoutMillis":60000,"rateLimitPerSecond":3,"rateLimitBurst":1`, timeout: time.Minute, limit: delivery.PerSecond(3, 1)},
		{name: "no URL", url: "", param: "url", wantErr: "parameters.url: missing"},
		{name: "relative URL", url: "/hooks/" + urlToken, param: "url", wantErr: "parameters.url: must be an http(s) URL"},
		{name: "file URL", url: "file:///etc/passwd", param: "url", wantErr: "parameters.url: must be an http(s) URL"},
		{name: "fragment", url: "https://hooks.example.com/x#" + urlToken, param: "url", wantErr: "parameters.url: must not have a fragment"},
		{name: "Content-Type is reserved", url: "https://h.example", params: `,"headers":{"content-type":"text/plain"}`, param: `headers["content-type"]`, wantErr: `parameters.headers["content-type"]: "content-type" is reserved`},
		{name: "X-Sauna-* is reserved", url: "https://h.example", params: `,"headers":{"X-Sauna-Signature":"forged"}`, param: `headers["X-Sauna-Signature"]`, wantErr: `parameters.headers["X-Sauna-Signature"]: "X-Sauna-Signature" is reserved`},
		{name: "Host is reserved", url: "https://h.example", params: `,"headers":{"Accept":"*/*","Host":"internal"}`, param: `headers["Host"]`, wantErr: `"Host" is reserved`},
		{name: "bad header name", url: "https://h.example", params: `,"headers":{"X Bad":"v"}`, param: `headers["X Bad"]`, wantErr: `"X Bad" is not a valid header name`},
		{name: "colliding header names", url: "https://h.example", params: `,"headers":{"X-Api-Key":"` + authToken + `","X_Api_Key":"` + authToken + `"}`, param: `headers["X_Api_Key"]`, wantErr: `"X-Api-Key" and "X_Api_Key" name the same header`},
		{name: "header value with a line break", url: "https://h.example", params: `,"headers":{"Authorization":"` + authToken + `\r\nX: y"}`, param: `headers["Authorization"]`, wantErr: `the value of "Authorization" contains a control character at byte 36`},
		{name: "zero timeout", url: "https://h.example", params: `,"timeoutMillis":0`, param: "timeoutMillis", wantErr: "parameters.timeoutMillis: must be 1 to 300000, got 0"},
		{name: "empty secret", url: "https://h.example", params: `,"signingSecret":""`, param: "signingSecret", wantErr: "parameters.signingSecret: empty"},
		{name: "zero rate", url: "https://h.example", params: `,"rateLimitPerSecond":0`, param: "rateLimitPerSecond", wantErr: "parameters.rateLimitPerSecond: must be greater than 0"},
		{name: "zero burst", url: "https://h.example", params: `,"rateLimitBurst":0`, param: "rateLimitBurst", wantErr: "parameters.rateLimitBurst: must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config(t, configFile(tt.url, tt.params), nil)
			if err != nil {
				t.Fatal(err)
			}
			w, err := newWebhook(cfg, delivery.Options{})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if pe, ok := errors.AsType[*responders.ParamError](err); !ok || pe.Param != tt.param {
					t.Errorf("err = %T: %v, want a *responders.ParamError for %q", err, err, tt.param)
				}
				for _, s := range []string{urlToken, "planted-auth-token"} {
					if strings.Contains(err.Error(), s) {
						t.Errorf("config error quotes a secret: %v", err)
					}
				}
				if r, err := New(cfg); r != nil || err == nil {
					t.Errorf("New = %v, %v; want nil and an error", r, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p := w.client.Policy()
			if p.RequestTimeout != tt.timeout || w.client.Limit() != tt.limit {
				t.Errorf("timeout %v, limit %v", p.RequestTimeout, w.client.Limit())
			}
		})
	}
}

// TestExactRequest posts to a loopback server and checks every byte that
// matters: the path and query of the configured URL, the headers, the
// signature and the body exactly as it stood in the command.
func TestExactRequest(t *testing.T) {
	vendor := deliverytest.NewVendor(R{Status: 204})
	srv := httptest.NewServer(vendor)
	defer srv.Close()
	w := mustNew(t, configFile(srv.URL+"/hooks/"+urlToken+"?team=ops",
		`,"headers":{"Authorization":"`+authToken+`"},"signingSecret":"`+signingSecret+`"`), nil, delivery.Options{})
	// Spacing, key order and number spelling must survive: the signature
	// covers the bytes.
	body := `{"z": 1, "a": [1.50, 2e3, "<&>"],   "n": null}`
	cmd := command(t, `{"body": `+body+`, "headers": {"X-Event": "build_failed", "idempotency-key": "k-1"}}`)
	before := time.Now()
	if err := w.Respond(t.Context(), cmd); err != nil {
		t.Fatal(err)
	}
	got := vendor.Requests()[0]
	if got.Method != http.MethodPost || got.Path != "/hooks/"+urlToken || got.Query != "team=ops" {
		t.Errorf("request line = %s %s?%s", got.Method, got.Path, got.Query)
	}
	if string(got.Body) != body {
		t.Errorf("body = %s, want exactly %s", got.Body, body)
	}
	wantHeaders := map[string]string{
		"Authorization":      authToken,
		"Content-Type":       "application/json",
		"X-Event":            "build_failed",
		"Idempotency-Key":    "k-1",
		"X-Sauna-Command-Id": "3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c44",
		"User-Agent":         "sauna",
	}
	for k, v := range wantHeaders {
		if g := got.Header.Get(k); g != v {
			t.Errorf("%s = %q, want %q", k, g, v)
		}
	}
	if err := verifySignature([]byte(signingSecret), got.Header, got.Body, before); err != nil {
		t.Errorf("README's verification fails: %v", err)
	}
	if err := verifySignature([]byte("another secret"), got.Header, got.Body, before); err == nil {
		t.Error("a wrong secret verifies")
	}
	if err := verifySignature([]byte(signingSecret), got.Header, append(got.Body, ' '), before); err == nil {
		t.Error("a changed body verifies")
	}
	// A captured request replayed under a fresh command id, or with a fresh
	// timestamp, fails.
	ts, _ := strconv.ParseInt(got.Header.Get("X-Sauna-Timestamp"), 10, 64)
	for name, v := range map[string]string{
		"X-Sauna-Command-Id": "3f2a6c1e-8d4b-4a7e-9c2f-5b1d0e7a9c45",
		"X-Sauna-Timestamp":  strconv.FormatInt(ts-1, 10), // still fresh
	} {
		h := got.Header.Clone()
		h.Set(name, v)
		if err := verifySignature([]byte(signingSecret), h, got.Body, before); err == nil {
			t.Errorf("a request with another %s verifies", name)
		}
	}
}

func TestUnsignedWithoutSecret(t *testing.T) {
	vendor := deliverytest.NewVendor(R{Status: 200})
	srv := httptest.NewServer(vendor)
	defer srv.Close()
	w := mustNew(t, configFile(srv.URL, ""), nil, delivery.Options{})
	if err := w.Respond(t.Context(), command(t, `{"body":"plain string"}`)); err != nil {
		t.Fatal(err)
	}
	got := vendor.Requests()[0]
	if string(got.Body) != `"plain string"` {
		t.Errorf("body = %s", got.Body)
	}
	for _, h := range []string{TimestampHeader, SignatureHeader} {
		if v := got.Header.Get(h); v != "" {
			t.Errorf("%s = %q without a signing secret", h, v)
		}
	}
}

func TestSignKnownAnswer(t *testing.T) {
	// Computed independently, as README.md shows:
	// printf '%s.%s.%s' 1700000000 00000000-0000-4000-8000-000000000001 '{"a":1}' | openssl dgst -sha256 -hmac secret
	const want = "sha256=f8178bd916d95f3aa4a37a31de84680e212bfc68b39d97c7ccf11a1b0e959c46"
	if got := Sign([]byte("secret"), "1700000000", "00000000-0000-4000-8000-000000000001", []byte(`{"a":1}`)); got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := map[string]struct{ data, want string }{
		"no body":                  {`{"headers":{}}`, `missing "body"`},
		"a URL from the command":   {`{"body":1,"url":"http://169.254.169.254/latest/meta-data"}`, `unknown field "url"`},
		"Content-Type":             {`{"body":1,"headers":{"Content-Type":"text/plain"}}`, `"Content-Type" is reserved`},
		"signature, any case":      {`{"body":1,"headers":{"x-sauna-signature":"sha256=00"}}`, `"x-sauna-signature" is reserved`},
		"timestamp":                {`{"body":1,"headers":{"X-Sauna-Timestamp":"0"}}`, `"X-Sauna-Timestamp" is reserved`},
		"Transfer-Encoding":        {`{"body":1,"headers":{"Transfer-Encoding":"chunked"}}`, `"Transfer-Encoding" is reserved`},
		"header value line break":  {`{"body":1,"headers":{"X-A":"a\nb"}}`, `the value of "X-A" contains a control character at byte 1`},
		"header name with a colon": {`{"body":1,"headers":{"X:A":"a"}}`, `"X:A" is not a valid header name`},
		"header value not string":  {`{"body":1,"headers":{"X-A":1}}`, "cannot unmarshal number"},
		"method override":          {`{"body":1,"headers":{"X-HTTP-Method-Override":"DELETE"}}`, `"X-HTTP-Method-Override" is refused: a command may not set it`},
		"original URL":             {`{"body":1,"headers":{"x-original-url":"/admin"}}`, `"x-original-url" is refused`},
		"cookie":                   {`{"body":1,"headers":{"Cookie":"session=1"}}`, `"Cookie" is refused`},
		"proxy credentials":        {`{"body":1,"headers":{"Proxy-Authorization":"Basic eA=="}}`, `"Proxy-Authorization" is refused: a command may not set proxy-* headers`},
		"forwarded":                {`{"body":1,"headers":{"Forwarded":"for=10.0.0.1"}}`, `"Forwarded" is refused`},
		"x-forwarded family":       {`{"body":1,"headers":{"X-Forwarded-Host":"internal"}}`, `"X-Forwarded-Host" is refused: a command may not set x-forwarded-* headers`},
		"x-forwarded, underscores": {`{"body":1,"headers":{"X_Forwarded_For":"127.0.0.1"}}`, `"X_Forwarded_For" is refused`},
		"content encoding":         {`{"body":1,"headers":{"Content-Encoding":"gzip"}}`, `"Content-Encoding" is refused`},
		"hop-by-hop":               {`{"body":1,"headers":{"Keep-Alive":"timeout=5"}}`, `"Keep-Alive" is reserved`},
		"upgrade":                  {`{"body":1,"headers":{"Upgrade":"websocket"}}`, `"Upgrade" is reserved`},
		"content length, folded":   {`{"body":1,"headers":{"Content_Length":"0"}}`, `"Content_Length" is reserved`},
		"signature, folded":        {`{"body":1,"headers":{"X_Sauna_Signature":"sha256=00"}}`, `"X_Sauna_Signature" is reserved`},
		"two names, one header":    {`{"body":1,"headers":{"X-User":"a","X_User":"b"}}`, `"X-User" and "X_User" name the same header`},
		"two names among many": {`{"body":1,"headers":{"X-1":"","X-2":"","X-3":"","X-4":"","X-5":"","X-6":"","X-7":"","X-8":"","X-User":"a","X_User":"b"}}`,
			`"X-User" and "X_User" name the same header`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(WebhookV1, []byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestCommandCannotReplaceConfigHeaders(t *testing.T) {
	vendor := deliverytest.NewVendor(R{Status: 200})
	srv := httptest.NewServer(vendor)
	defer srv.Close()
	w := mustNew(t, configFile(srv.URL, `,"headers":{"Authorization":"`+authToken+`"}`), nil, delivery.Options{})
	err := w.Respond(t.Context(), command(t, `{"body":1,"headers":{"authorization":"Bearer mine"}}`))
	if !errors.Is(err, responders.ErrPermanent) || !strings.Contains(err.Error(), `command header "authorization": the config sets "Authorization"`) {
		t.Errorf("err = %v", err)
	}
	if n := len(vendor.Requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

// A CGI-style receiver sees X_Api_Key and X-Api-Key as one header: a command
// must not shadow the config's key through the other spelling.
func TestCommandCannotShadowConfigHeadersByFolding(t *testing.T) {
	vendor := deliverytest.NewVendor(R{Status: 200})
	srv := httptest.NewServer(vendor)
	defer srv.Close()
	w := mustNew(t, configFile(srv.URL, `,"headers":{"X-Api-Key":"`+authToken+`"}`), nil, delivery.Options{})
	for _, name := range []string{"X_Api_Key", "x_api-KEY", "X-API-KEY"} {
		err := w.Respond(t.Context(), command(t, `{"body":1,"headers":{"`+name+`":"mine"}}`))
		if !errors.Is(err, responders.ErrPermanent) || !strings.Contains(err.Error(), `command header "`+name+`": the config sets "X-Api-Key"`) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if n := len(vendor.Requests()); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	internal := deliverytest.NewVendor(R{Status: 200})
	inner := httptest.NewServer(internal)
	defer inner.Close()
	outer := httptest.NewServer(deliverytest.NewVendor(R{Status: 307, Header: map[string]string{"Location": inner.URL + "/admin"}}))
	defer outer.Close()
	w := mustNew(t, configFile(outer.URL, ""), nil, delivery.Options{})
	err := w.Respond(t.Context(), command(t, `{"body":1}`))
	if v, _ := responders.Classify(err); v != responders.Fail {
		t.Errorf("verdict %v (%v), want permanent", v, err)
	}
	if n := len(internal.Requests()); n != 0 {
		t.Errorf("the redirect target got %d requests", n)
	}
}

func TestVerdicts(t *testing.T) {
	tests := []struct {
		name    string
		replies []R
		verdict responders.Verdict
		after   time.Duration // the delay the verdict carries
		errText string
	}{
		{"200", []R{{Status: 200}}, responders.Done, 0, ""},
		{"201", []R{{Status: 201}}, responders.Done, 0, ""},
		{"204", []R{{Status: 204}}, responders.Done, 0, ""},
		{"400", []R{{Status: 400, Body: "missing field event"}}, responders.Fail, 0, "HTTP 400 Bad Request: missing field event"},
		{"401", []R{{Status: 401}}, responders.Fail, 0, "HTTP 401"},
		{"404", []R{{Status: 404}}, responders.Fail, 0, "HTTP 404"},
		{"410", []R{{Status: 410}}, responders.Fail, 0, "HTTP 410"},
		{"422", []R{{Status: 422}}, responders.Fail, 0, "HTTP 422"},
		{"302", []R{{Status: 302, Header: map[string]string{"Location": "http://elsewhere.test/"}}}, responders.Fail, 0, "HTTP 302"},
		{"408", []R{{Status: 408}}, responders.Retry, 0, "HTTP 408"},
		{"429 Retry-After", []R{{Status: 429, Header: map[string]string{"Retry-After": "2"}}}, responders.Retry, 2 * time.Second, "HTTP 429"},
		{"500", []R{{Status: 500}}, responders.Retry, 0, "HTTP 500"},
		{"502", []R{{Status: 502, Body: "bad gateway"}}, responders.Retry, 0, "HTTP 502 Bad Gateway: bad gateway"},
		{"slow past timeoutMillis", []R{{Status: 200, Delay: time.Minute}}, responders.Retry, 0, "no response within the 2s request timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				vendor := deliverytest.NewVendor(tt.replies...)
				srv := deliverytest.NewServer(t, vendor)
				w := mustNew(t, configFile(srv.URL+"/hook", `,"timeoutMillis":2000`), nil, delivery.Options{
					Transport: srv.Transport,
				})
				err := w.Respond(t.Context(), command(t, `{"body":{"x":1}}`))
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

// A retry (the observer calls Respond again) is signed afresh, with the
// moment it is sent.
func TestEveryAttemptIsSignedAfresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vendor := deliverytest.NewVendor(R{Status: 429, Header: map[string]string{"Retry-After": "5"}}, R{Status: 200})
		srv := deliverytest.NewServer(t, vendor)
		w := mustNew(t, configFile(srv.URL, `,"signingSecret":"`+signingSecret+`"`), nil, delivery.Options{Transport: srv.Transport})
		cmd := command(t, `{"body":{"x":1}}`)
		err := w.Respond(t.Context(), cmd)
		v, after := responders.Classify(err)
		if v != responders.Retry || after != 5*time.Second {
			t.Fatalf("first attempt: %v after %v (err %v), want retryable after 5s", v, after, err)
		}
		time.Sleep(after)
		if err := w.Respond(t.Context(), cmd); err != nil {
			t.Fatal(err)
		}
		reqs := vendor.Requests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests", len(reqs))
		}
		for _, r := range reqs {
			if err := verifySignature([]byte(signingSecret), r.Header, r.Body, r.At); err != nil {
				t.Errorf("attempt at %v: %v", r.At, err)
			}
		}
		if reqs[0].Header.Get(TimestampHeader) == reqs[1].Header.Get(TimestampHeader) {
			t.Error("the retry reuses the first attempt's timestamp")
		}
	})
}

func TestConfiguredLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		vendor := deliverytest.NewVendor(R{Status: 200})
		srv := deliverytest.NewServer(t, vendor)
		w := mustNew(t, configFile(srv.URL, `,"rateLimitPerSecond":0.5,"rateLimitBurst":2`), nil, delivery.Options{Transport: srv.Transport})
		for range 4 {
			if err := w.Respond(t.Context(), command(t, `{"body":1}`)); err != nil {
				t.Fatal(err)
			}
		}
		var at []time.Duration
		for _, q := range vendor.Requests() {
			at = append(at, q.At.Sub(start))
		}
		if diff := cmp.Diff([]time.Duration{0, 0, 2 * time.Second, 4 * time.Second}, at); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

func TestSecretsNeverLeak(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs bytes.Buffer
		logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		echo := "got " + "/hook/" + urlToken + " auth=" + authToken + " secret=" + signingSecret
		vendor := deliverytest.NewVendor(R{Status: 503, Body: echo}, R{Status: 400, Body: echo})
		srv := deliverytest.NewServer(t, vendor)
		w := mustNew(t, configFile("http://"+deliverytest.Host+"/hook/"+urlToken,
			`,"headers":{"Authorization":"`+authToken+`"},"signingSecret":"`+signingSecret+`"`), logger, delivery.Options{Transport: srv.Transport})
		// Twice, as the observer retries: a retryable then a permanent reply.
		for _, want := range []responders.Verdict{responders.Retry, responders.Fail} {
			err := w.Respond(t.Context(), command(t, `{"body":1}`))
			if v, _ := responders.Classify(err); v != want {
				t.Fatalf("verdict %v, want %v (%v)", v, want, err)
			}
			for _, s := range []string{urlToken, "planted-auth-token", signingSecret} {
				if strings.Contains(err.Error(), s) || strings.Contains(logs.String(), s) {
					t.Errorf("%q leaked:\nerr: %v\nlogs:\n%s", s, err, logs.String())
				}
			}
		}
		if !strings.Contains(logs.String(), "url is not https") {
			t.Errorf("no warning about plain http:\n%s", logs.String())
		}
	})
}

func TestDispatchEndToEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		vendor := deliverytest.NewVendor(R{Status: 200})
		srv := deliverytest.NewServer(t, vendor)
		w := mustNew(t, configFile(srv.URL, ""), nil, delivery.Options{Transport: srv.Transport})
		d := responders.NewDispatcher(func() time.Time { return time.Date(2017, 6, 29, 10, 20, 0, 0, time.UTC) })
		d.Replace(map[string]responders.Enabled{"webhook": {ID: "hook", Module: "webhook", Responder: w}})
		cmd := deliverytest.Command(t, readFile(t, "testdata/command.json"))
		if _, err := d.Dispatch(t.Context(), cmd); err != nil {
			t.Fatal(err)
		}
		if got := string(vendor.Requests()[0].Body); got != `{"event":"build_failed","build":42,"url":"https://ci.example.com/42"}` {
			t.Errorf("body = %s", got)
		}
	})
}
