package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/sauna-io/sauna/schemas"
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *cliEnv, args []string) int
}

type cliEnv struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

func commands() []command {
	return []command{
		{"run", "consume the streams and serve the ingest endpoints configured in a config directory", runCmd},
		{"validate", "check config files and directories", validateCmd},
		{"publish", "validate commands and put them on a Kinesis stream", publishCmd},
		{"outcome", "print the recorded outcome of commands by commandId", outcomeCmd},
		{"outcomes", "search recorded outcomes by time, status, responder and schema", outcomesCmd},
		{"replay", "put commands from a time window of a stream, or dead letters, onto a stream", replayCmd},
		{"leases", "print an observer's lease table: owners, checkpoints, lag, handoffs", leasesCmd},
		{"list", "show the compiled-in observers, ingest endpoint, responders and known schemas", listCmd},
		{"version", "print the version", versionCmd},
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: sauna <command> [flags] [args]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'sauna <command> -h' for a command's flags.")
}

// run is the whole CLI, testable without a process: it returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	env := &cliEnv{stdin: stdin, stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			if c.name != "version" {
				if err := schemas.Check(); err != nil {
					fmt.Fprintf(stderr, "sauna %s: this build's schemas do not compile, so every command would be rejected: %v\n", c.name, err)
					return 1
				}
			}
			return c.run(ctx, env, args[1:])
		}
	}
	fmt.Fprintf(stderr, "sauna: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

// flagOutput is a command's FlagSet output: stderr, plus what parseFlags
// needs to print help on stdout and prefix errors with the command's name.
type flagOutput struct {
	io.Writer
	stdout io.Writer
	name   string
}

func newFlagSet(env *cliEnv, name, argsUsage, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(&flagOutput{Writer: env.stderr, stdout: env.stdout, name: name})
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "%s\n\n%s\n\nflags:\n", strings.TrimSpace("usage: sauna "+name+" [flags] "+argsUsage), summary)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses flags wherever they are among the arguments ("sauna
// publish cmd.json --stream S"); after "--" everything is an argument. -h
// prints the usage on stdout. It returns -1 to continue, or the exit code.
func parseFlags(fs *flag.FlagSet, args []string) int {
	out := fs.Output().(*flagOutput)
	fs.SetOutput(io.Discard) // its errors are printed below, prefixed
	defer fs.SetOutput(out)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(out.stdout)
				fs.Usage()
				return 0
			}
			fmt.Fprintf(out, "sauna %s: %v\nRun 'sauna %s -h' for usage.\n", out.name, err, out.name)
			return 2
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		// Parse stops at the first argument, or just after "--".
		if stopped := len(args) - len(rest); stopped > 0 && args[stopped-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	_ = fs.Parse(append([]string{"--"}, positional...))
	return -1
}

// failer returns a command's error reporter: exit code 2 is a wrong
// command line (usageError); any other code prints the error, prefixed with
// the command's name, on stderr and returns that code.
func failer(fs *flag.FlagSet) func(code int, format string, args ...any) int {
	return func(code int, format string, args ...any) int {
		if code == 2 {
			return usageError(fs, format, args...)
		}
		out := fs.Output().(*flagOutput)
		fmt.Fprintf(out, "sauna %s: %s\n", out.name, fmt.Sprintf(format, args...))
		return code
	}
}

// usageError reports a wrong command line: the error, prefixed with the
// command's name, then its usage, on stderr. It returns the exit code 2.
func usageError(fs *flag.FlagSet, format string, args ...any) int {
	out := fs.Output().(*flagOutput)
	fmt.Fprintf(out, "sauna %s: %s\n", out.name, fmt.Sprintf(format, args...))
	fs.Usage()
	return 2
}

type logFlags struct {
	format string
	level  string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(l.format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: want text or json, got %q", l.format)
}

// counted is "1 thing" or "n things".
func counted(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
