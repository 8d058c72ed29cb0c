package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/sauna-io/sauna/observer"
)

func validateCmd(_ context.Context, env *cliEnv, args []string) int {
	flags := newFlagSet(env, "validate", "PATH...", "Check config files, or every config file of directories, as 'sauna run' would\nread them. Prints one line per problem as 'file: field: message' and exits 1\nif any file is invalid. Warnings (problems in disabled files, deprecated\nschemas, a directory without config files) do not fail.")
	if code := parseFlags(flags, args); code >= 0 {
		return code
	}
	if flags.NArg() == 0 {
		return usageError(flags, "give at least one config file or directory")
	}
	var files []string
	contents := map[string][]byte{}
	ignored := map[string]bool{}
	snap := &observer.Snapshot{}
	problem := func(file string, warning bool, msg string) {
		snap.Problems = append(snap.Problems, observer.Problem{File: file, Message: msg, Warning: warning})
	}
	for _, p := range flags.Args() {
		fi, err := os.Stat(p)
		if err != nil {
			problem(p, false, err.Error())
			continue
		}
		paths := []string{p}
		if fi.IsDir() {
			if paths, err = observer.ListConfigFiles(p); err != nil {
				problem(p, false, err.Error())
				continue
			}
			if len(paths) == 0 {
				problem(p, true, observer.NoConfigFiles)
			}
		} else if !observer.IsConfigFile(filepath.Base(p)) {
			// Checked all the same, but it would not take effect.
			problem(p, false, "'sauna run' does not read this file: "+observer.ConfigFileRule)
			ignored[p] = true
		}
		for _, f := range paths {
			b, err := observer.ReadConfigFile(f)
			if fi.IsDir() && errors.Is(err, fs.ErrNotExist) {
				continue // as 'sauna run' does: gone, or a dangling symlink
			}
			if err != nil {
				problem(f, false, err.Error())
				continue
			}
			files = append(files, f)
			contents[f] = b
		}
	}
	snap = observer.Assemble(files, contents, slog.New(slog.DiscardHandler), snap)
	disabled := map[string]bool{}
	for _, f := range snap.Disabled {
		disabled[f] = true
	}
	failed := 0
	for _, p := range snap.Problems {
		switch {
		case p.Warning && disabled[p.File]:
			fmt.Fprintf(env.stdout, "%s (warning: file is disabled)\n", p)
		case p.Warning:
			w := p
			w.Message = "warning: " + p.Message
			fmt.Fprintln(env.stdout, w)
		default:
			failed++
			fmt.Fprintln(env.stdout, p)
		}
	}
	for _, e := range snap.Entries {
		if ignored[e.File] {
			continue
		}
		fmt.Fprintf(env.stderr, "%s: ok (%s %q, %s)\n", e.File, e.Kind, e.ID, e.Schema)
	}
	if failed > 0 {
		fmt.Fprintf(env.stderr, "sauna validate: %d problem(s) found\n", failed)
		return 1
	}
	return 0
}
