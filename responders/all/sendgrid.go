//go:build !custom || responders.sendgrid

package all

import _ "github.com/sauna-io/sauna/responders/sendgrid"
