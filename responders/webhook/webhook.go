// Package webhook is a generic responder: it POSTs the body of each webhook
// command to the one URL of its config, optionally signed with HMAC-SHA256.
// See README.md.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/responders/delivery"
	"github.com/sauna-io/sauna/schemas"
)

// Config and command schemas served by this responder.
var (
	ConfigV100 = schemas.Key{Vendor: "io.sauna.responders", Name: "WebhookConfig", Format: "avro", Model: 1, Revision: 0, Addition: 0}
	WebhookV1  = schemas.Key{Vendor: "io.sauna.commands", Name: "webhook", Format: "jsonschema", Model: 1, Revision: 0, Addition: 0}
)

// Headers the responder sets.
const (
	TimestampHeader = "X-Sauna-Timestamp"
	SignatureHeader = "X-Sauna-Signature"
	CommandIDHeader = "X-Sauna-Command-Id"
)

// Defaults for the parameters a config may omit.
const (
	DefaultTimeout = 10 * time.Second
	maxTimeout     = 5 * time.Minute
)

// DefaultLimit sends without a client-side limit.
var DefaultLimit = delivery.Limit{Rate: delivery.Unlimited.Rate, Burst: 5}

//go:embed example-config.json
var exampleConfig string

func init() {
	responders.Register(responders.Module{
		Name:          "webhook",
		Summary:       "Webhook: POSTs the body of webhook commands to one configured URL, optionally signed",
		ConfigSchemas: []schemas.Key{ConfigV100},
		Commands:      []schemas.Key{WebhookV1},
		Decode:        Decode,
		DecodeValue:   decodeValue,
		New:           New,
	})
}

// Webhook posts command bodies to one URL.
type Webhook struct {
	url     string
	headers http.Header
	// folded maps each config header's folded name (foldName) to its name.
	folded  map[string]string
	secret  []byte
	secrets []string
	client  *delivery.Client
}

var (
	_ responders.Responder = (*Webhook)(nil)
	_ io.Closer            = (*Webhook)(nil)
)

type parameters struct {
	URL           string            `json:"url"`
	Headers       map[string]string `json:"headers"`
	SigningSecret *string           `json:"signingSecret"`
	TimeoutMillis *int              `json:"timeoutMillis"`
	delivery.RateParams
}

// New builds the responder from a WebhookConfig. It has a single action, so
// it is enabled whenever its config is.
func New(cfg responders.Config) (responders.Responder, error) {
	w, err := newWebhook(cfg, delivery.Options{})
	if err != nil {
		return nil, err
	}
	return w, nil
}

func newWebhook(cfg responders.Config, o delivery.Options) (*Webhook, error) {
	var p parameters
	if err := cfg.DecodeParameters(&p); err != nil {
		return nil, err
	}
	if err := checkURL(p.URL); err != nil {
		return nil, &responders.ParamError{Param: "url", Err: err}
	}
	if name, err := checkHeaders(p.Headers); err != nil {
		return nil, &responders.ParamError{Param: "headers[" + quoteName(name) + "]", Err: err}
	}
	timeout := DefaultTimeout
	if p.TimeoutMillis != nil {
		timeout = time.Duration(*p.TimeoutMillis) * time.Millisecond
		if timeout <= 0 || timeout > maxTimeout {
			return nil, responders.ParamErrorf("timeoutMillis", "must be 1 to %d, got %d", maxTimeout.Milliseconds(), *p.TimeoutMillis)
		}
	}
	limit, err := p.Limit(DefaultLimit)
	if err != nil {
		return nil, err
	}
	w := &Webhook{url: p.URL, headers: http.Header{}, folded: map[string]string{}}
	for name, v := range p.Headers {
		w.headers.Set(name, v)
		w.folded[foldName(name)] = name
		w.secrets = append(w.secrets, v)
	}
	if p.SigningSecret != nil {
		if *p.SigningSecret == "" {
			return nil, responders.ParamErrorf("signingSecret", "empty; use null to send unsigned requests")
		}
		w.secret = []byte(*p.SigningSecret)
		w.secrets = append(w.secrets, *p.SigningSecret)
	}
	o.Limit = limit
	o.Policy.RequestTimeout = timeout
	o.Logger = cfg.Logger
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if u, _ := url.Parse(p.URL); u.Scheme != "https" {
		o.Logger.Warn("url is not https: bodies and headers travel in clear text", "destination", delivery.Origin(p.URL))
	}
	if w.client, err = delivery.New(o); err != nil {
		return nil, err
	}
	return w, nil
}

// checkURL never quotes the URL: it may carry a token.
func checkURL(raw string) error {
	if raw == "" {
		return errors.New("missing")
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("not a valid URL")
	case u.Scheme != "https" && u.Scheme != "http":
		return errors.New("must be an http(s) URL")
	case u.Host == "":
		return errors.New("has no host")
	case u.Fragment != "":
		return errors.New("must not have a fragment")
	}
	return nil
}

// Respond posts the command's body to the configured URL, never to one
// named by the command.
func (w *Webhook) Respond(ctx context.Context, cmd *responders.Command) error {
	c, err := commandOf(cmd)
	if err != nil {
		return responders.Permanent(err)
	}
	h := w.headers.Clone()
	for _, e := range c.Headers {
		if cfg, set := w.folded[foldName(e.Name)]; set {
			return responders.Permanent(fmt.Errorf("command header %q: the config sets %q", e.Name, cfg))
		}
		h.Set(e.Name, e.Value)
	}
	h.Set("Content-Type", "application/json")
	if cmd.ID != "" {
		h.Set(CommandIDHeader, cmd.ID)
	}
	req := delivery.Request{
		URL:         w.url,
		Header:      h,
		Body:        c.Body,
		Destination: w.url,
		Secrets:     w.secrets,
	}
	if w.secret != nil {
		body := c.Body
		// Each attempt is signed afresh, so a receiver's freshness window
		// measures the attempt, not the command's first try.
		req.Prepare = func(h http.Header, now time.Time) {
			ts := strconv.FormatInt(now.Unix(), 10)
			h.Set(TimestampHeader, ts)
			h.Set(SignatureHeader, Sign(w.secret, ts, cmd.ID, body))
		}
	}
	return w.client.Send(ctx, req, classify)
}

// Sign returns the X-Sauna-Signature value for a body sent at timestamp ts
// (Unix seconds, as in X-Sauna-Timestamp) for the command commandID (as in
// X-Sauna-Command-Id): "sha256=" and the hex HMAC-SHA256, keyed with secret,
// of ts + "." + commandID + "." + body. The command id is covered so that a
// captured request cannot be replayed under a fresh id past a receiver that
// de-duplicates on it.
func Sign(secret []byte, ts, commandID string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write([]byte(commandID))
	mac.Write([]byte("."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// classify: any 2xx is done; 408, 429 and 5xx are retryable; anything else,
// redirects included, is permanent.
func classify(r *delivery.Response) error {
	return delivery.Standard(r, delivery.Is2xx, r.Text())
}

// Close releases idle connections.
func (w *Webhook) Close() error { return w.client.Close() }
