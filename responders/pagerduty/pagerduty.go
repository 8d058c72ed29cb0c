// Package pagerduty is the responder for PagerDuty create_event commands: it
// delivers each Events API v1-shaped command through Events API v2. See
// README.md.
package pagerduty

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
	ConfigV100 = schemas.Key{Vendor: "com.snowplowanalytics.sauna.responders", Name: "PagerDutyConfig", Format: "avro", Model: 1, Revision: 0, Addition: 0}
	// ConfigV101 was published under Sauna's vendor by earlier sauna releases;
	// it is accepted with a warning naming ResponderConfigV100.
	ConfigV101          = schemas.Key{Vendor: "com.snowplowanalytics.sauna.responders", Name: "PagerDutyConfig", Format: "avro", Model: 1, Revision: 0, Addition: 1}
	ResponderConfigV100 = schemas.Key{Vendor: "io.sauna.responders", Name: "PagerDutyConfig", Format: "avro", Model: 1, Revision: 0, Addition: 0}
	CreateEvent         = schemas.Key{Vendor: "com.pagerduty.sauna.commands", Name: "create_event", Format: "jsonschema", Model: 1, Revision: 0, Addition: 0}
)

// DefaultAPIURL is the Events API base URL of PagerDuty's US service region.
const DefaultAPIURL = "https://events.pagerduty.com"

// DefaultLimit paces each routing key.
var DefaultLimit = delivery.PerSecond(2, 10)

//go:embed example-config.json
var exampleConfig string

func init() {
	responders.Register(responders.Module{
		Name:              "pagerduty",
		Summary:           "PagerDuty: sends create_event commands through Events API v2",
		ConfigSchemas:     []schemas.Key{ConfigV100, ConfigV101, ResponderConfigV100},
		DeprecatedConfigs: []schemas.Key{ConfigV101},
		Commands:          []schemas.Key{CreateEvent},
		Decode:            Decode,
		New:               New,
	})
}

// PagerDuty enqueues events; the routing key comes with each command.
type PagerDuty struct {
	endpoint string
	source   string
	client   *delivery.Client
	log      *slog.Logger
}

var (
	_ responders.Responder = (*PagerDuty)(nil)
	_ io.Closer            = (*PagerDuty)(nil)
)

type parameters struct {
	CreateEventEnabled bool    `json:"createEventEnabled"`
	APIURL             *string `json:"apiUrl"`
	delivery.RateParams
}

// New builds the responder from a PagerDutyConfig. It returns (nil, nil)
// when createEventEnabled is false, since that is the only action.
func New(cfg responders.Config) (responders.Responder, error) {
	p, err := newPagerDuty(cfg, delivery.Options{})
	if p == nil {
		return nil, err
	}
	return p, err
}

func newPagerDuty(cfg responders.Config, o delivery.Options) (*PagerDuty, error) {
	var p parameters
	if err := cfg.DecodeParameters(&p); err != nil {
		return nil, err
	}
	if !p.CreateEventEnabled {
		return nil, nil
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
	if cfg.ID == "" {
		return nil, errors.New("config id is empty; it is the payload.source of every trigger")
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
	return &PagerDuty{
		endpoint: strings.TrimRight(base, "/") + "/v2/enqueue",
		source:   cfg.ID,
		client:   c,
		log:      o.Logger,
	}, nil
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

// Respond enqueues the command's event. The routing key is the destination:
// it selects the rate limiter and is never printed.
func (p *PagerDuty) Respond(ctx context.Context, cmd *responders.Command) error {
	e, err := eventOf(cmd)
	if err != nil {
		return responders.Permanent(err)
	}
	body, err := delivery.JSON(toV2(e, p.source))
	if err != nil {
		return responders.Permanent(fmt.Errorf("encode event: %w", err))
	}
	var accepted enqueueResponse
	err = p.client.Send(ctx, delivery.Request{
		URL:         p.endpoint,
		Header:      http.Header{"Content-Type": {"application/json"}},
		Body:        body,
		Destination: e.ServiceKey,
		Secrets:     []string{e.ServiceKey},
	}, func(r *delivery.Response) error {
		err := classify(r)
		if err == nil {
			_ = json.Unmarshal(r.Body, &accepted)
		}
		return err
	})
	if err == nil {
		p.log.Debug("event enqueued", "event_action", e.EventType, "dedup_key", accepted.DedupKey)
	}
	return err
}

// enqueueResponse is PagerDuty's answer: on 202 the dedup_key it used (its
// own when the command had no incident_key); on 400 the reasons.
type enqueueResponse struct {
	Status   string   `json:"status"`
	Message  string   `json:"message"`
	DedupKey string   `json:"dedup_key"`
	Errors   []string `json:"errors"`
}

func classify(r *delivery.Response) error {
	return delivery.Standard(r, delivery.Is(http.StatusAccepted), detail(r))
}

// detail is PagerDuty's own explanation: message and errors from a JSON
// body, else the body as text.
func detail(r *delivery.Response) string {
	var er enqueueResponse
	if err := json.Unmarshal(r.Body, &er); err != nil || (er.Message == "" && len(er.Errors) == 0) {
		return r.Text()
	}
	d := er.Message
	if len(er.Errors) > 0 {
		if d != "" {
			d += ": "
		}
		d += strings.Join(er.Errors, "; ")
	}
	return delivery.OneLine(d)
}

// Close releases idle connections.
func (p *PagerDuty) Close() error { return p.client.Close() }
