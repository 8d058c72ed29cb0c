// Package cli is the whole sauna command line: run, validate, publish,
// outcome, outcomes, replay, leases, list and version. It links no
// responder itself; a main package blank-imports the responder packages it
// wants and calls Main, which is how both the sauna binary and custom builds
// are made.
package cli

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// exitDeadline is how long after SIGINT/SIGTERM the process may take; past
// it the process exits even if something hangs.
const exitDeadline = 20 * time.Second

// Main runs the command line given by os.Args and exits the process with its
// status. The first SIGINT or SIGTERM starts a graceful stop; a second one,
// or the exit deadline passing, ends the process at once.
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal now ends the process at once
		time.Sleep(exitDeadline)
		os.Stderr.WriteString("sauna: shutdown took longer than 20s; exiting\n")
		os.Exit(3)
	}()
	os.Exit(Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Run is the command line without a process: it returns the exit status, so
// it can be called from tests and from programs that embed sauna.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return run(ctx, args, stdin, stdout, stderr)
}
