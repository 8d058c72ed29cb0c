package sendgrid

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

// Mail is the data of a send_email command, which is also the body of the
// Mail Send request. Optional fields are pointers so that an explicit false,
// 0 or "" reaches SendGrid as sent and an absent one stays absent; free-form
// objects (headers, substitutions, ...) are kept as raw JSON.
type Mail struct {
	Personalizations []Personalization `json:"personalizations"`
	From             Address           `json:"from"`
	ReplyTo          *Address          `json:"reply_to,omitempty"`
	Subject          *string           `json:"subject,omitempty"`
	Content          *[]Content        `json:"content,omitempty"`
	Attachments      *[]Attachment     `json:"attachments,omitempty"`
	TemplateID       *string           `json:"template_id,omitempty"`
	Sections         json.RawMessage   `json:"sections,omitempty"`
	Headers          json.RawMessage   `json:"headers,omitempty"`
	Categories       *[]string         `json:"categories,omitempty"`
	SendAt           *int64            `json:"send_at,omitempty"`
	BatchID          *string           `json:"batch_id,omitempty"`
	ASM              *ASM              `json:"asm,omitempty"`
	IPPoolName       *string           `json:"ip_pool_name,omitempty"`
	MailSettings     *MailSettings     `json:"mail_settings,omitempty"`
	TrackingSettings *TrackingSettings `json:"tracking_settings,omitempty"`
}

// Personalization is one envelope: its recipients and per-recipient data.
type Personalization struct {
	To            []Address       `json:"to"`
	Cc            *[]Address      `json:"cc,omitempty"`
	Bcc           *[]Address      `json:"bcc,omitempty"`
	Subject       *string         `json:"subject,omitempty"`
	Headers       json.RawMessage `json:"headers,omitempty"`
	Substitutions json.RawMessage `json:"substitutions,omitempty"`
	CustomArgs    json.RawMessage `json:"custom_args,omitempty"`
	SendAt        *int64          `json:"send_at,omitempty"`
}

// Address is an e-mail address with an optional display name.
type Address struct {
	Email string  `json:"email"`
	Name  *string `json:"name,omitempty"`
}

// Content is one body part.
type Content struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// Attachment is one attached file, its content base64-encoded.
type Attachment struct {
	Content     string  `json:"content"`
	Type        *string `json:"type,omitempty"`
	Filename    string  `json:"filename"`
	Disposition *string `json:"disposition,omitempty"`
	ContentID   *string `json:"content_id,omitempty"`
}

// ASM is the unsubscribe group.
type ASM struct {
	GroupID         int64    `json:"group_id"`
	GroupsToDisplay *[]int64 `json:"groups_to_display,omitempty"`
}

// MailSettings are per-message mail settings.
type MailSettings struct {
	BCC                  *BCCSetting    `json:"bcc,omitempty"`
	BypassListManagement *Toggle        `json:"bypass_list_management,omitempty"`
	Footer               *FooterSetting `json:"footer,omitempty"`
	SandboxMode          *Toggle        `json:"sandbox_mode,omitempty"`
	SpamCheck            *SpamCheck     `json:"spam_check,omitempty"`
}

// Toggle is a setting that is only switched on or off.
type Toggle struct {
	Enable *bool `json:"enable,omitempty"`
}

// BCCSetting copies every message to one address.
type BCCSetting struct {
	Enable *bool   `json:"enable,omitempty"`
	Email  *string `json:"email,omitempty"`
}

// FooterSetting appends a footer.
type FooterSetting struct {
	Enable *bool   `json:"enable,omitempty"`
	Text   *string `json:"text,omitempty"`
	HTML   *string `json:"html,omitempty"`
}

// SpamCheck tests the message for spam.
type SpamCheck struct {
	Enable    *bool   `json:"enable,omitempty"`
	Threshold *int64  `json:"threshold,omitempty"`
	PostToURL *string `json:"post_to_url,omitempty"`
}

// TrackingSettings are per-message tracking settings.
type TrackingSettings struct {
	ClickTracking        *ClickTracking        `json:"click_tracking,omitempty"`
	OpenTracking         *OpenTracking         `json:"open_tracking,omitempty"`
	SubscriptionTracking *SubscriptionTracking `json:"subscription_tracking,omitempty"`
	Ganalytics           *Ganalytics           `json:"ganalytics,omitempty"`
}

// ClickTracking rewrites links. EnableText is enable_text (Sauna sent
// enableText, which SendGrid ignores).
type ClickTracking struct {
	Enable     *bool `json:"enable,omitempty"`
	EnableText *bool `json:"enable_text,omitempty"`
}

