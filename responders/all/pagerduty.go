//go:build !custom || responders.pagerduty

package all

import _ "github.com/sauna-io/sauna/responders/pagerduty"
