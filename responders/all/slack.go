//go:build !custom || responders.slack

package all

import _ "github.com/sauna-io/sauna/responders/slack"
