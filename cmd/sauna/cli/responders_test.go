package cli

// The tests use configs of the built-in responders, which a binary links in
// through its main package.
import _ "github.com/sauna-io/sauna/responders/all"
