//go:build !custom || responders.webhook

package all

import _ "github.com/sauna-io/sauna/responders/webhook"
