package cli

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/sauna-io/sauna/observer/ingest"
	"github.com/sauna-io/sauna/observer/kinesis"
	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

func listCmd(_ context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "list", "", "Show the compiled-in observers, ingest endpoint and responders with their config\nand command schemas, and every bundled schema.")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, "takes no arguments, got %q", fs.Args())
	}
	w := env.stdout
	fmt.Fprintln(w, "observers:")
	fmt.Fprintln(w, "  kinesis  consume an Amazon Kinesis stream through the KCL")
	fmt.Fprintf(w, "    config:  %s\n", configKeys(kinesis.Configs))
	fmt.Fprintln(w, "ingest:")
	fmt.Fprintln(w, "  http     serve POST /v1/commands, putting the commands on a Kinesis stream")
	fmt.Fprintf(w, "    config:  %s\n", ingest.ConfigSchema)
	fmt.Fprintln(w, "responders:")
	for _, m := range responders.Modules() {
		fmt.Fprintf(w, "  %-8s %s\n", m.Name, m.Summary)
		if m.Retired != "" {
			fmt.Fprintf(w, "    refused: %s\n", m.Retired)
		}
		fmt.Fprintf(w, "    config:  %s\n", configKeys(m.Configs()))
		var cmds []string
		for _, k := range m.Commands {
			cmds = append(cmds, fmt.Sprintf("iglu:%s/%s/%s/%d-%d-*", k.Vendor, k.Name, k.Format, k.Model, k.Revision))
		}
		fmt.Fprintf(w, "    command: %s\n", strings.Join(cmds, ", "))
	}
	fmt.Fprintln(w, "bundled schemas:")
	for _, k := range schemas.Keys() {
		fmt.Fprintf(w, "  %s\n", k)
	}
	return 0
}

// configKeys lists the current schema first, then the older ones, marking
// the deprecated.
func configKeys(c schemas.ConfigSchemas) string {
	s := []string{c.Current.String()}
	for _, k := range slices.Backward(c.Older) {
		if _, dep := c.DeprecatedBy(k); dep {
			s = append(s, k.String()+" (deprecated)")
		} else {
			s = append(s, k.String())
		}
	}
	return strings.Join(s, ", ")
}

// buildVersion and buildRevision, when set at link time, are the version
// and revision printed:
//
//	go build -ldflags "-X github.com/sauna-io/sauna/cmd/sauna/cli.buildVersion=v1.2.3" ./cmd/sauna
//
// buildRevision is for builds where Go records no VCS revision, such as in a
// linked git worktree (-X ...cli.buildRevision=$(git rev-parse HEAD)).
var buildVersion, buildRevision = "", ""

// buildInfo is what the binary knows of its build: the version (the link-time
// stamp, else the module version of `go install ...@v1.2.3`) and the VCS
// revision `go build` records in a git checkout.
type buildInfo struct {
	version, revision, vcsTime string
	modified                   bool
	goVersion                  string
	// custom is the main module of a custom build (a main package of its
	// own importing sauna's), and saunaModule the sauna module it was
	// built with: its version, or where a replace directive points it.
	custom, saunaModule string
}

// saunaModulePath is this module's path, as a custom build's dependency.
const saunaModulePath = "github.com/sauna-io/sauna"

func readBuildInfo() buildInfo {
	bi, _ := debug.ReadBuildInfo()
	return fromBuildInfo(bi, buildVersion, buildRevision)
}

func fromBuildInfo(bi *debug.BuildInfo, version, revision string) buildInfo {
	b := buildInfo{version: version, revision: revision}
	if bi != nil {
		b.goVersion = bi.GoVersion
		if b.version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.version = bi.Main.Version
		}
		b.custom, b.saunaModule = customBuild(bi)
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && b.revision == "":
				b.revision = s.Value
			case s.Key == "vcs.time":
				b.vcsTime = s.Value
			case s.Key == "vcs.modified":
				b.modified = s.Value == "true"
			}
		}
	}
	if b.version == "" {
		b.version = "devel"
	}
	return b
}

// customBuild returns the main module of bi and the sauna module it depends
// on, when bi is a custom build's; empty strings for sauna's own binary.
func customBuild(bi *debug.BuildInfo) (custom, saunaModule string) {
	if bi.Main.Path == "" || bi.Main.Path == saunaModulePath {
		return "", ""
	}
	for _, d := range bi.Deps {
		if d.Path != saunaModulePath {
			continue
		}
		v := d.Path + " " + d.Version
		if r := d.Replace; r != nil {
			v = d.Path + " replaced by " + r.Path
			// A directory's replacement has no version: Go says (devel).
			if r.Version != "" && r.Version != "(devel)" {
				v += " " + r.Version
			}
		}
		return bi.Main.Path, v
	}
	return "", ""
}

func (b buildInfo) String() string {
	s := "sauna " + b.version
	var extra []string
	if b.custom != "" {
		extra = append(extra, "custom build "+b.custom+" with "+b.saunaModule)
	}
	if b.revision != "" {
		r := "revision " + b.revision
		if b.vcsTime != "" {
			r += " (" + b.vcsTime + ")"
		}
		if b.modified {
			r += ", modified"
		}
		extra = append(extra, r)
	}
	if b.goVersion != "" {
		extra = append(extra, b.goVersion)
	}
	if len(extra) > 0 {
		s += " (" + strings.Join(extra, "; ") + ")"
	}
	return s
}

func versionCmd(_ context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "version", "", "Print the version, the VCS revision the binary was built from (when built in a\ngit checkout) and the Go version.")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, "takes no arguments, got %q", fs.Args())
	}
	fmt.Fprintln(env.stdout, readBuildInfo())
	return 0
}