// OpenTracking adds a tracking pixel.
type OpenTracking struct {
	Enable          *bool   `json:"enable,omitempty"`
	SubstitutionTag *string `json:"substitution_tag,omitempty"`
}

// SubscriptionTracking adds an unsubscribe link.
type SubscriptionTracking struct {
	Enable          *bool   `json:"enable,omitempty"`
	Text            *string `json:"text,omitempty"`
	HTML            *string `json:"html,omitempty"`
	SubstitutionTag *string `json:"substitution_tag,omitempty"`
}

// Ganalytics adds Google Analytics parameters to links.
type Ganalytics struct {
	Enable      *bool   `json:"enable,omitempty"`
	UTMSource   *string `json:"utm_source,omitempty"`
	UTMMedium   *string `json:"utm_medium,omitempty"`
	UTMTerm     *string `json:"utm_term,omitempty"`
	UTMContent  *string `json:"utm_content,omitempty"`
	UTMCampaign *string `json:"utm_campaign,omitempty"`
}

// Decode checks send_email data against its schema with every array item
// held to the rules of the first, then parses it strictly.
//
// The published schema writes each array as a draft-4 tuple, "items": [X],
// which constrains only the first element: under it a second recipient
// without "email", or a second content part without "value", is valid.
// Decode rejects those, naming the element (e.g. /personalizations/2/to/0).
// Unknown fields are refused rather than dropped.
func Decode(k schemas.Key, data json.RawMessage) (any, error) {
	s, err := everyItemSchema(k)
	if err != nil {
		return nil, err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	if err := s.Validate(inst); err != nil {
		return nil, describe(err)
	}
	var m Mail
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the mail")
	}
	return &m, nil
}

func mailOf(cmd *responders.Command) (*Mail, error) {
	if m, ok := cmd.Payload.(*Mail); ok && m != nil {
		return m, nil
	}
	p, err := Decode(cmd.Schema, cmd.Data)
	if err != nil {
		return nil, fmt.Errorf("command data: %w", err)
	}
	return p.(*Mail), nil
}

var (
	everyItemMu      sync.Mutex
	everyItemSchemas = map[schemas.Key]*jsonschema.Schema{}
)

// everyItemSchema compiles, once per version, the bundled schema with each
// one-element tuple "items": [X] turned into "items": X.
func everyItemSchema(k schemas.Key) (*jsonschema.Schema, error) {
	everyItemMu.Lock()
	defer everyItemMu.Unlock()
	if s, ok := everyItemSchemas[k]; ok {
		return s, nil
	}
	raw, ok := schemas.Raw(k)
	if !ok {
		return nil, fmt.Errorf("%s is not bundled", k)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("bundled %s: %w", k, err)
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("bundled %s is not an object", k)
	}
	// The Iglu meta-schema is draft-04 plus "self", which only concerns the
	// schema document, not the data it validates.
	obj["$schema"] = "http://json-schema.org/draft-04/schema#"
	listItems(obj)
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft4)
	c.AssertFormat()
	c.UseLoader(noLoader{})
	loc := "urn:sauna:every-item:" + strings.TrimPrefix(k.String(), "iglu:")
	if err := c.AddResource(loc, obj); err != nil {
		return nil, fmt.Errorf("bundled %s: %w", k, err)
	}
	s, err := c.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("bundled %s: %w", k, err)
	}
	everyItemSchemas[k] = s
	return s, nil
}

func listItems(v any) {
	switch v := v.(type) {
	case map[string]any:
		if items, ok := v["items"].([]any); ok && len(items) == 1 {
			if _, extra := v["additionalItems"]; !extra {
				v["items"] = items[0]
			}
		}
		for _, sub := range v {
			listItems(sub)
		}
	case []any:
		for _, sub := range v {
			listItems(sub)
		}
	}
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("%s is not bundled (schemas are never fetched)", url)
}

var (
	printer        = message.NewPrinter(language.English)
	pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")
)

// describe lists the leaf failures: the inner nodes of the library's error
// tree only restate them.
func describe(err error) error {
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	var causes []string
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			ptr := ""
			for _, tok := range e.InstanceLocation {
				ptr += "/" + pointerEscaper.Replace(tok)
			}
			if ptr == "" {
				ptr = "(root)"
			}
			causes = append(causes, "at "+ptr+": "+e.ErrorKind.LocalizedString(printer))
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return errors.New(strings.Join(causes, "; "))
}
