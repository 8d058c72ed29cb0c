package pagerduty

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

// Event is the data of a create_event command, in the field names of
// PagerDuty's Events API v1.
type Event struct {
	ServiceKey  string          `json:"service_key"`
	EventType   string          `json:"event_type"`
	IncidentKey *string         `json:"incident_key,omitempty"`
	Description *string         `json:"description,omitempty"`
	Details     json.RawMessage `json:"details,omitempty"`
	Client      *string         `json:"client,omitempty"`
	ClientURL   *string         `json:"client_url,omitempty"`
	Contexts    []Context       `json:"contexts,omitempty"`
}

// Context is a link or an image attached to a trigger.
type Context struct {
	Type string  `json:"type"`
	Href *string `json:"href,omitempty"`
	Text *string `json:"text,omitempty"`
	Src  *string `json:"src,omitempty"`
	Alt  *string `json:"alt,omitempty"`
}

// Decode parses create_event data and checks the rules of the schema's two
// branches, so that a command PagerDuty would refuse is rejected before it is
// dispatched.
func Decode(_ schemas.Key, data json.RawMessage) (any, error) {
	var e Event
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the event")
	}
	var present map[string]json.RawMessage
	if err := json.Unmarshal(data, &present); err != nil {
		return nil, err
	}
	if err := e.validate(present); err != nil {
		return nil, err
	}
	return &e, nil
}

func (e *Event) validate(present map[string]json.RawMessage) error {
	for _, f := range []string{"service_key", "event_type"} {
		if _, ok := present[f]; !ok {
			return fmt.Errorf("missing %q", f)
		}
	}
	if e.Details != nil && !bytes.HasPrefix(bytes.TrimSpace(e.Details), []byte("{")) {
		return errors.New(`"details" must be an object`)
	}
	switch e.EventType {
	case "trigger":
		if e.Description == nil {
			return errors.New(`a trigger needs "description"`)
		}
	case "acknowledge", "resolve":
		if e.IncidentKey == nil {
			return fmt.Errorf(`an %s event needs "incident_key"`, e.EventType)
		}
		for _, f := range []string{"client", "client_url", "contexts"} {
			if _, ok := present[f]; ok {
				return fmt.Errorf("%q is only allowed on a trigger", f)
			}
		}
	default:
		return fmt.Errorf(`"event_type" must be trigger, acknowledge or resolve, got %q`, e.EventType)
	}
	for i, c := range e.Contexts {
		switch c.Type {
		case "link":
			if c.Href == nil {
				return fmt.Errorf(`contexts[%d]: a link needs "href"`, i)
			}
			if c.Src != nil || c.Alt != nil {
				return fmt.Errorf(`contexts[%d]: a link has only "href" and "text"`, i)
			}
		case "image":
			if c.Src == nil {
				return fmt.Errorf(`contexts[%d]: an image needs "src"`, i)
			}
			if c.Text != nil {
				return fmt.Errorf(`contexts[%d]: an image has only "src", "href" and "alt"`, i)
			}
		default:
			return fmt.Errorf(`contexts[%d]: "type" must be link or image, got %q`, i, c.Type)
		}
	}
	return nil
}

func eventOf(cmd *responders.Command) (*Event, error) {
	if e, ok := cmd.Payload.(*Event); ok && e != nil {
		return e, nil
	}
	p, err := Decode(cmd.Schema, cmd.Data)
	if err != nil {
		return nil, fmt.Errorf("command data: %w", err)
	}
	return p.(*Event), nil
}

// enqueueEvent is an Events API v2 event.
type enqueueEvent struct {
	RoutingKey  string   `json:"routing_key"`
	EventAction string   `json:"event_action"`
	DedupKey    string   `json:"dedup_key,omitempty"`
	Payload     *payload `json:"payload,omitempty"`
	Client      string   `json:"client,omitempty"`
	ClientURL   string   `json:"client_url,omitempty"`
	Links       []link   `json:"links,omitempty"`
	Images      []image  `json:"images,omitempty"`
}

type payload struct {
	Summary       string          `json:"summary"`
	Source        string          `json:"source"`
	Severity      string          `json:"severity"`
	CustomDetails json.RawMessage `json:"custom_details,omitempty"`
}

type link struct {
	Href string `json:"href"`
	Text string `json:"text,omitempty"`
}

type image struct {
	Src  string `json:"src"`
	Href string `json:"href,omitempty"`
	Alt  string `json:"alt,omitempty"`
}

// maxSummary is PagerDuty's limit on payload.summary, in characters.
const maxSummary = 1024

// DefaultSeverity is payload.severity: the v1 command has no severity, and
// v2 requires one on a trigger.
const DefaultSeverity = "error"

// toV2 maps a v1-shaped event onto Events API v2. source becomes
// payload.source, which v2 requires on a trigger and v1 had no field for.
func toV2(e *Event, source string) enqueueEvent {
	out := enqueueEvent{
		RoutingKey:  e.ServiceKey,
		EventAction: e.EventType,
		Client:      deref(e.Client),
		ClientURL:   deref(e.ClientURL),
	}
	if e.IncidentKey != nil {
		out.DedupKey = *e.IncidentKey
	}
	// PagerDuty reads the payload of triggers only; an acknowledge or resolve
	// still carries its description and details, complete, so that nothing
	// the command said is thrown away here.
	if e.EventType == "trigger" || e.Description != nil || e.Details != nil {
		summary := deref(e.Description)
		if summary == "" && e.EventType != "trigger" {
			summary = e.EventType + " " + out.DedupKey
		}
		out.Payload = &payload{
			Summary:       truncate(summary, maxSummary),
			Source:        source,
			Severity:      DefaultSeverity,
			CustomDetails: e.Details,
		}
	}
	for _, c := range e.Contexts {
		switch c.Type {
		case "link":
			out.Links = append(out.Links, link{Href: deref(c.Href), Text: deref(c.Text)})
		case "image":
			out.Images = append(out.Images, image{Src: deref(c.Src), Href: deref(c.Href), Alt: deref(c.Alt)})
		}
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// truncate cuts s to n characters: PagerDuty documents 1024 characters as
// the most a summary may hold, and a shortened alert beats a refused one.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
