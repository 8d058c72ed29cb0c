package slack

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

// Message is the data of a send_message command, which is also the body
// posted to the webhook. Every optional field is a pointer so that an
// explicit false or "" reaches Slack as sent, and an absent one stays absent.
type Message struct {
	Text        *string       `json:"text,omitempty"`
	Username    *string       `json:"username,omitempty"`
	Channel     *string       `json:"channel,omitempty"`
	IconURL     *string       `json:"icon_url,omitempty"`
	IconEmoji   *string       `json:"icon_emoji,omitempty"`
	LinkNames   *bool         `json:"link_names,omitempty"`
	Mrkdwn      *bool         `json:"mrkdwn,omitempty"`
	UnfurlMedia *bool         `json:"unfurl_media,omitempty"`
	UnfurlLinks *bool         `json:"unfurl_links,omitempty"`
	Attachments *[]Attachment `json:"attachments,omitempty"`
}

// Attachment is one legacy message attachment. Fallback is required.
type Attachment struct {
	Fallback   *string  `json:"fallback"`
	Color      *string  `json:"color,omitempty"`
	Pretext    *string  `json:"pretext,omitempty"`
	AuthorName *string  `json:"author_name,omitempty"`
	AuthorLink *string  `json:"author_link,omitempty"`
	AuthorIcon *string  `json:"author_icon,omitempty"`
	Title      *string  `json:"title,omitempty"`
	TitleLink  *string  `json:"title_link,omitempty"`
	Text       *string  `json:"text,omitempty"`
	Fields     *[]Field `json:"fields,omitempty"`
	ImageURL   *string  `json:"image_url,omitempty"`
	ThumbURL   *string  `json:"thumb_url,omitempty"`
	Footer     *string  `json:"footer,omitempty"`
	FooterIcon *string  `json:"footer_icon,omitempty"`
	Ts         *int64   `json:"ts,omitempty"`
}

// Field is one attachment field. Title and Value are required.
type Field struct {
	Title *string `json:"title"`
	Value *string `json:"value"`
	Short *bool   `json:"short,omitempty"`
}

// Decode parses send_message data. Unknown fields are refused rather than
// dropped: a later schema addition must be modelled here before its
// commands can be sent, or Slack would receive less than the command said.
func Decode(_ schemas.Key, data json.RawMessage) (any, error) {
	var m Message
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the message")
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

func (m *Message) validate() error {
	if m.Text == nil && m.Attachments == nil {
		return errors.New(`a message needs "text" or "attachments"`)
	}
	if m.Attachments == nil {
		return nil
	}
	for i, a := range *m.Attachments {
		if a.Fallback == nil {
			return fmt.Errorf(`attachments[%d]: missing "fallback"`, i)
		}
		if a.Fields == nil {
			continue
		}
		for j, f := range *a.Fields {
			if f.Title == nil {
				return fmt.Errorf(`attachments[%d].fields[%d]: missing "title"`, i, j)
			}
			if f.Value == nil {
				return fmt.Errorf(`attachments[%d].fields[%d]: missing "value"`, i, j)
			}
		}
	}
	return nil
}

// messageOf returns the command's decoded message, decoding it here when the
// command did not come through responders.Decode.
func messageOf(cmd *responders.Command) (*Message, error) {
	if m, ok := cmd.Payload.(*Message); ok && m != nil {
		return m, nil
	}
	p, err := Decode(cmd.Schema, cmd.Data)
	if err != nil {
		return nil, fmt.Errorf("command data: %w", err)
	}
	return p.(*Message), nil
}
