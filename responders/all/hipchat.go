//go:build !custom || responders.hipchat

package all

import _ "github.com/sauna-io/sauna/responders/hipchat"
