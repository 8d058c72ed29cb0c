package cli

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/sauna-io/sauna/observer/kinesis"
	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

func listCmd(_ context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "list", "", "Show the compiled-in observers and responders with their config and command\nschemas, and every bundled schema.")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	w := env.stdout
	fmt.Fprintln(w, "observers:")
	fmt.Fprintln(w, "  kinesis  consume an Amazon Kinesis stream through the KCL")
	fmt.Fprintf(w, "    config:  %s\n", keys(kinesis.ConfigSchemas()))
	fmt.Fprintln(w, "responders:")
	for _, m := range responders.Modules() {
		fmt.Fprintf(w, "  %-8s %s\n", m.Name, m.Summary)
		if m.Retired != "" {
			fmt.Fprintf(w, "    refused: %s\n", m.Retired)
		}
		fmt.Fprintf(w, "    config:  %s\n", keys(m.ConfigSchemas))
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

func keys(ks []schemas.Key) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = k.String()
	}
	return strings.Join(s, ", ")
}

// buildVersion is set at link time: -ldflags "-X main.buildVersion=v1.2.3".
var buildVersion = ""

func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func versionCmd(_ context.Context, env *cliEnv, args []string) int {
	fs := newFlagSet(env, "version", "", "Print the version.")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	fmt.Fprintf(env.stdout, "sauna %s\n", version())
	return 0
}
