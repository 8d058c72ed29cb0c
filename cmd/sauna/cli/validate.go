package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sauna-io/sauna/observer"
)

func validateCmd(_ context.Context, env *cliEnv, args []string) int {
	flags := newFlagSet(env, "validate", "PATH...", "Check config files, or every config file of directories, as 'sauna run' would\nread them. Prints one line per problem as 'file: field: message' and exits 1\nif any file is invalid. Warnings (problems in disabled files, deprecated\nschemas, a directory without config files, what a responder warns about\nsuch as a plain-http URL) do not fail.")
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
	var built []observer.Problem
	snap = observer.Assemble(files, contents, slog.New(buildWarnings{list: &built}), snap)
	if len(built) > 0 {
		// Each in its file's place: Assemble lists problems file by file,
		// in the order of files, and built is in that order too.
		rank := map[string]int{}
		for i, f := range files {
			if _, ok := rank[f]; !ok {
				rank[f] = i
			}
		}
		merged := make([]observer.Problem, 0, len(snap.Problems)+len(built))
		for _, p := range snap.Problems {
			if r, ok := rank[p.File]; ok {
				for len(built) > 0 && rank[built[0].File] < r {
					merged, built = append(merged, built[0]), built[1:]
				}
			}
			merged = append(merged, p)
		}
		snap.Problems = append(merged, built...)
	}
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

// buildWarnings turns what a responder warns about as its config is built
// (a plain-http URL) into warnings of its file, which 'sauna run' would log:
// validate would otherwise say only "ok" of such a file.
type buildWarnings struct {
	attrs []slog.Attr
	list  *[]observer.Problem
}

func (w buildWarnings) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (w buildWarnings) Handle(_ context.Context, r slog.Record) error {
	p := observer.Problem{Message: r.Message, Warning: true}
	var details []string
	add := func(a slog.Attr) bool {
		switch a.Key {
		case "file":
			p.File = a.Value.String()
		case "responder", "module":
			// The file names them.
		default:
			details = append(details, a.Key+"="+a.Value.String())
		}
		return true
	}
	for _, a := range w.attrs {
		add(a)
	}
	r.Attrs(add)
	if len(details) > 0 {
		p.Message += " (" + strings.Join(details, ", ") + ")"
	}
	*w.list = append(*w.list, p)
	return nil
}

func (w buildWarnings) WithAttrs(as []slog.Attr) slog.Handler {
	return buildWarnings{attrs: append(slices.Clip(w.attrs), as...), list: w.list}
}

func (w buildWarnings) WithGroup(string) slog.Handler { return w }
