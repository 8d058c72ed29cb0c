// Command sauna runs Sauna observers: it reads self-describing observer,
// responder and HTTP ingest configs from a directory, consumes each
// observer's Kinesis stream, executes every command on the stream with its
// responder, and serves each ingest endpoint, which puts commands on a
// stream.
//
// Responders are compiled in. This binary links every built-in one through
// responders/all; a custom build is a main package like this one with one more
// blank import per extra responder package:
//
//	package main
//
//	import (
//		"github.com/sauna-io/sauna/cmd/sauna/cli"
//		_ "github.com/sauna-io/sauna/responders/all"
//		_ "example.com/acme/sauna-responders/jira"
//	)
//
//	func main() { cli.Main() }
package main

import (
	"github.com/sauna-io/sauna/cmd/sauna/cli"
	_ "github.com/sauna-io/sauna/responders/all"
)

func main() { cli.Main() }
