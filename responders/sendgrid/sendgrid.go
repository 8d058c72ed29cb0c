// Package sendgrid is the responder for SendGrid send_email commands: it
// sends each one through SendGrid's v3 Mail Send API. See README.md.
package sendgrid

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/responders/delivery"
	"github.com/sauna-io/sauna/schemas"
)

// Config and command schemas served by this responder.
var (
	ConfigV101 = schemas.Key{Vendor: "com.snowplowanalytics.sauna.responders", Name: "SendgridConfig", Format: "avro", Model: 1, Revision: 0, Addition: 1}
	// ConfigV102 was published under Sauna's vendor by earlier sauna releases;
	// it is accepted with a warning naming ResponderConfigV100.
	ConfigV102          = schemas.Key{Vendor: "com.snowplowanalytics.sauna.responders", Name: "SendgridConfig", Format: "avro", Model: 1, Revision: 0, Addition: 2}
	ResponderConfigV100 = schemas.Key{Vendor: "io.sauna.responders", Name: "SendgridConfig", Format: "avro", Model: 1, Revision: 0, Addition: 0}
	SendEmail           = schemas.Key{Vendor: "com.sendgrid.sauna.commands", Name: "send_email", Format: "jsonschema", Model: 1, Revision: 0, Addition: 0}
)

// DefaultAPIURL is the v3 API base URL of SendGrid's global region.
const DefaultAPIURL = "https://api.sendgrid.com"

// DefaultLimit sends without a client-side limit: SendGrid publishes no rate
// for Mail Send, and its 429 answers are honoured in any case.
var DefaultLimit = delivery.Limit{Rate: delivery.Unlimited.Rate, Burst: 10}

//go:embed example-config.json
var exampleConfig string

func init() {
	responders.Register(responders.Module{
		Name:              "sendgrid",
		Summary:           "SendGrid: sends send_email commands through the v3 Mail Send API",
		ConfigSchemas:     []schemas.Key{ConfigV101, ConfigV102, ResponderConfigV100},
		DeprecatedConfigs: []schemas.Key{ConfigV102},
		Commands:          []schemas.Key{SendEmail},
		Decode:            Decode,
		New:               New,
	})
}

// SendGrid sends mail with one API key.
type SendGrid struct {
	endpoint string
	apiKey   string
	client   *delivery.Client
}

var (
	_ responders.Responder = (*SendGrid)(nil)
	_ io.Closer            = (*SendGrid)(nil)
)

type parameters struct {
	RecipientsEnabled bool    `json:"recipientsEnabled"`
	EmailsEnabled     *bool   `json:"emailsEnabled"`
	APIKeyID          string  `json:"apiKeyId"`
	APIURL            *string `json:"apiUrl"`
	delivery.RateParams
}

// New builds the responder from a SendgridConfig. recipientsEnabled: true is
// an error, because the batch recipients responder is not built; New returns
// (nil, nil) when emailsEnabled is false.
func New(cfg responders.Config) (responders.Responder, error) {
	s, err := newSendGrid(cfg, delivery.Options{})
	if s == nil {
		return nil, err
	}
	return s, err
}

func newSendGrid(cfg responders.Config, o delivery.Options) (*SendGrid, error) {
	var p parameters
	if err := cfg.DecodeParameters(&p); err != nil {
		return nil, err
	}
	if p.RecipientsEnabled {
		return nil, responders.ParamErrorf("recipientsEnabled", "the batch recipients responder (contact-database uploads from TSV files) is not built; set it to false")
	}
	if p.EmailsEnabled == nil || !*p.EmailsEnabled {
		return nil, nil
	}
	if err := checkAPIKey(p.APIKeyID); err != nil {
		return nil, &responders.ParamError{Param: "apiKeyId", Err: err}
	}
	base := DefaultAPIURL
	if p.APIURL != nil {
		base = *p.APIURL
	}
	if err := checkAPIURL(base); err != nil {
		return nil, &responders.ParamError{Param: "apiUrl", Err: err}
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
	c, err := delivery.New(o)
	if err != nil {
		return nil, err
	}
	return &SendGrid{endpoint: strings.TrimRight(base, "/") + "/v3/mail/send", apiKey: p.APIKeyID, client: c}, nil
}

// checkAPIKey never quotes the key. A key with spaces or control characters
// could not be sent as a header: every attempt would fail in the transport,
// and be retried, forever.
func checkAPIKey(k string) error {
	if k == "" {
		return errors.New("missing")
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("contains a space, a control or a non-ASCII character at byte %d", i)
		}
	}
	return nil
}

func checkAPIURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return errors.New("not a valid URL")
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("must be an http(s) URL, got scheme %q", u.Scheme)
	case u.Host == "":
		return errors.New("has no host")
	case u.User != nil, u.RawQuery != "", u.Fragment != "":
		return errors.New("must be a base URL without credentials, query or fragment")
	}
	return nil
}

// Respond sends the command's mail.
func (s *SendGrid) Respond(ctx context.Context, cmd *responders.Command) error {
	m, err := mailOf(cmd)
	if err != nil {
		return responders.Permanent(err)
	}
	body, err := delivery.JSON(m)
	if err != nil {
		return responders.Permanent(fmt.Errorf("encode mail: %w", err))
	}
	return s.client.Send(ctx, delivery.Request{
		URL: s.endpoint,
		Header: http.Header{
			"Authorization": {"Bearer " + s.apiKey},
			"Content-Type":  {"application/json"},
		},
		Body:        body,
		Destination: s.apiKey,
		Secrets:     []string{s.apiKey},
	}, classify)
}

// classify accepts any 2xx: Mail Send answers 202, and 200 in sandbox mode.
func classify(r *delivery.Response) error {
	return delivery.Standard(r, delivery.Is2xx, detail(r))
}

// detail is SendGrid's own explanation: each errors[] entry as
// "field: message", else the body as text.
func detail(r *delivery.Response) string {
	var body struct {
		Errors []struct {
			Message string  `json:"message"`
			Field   *string `json:"field"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil || len(body.Errors) == 0 {
		return r.Text()
	}
	parts := make([]string, 0, len(body.Errors))
	for _, e := range body.Errors {
		if e.Field != nil && *e.Field != "" {
			parts = append(parts, *e.Field+": "+e.Message)
		} else {
			parts = append(parts, e.Message)
		}
	}
	return delivery.OneLine(strings.Join(parts, "; "))
}

// Close releases idle connections.
func (s *SendGrid) Close() error { return s.client.Close() }
