// Command sauna runs Sauna observers: it reads self-describing observer and
// responder configs from a directory, consumes each observer's Kinesis
// stream, and executes every command on the stream with its responder.
//
// Responders are compiled in. This binary links every built-in one through
// responders/all; a custom build is a main package like this one with one more
// blank import per extra responder package:
//
//	import (
//		_ "github.com/sauna-io/sauna/responders/all"
//		_ "example.com/acme/sauna-responders/jira"
//	)
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
	"time"

	_ "github.com/sauna-io/sauna/responders/all"
)

// exitDeadline is how long after SIGINT/SIGTERM the process may take; past
// it the process exits even if something hangs.
const exitDeadline = 20 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal now ends the process at once
		time.Sleep(exitDeadline)
		os.Stderr.WriteString("sauna: shutdown took longer than 20s; exiting\n")
		os.Exit(3)
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
