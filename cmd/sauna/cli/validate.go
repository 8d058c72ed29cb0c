package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/sauna-io/sauna/observer"
)

func validateCmd(_ context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "validate", "PATH...", "Check config files, or every config file of directories, as 'sauna run' would\nread them. Prints one line per problem as 'file: field: message' and exits 1\nif any file is invalid. Problems in disabled files are printed as warnings.")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	var files []string
	contents := map[string][]byte{}
	snap := &observer.Snapshot{}
	for _, p := range fs.Args() {
		fi, err := os.Stat(p)
		if err != nil {
			snap.Problems = append(snap.Problems, observer.Problem{File: p, Message: err.Error()})
			continue
		}
		paths := []string{p}
		if fi.IsDir() {
			if paths, err = observer.ListConfigFiles(p); err != nil {
				snap.Problems = append(snap.Problems, observer.Problem{File: p, Message: err.Error()})
				continue
			}
		}
		for _, f := range paths {
			b, err := os.ReadFile(f)
			if err != nil {
				snap.Problems = append(snap.Problems, observer.Problem{File: f, Message: err.Error()})
				continue
			}
			files = append(files, f)
			contents[f] = b
		}
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	snap = observer.Assemble(files, contents, quiet, snap)
	failed := 0
	for _, p := range snap.Problems {
		if p.Warning {
			fmt.Fprintf(env.stdout, "%s (warning: file is disabled)\n", p)
			continue
		}
		failed++
		fmt.Fprintln(env.stdout, p)
	}
	for _, e := range snap.Entries {
		fmt.Fprintf(env.stderr, "%s: ok (%s %q, %s)\n", e.File, e.Kind, e.ID, e.Schema)
	}
	if failed > 0 {
		fmt.Fprintf(env.stderr, "%d problem(s) found\n", failed)
		return 1
	}
	return 0
}
