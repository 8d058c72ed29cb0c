// Package slack is the responder for Slack send_message commands: it posts
// each message to one Slack incoming webhook. See README.md.
package slack

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/responders/delivery"
	"github.com/sauna-io/sauna/schemas"
)

// Config and command schemas served by this responder.
var (
	ConfigV100 = schemas.Key{Vendor: "com.snowplowanalytics.sauna.responders", Name: "SlackConfig", Format: "avro", Model: 1, Revision: 0, Addition: 0}
	// ConfigV101 was published under Sauna's vendor by earlier sauna releases;
	// it is accepted with a warning naming ResponderConfigV100.
	ConfigV101          = schemas.Key{Vendor: "com.snowplowanalytics.sauna.responders", Name: "SlackConfig", Format: "avro", Model: 1, Revision: 0, Addition: 1}
	ResponderConfigV100 = schemas.Key{Vendor: "io.sauna.responders", Name: "SlackConfig", Format: "avro", Model: 1, Revision: 0, Addition: 0}
	SendMessage         = schemas.Key{Vendor: "com.slack.sauna.commands", Name: "send_message", Format: "jsonschema", Model: 1, Revision: 0, Addition: 0}
)

// DefaultLimit is Slack's documented pace for one webhook: about one
// message per second, with short bursts.
var DefaultLimit = delivery.PerSecond(1, 3)

//go:embed example-config.json
var exampleConfig string

func init() {
	responders.Register(responders.Module{
		Name:              "slack",
		Summary:           "Slack: posts send_message commands to an incoming webhook",
		ConfigSchemas:     []schemas.Key{ConfigV100, ConfigV101, ResponderConfigV100},
		DeprecatedConfigs: []schemas.Key{ConfigV101},
		Commands:          []schemas.Key{SendMessage},
		Decode:            Decode,
		New:               New,
	})
}

// Slack posts messages to one incoming webhook.
type Slack struct {
	webhook string
	client  *delivery.Client
}

var (
	_ responders.Responder = (*Slack)(nil)
	_ io.Closer            = (*Slack)(nil)
)

type parameters struct {
	SendMessageEnabled bool   `json:"sendMessageEnabled"`
	WebhookURL         string `json:"webhookUrl"`
	delivery.RateParams
}

// New builds the responder from a SlackConfig. It returns (nil, nil) when
// sendMessageEnabled is false, since that is the only action.
func New(cfg responders.Config) (responders.Responder, error) {
	s, err := newSlack(cfg, delivery.Options{})
	if s == nil {
		return nil, err
	}
	return s, err
}

// newSlack takes delivery options so that tests can supply the transport and
// clock; the limit and the logger always come from the config.
func newSlack(cfg responders.Config, o delivery.Options) (*Slack, error) {
	var p parameters
	if err := cfg.DecodeParameters(&p); err != nil {
		return nil, err
	}
	if !p.SendMessageEnabled {
		return nil, nil
	}
	if err := checkWebhookURL(p.WebhookURL); err != nil {
		return nil, &responders.ParamError{Param: "webhookUrl", Err: err}
	}
	limit, err := p.Limit(DefaultLimit)
	if err != nil {
		return nil, err
	}
	o.Limit = limit
	o.Logger = cfg.Logger
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if u, _ := url.Parse(p.WebhookURL); u.Scheme != "https" {
		o.Logger.Warn("webhookUrl is not https: the URL is the webhook's only credential", "destination", delivery.Origin(p.WebhookURL))
	}
	c, err := delivery.New(o)
	if err != nil {
		return nil, err
	}
	return &Slack{webhook: p.WebhookURL, client: c}, nil
}

// checkWebhookURL never quotes the URL: its path is the secret.
func checkWebhookURL(raw string) error {
	if raw == "" {
		return errors.New("missing")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("not a valid URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return errors.New("must be an http(s) URL")
	}
	if u.Host == "" {
		return errors.New("has no host")
	}
	return nil
}

// Respond posts the command's message. Slack answers 200 "ok" when the
// message is posted, and a plain-text error code otherwise.
func (s *Slack) Respond(ctx context.Context, cmd *responders.Command) error {
	msg, err := messageOf(cmd)
	if err != nil {
		return responders.Permanent(err)
	}
	body, err := delivery.JSON(msg)
	if err != nil {
		return responders.Permanent(fmt.Errorf("encode message: %w", err))
	}
	return s.client.Send(ctx, delivery.Request{
		URL:         s.webhook,
		Header:      http.Header{"Content-Type": {"application/json"}},
		Body:        body,
		Destination: s.webhook,
	}, classify)
}

func classify(r *delivery.Response) error {
	return delivery.Standard(r, delivery.Is(http.StatusOK), r.Text())
}

// Close releases idle connections.
func (s *Slack) Close() error { return s.client.Close() }
