package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/sauna-io/sauna/schemas"
)

const brokenSchemaEnv = "SAUNA_TEST_BROKEN_SCHEMA"

// In the child process of TestBrokenSchemasStopTheCommands, a custom build's
// command schema that does not compile (a "type" of 5).
func init() {
	if os.Getenv(brokenSchemaEnv) != "1" {
		return
	}
	schemas.Register(fstest.MapFS{"com.acme.commands/broken/jsonschema/1-0-0": {Data: []byte(`{
 "$schema": "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/jsonschema/1-0-0#",
 "self": {"vendor": "com.acme.commands", "name": "broken", "format": "jsonschema", "version": "1-0-0"},
 "type": 5}`)}})
}

// The JSON Schemas compile together: one that does not leaves no command
// valid, so that a daemon would reject, record and checkpoint past every
// record. Every command but version stops at once instead, saying why.
// Schemas are registered before any use, at init, so this runs in a child
// process of its own.
func TestBrokenSchemasStopTheCommands(t *testing.T) {
	if os.Getenv(brokenSchemaEnv) == "1" {
		dir, empty := t.TempDir(), t.TempDir()
		cmd := write(t, t.TempDir(), "cmd.json", `{}`)
		write(t, dir, "obs.json", observerJSON("obs.a"))
		for _, args := range [][]string{
			{"run", "--config-dir", empty, "--admin-addr", ""},
			{"validate", dir},
			{"publish", "--stream", "s", cmd},
			{"list"},
		} {
			// Cancelled: were the check gone, run would stop at once
			// rather than serve.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var out, errOut bytes.Buffer
			code := Run(ctx, args, strings.NewReader(""), &out, &errOut)
			stdout, stderr := out.String(), errOut.String()
			want := "sauna " + args[0] + ": this build's schemas do not compile, so every command would be rejected: schemas: compile iglu:com.acme.commands/broken/jsonschema/1-0-0: "
			if code != 1 || stdout != "" || !strings.HasPrefix(stderr, want) {
				t.Errorf("%v: exit %d\nstdout %q\nstderr %q\nwant prefix %q", args, code, stdout, stderr, want)
			}
		}
		if code, stdout, _ := runIn(t, "version"); code != 0 || !strings.HasPrefix(stdout, "sauna ") {
			t.Errorf("version: exit %d, stdout %q", code, stdout)
		}
		return
	}
	child := exec.Command(os.Args[0], "-test.run=^TestBrokenSchemasStopTheCommands$", "-test.v")
	child.Env = append(os.Environ(), brokenSchemaEnv+"=1")
	out, err := child.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestBrokenSchemasStopTheCommands") {
		t.Errorf("child: %v\n%s", err, out)
	}
}
