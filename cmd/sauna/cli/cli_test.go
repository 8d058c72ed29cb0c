package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/kinesis"
	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

func runIn(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), args, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHelpGoesToStdoutAndExitsZero(t *testing.T) {
	for _, c := range commands() {
		for _, h := range []string{"-h", "--help"} {
			code, stdout, stderr := runIn(t, c.name, h)
			if code != 0 || !strings.HasPrefix(stdout, "usage: sauna "+c.name) || stderr != "" {
				t.Errorf("%s %s: exit %d\nstdout %q\nstderr %q", c.name, h, code, stdout, stderr)
			}
		}
	}
}

func TestCommandLineErrorsNameTheCommand(t *testing.T) {
	for _, c := range commands() {
		code, stdout, stderr := runIn(t, c.name, "--no-such-flag")
		if code != 2 || stdout != "" || !strings.HasPrefix(stderr, "sauna "+c.name+": flag provided but not defined: -no-such-flag\n") {
			t.Errorf("%s: exit %d\nstdout %q\nstderr %q", c.name, code, stdout, stderr)
		}
	}
	for _, args := range [][]string{
		{"validate"},
		{"publish", "x.json"},
		{"list", "extra"},
		{"version", "extra"},
		{"run"},
		{"replay"},
		{"outcome"},
		{"outcomes"},
	} {
		code, _, stderr := runIn(t, args...)
		if code != 2 || !strings.HasPrefix(stderr, "sauna "+args[0]+": ") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}

// list names the current config schema of every kind of config file.
func TestListNamesEveryConfigKind(t *testing.T) {
	code, stdout, stderr := runIn(t, "list")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"iglu:io.sauna.observers/KinesisObserverConfig/avro/1-0-0",
		"iglu:io.sauna.ingest/HttpIngestConfig/avro/1-0-0",
		"iglu:io.sauna.responders/SlackConfig/avro/1-0-0",
	} {
		if !strings.Contains(stdout, "    config:  "+want) {
			t.Errorf("no config line for %s:\n%s", want, stdout)
		}
	}
}

// Flags may follow the arguments; "--" ends the flags.
func TestFlagsAfterArguments(t *testing.T) {
	dir := t.TempDir()
	bad := write(t, dir, "cmd.json", `{"schema":"not a command"}`)
	// Without --stream, publish stops at its usage (exit 2); with it, placed
	// after the file, it gets to the command and refuses it (exit 1).
	code, _, stderr := runIn(t, "publish", bad, "--stream", "S")
	if code != 1 || !strings.Contains(stderr, "sauna publish: "+bad+": ") || !strings.Contains(stderr, "nothing published") {
		t.Errorf("publish FILE --stream S: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runIn(t, "publish", bad, "--stream=S", "--region", "us-east-1")
	if code != 1 {
		t.Errorf("publish FILE --stream=S --region R: exit %d, stderr %q", code, stderr)
	}
	// After "--", "--stream" is a file name.
	code, _, stderr = runIn(t, "publish", "--stream", "S", "--", bad, "--stream")
	if code != 1 || !strings.Contains(stderr, "sauna publish: --stream: ") {
		t.Errorf("publish -- FILE --stream: exit %d, stderr %q", code, stderr)
	}
	cfgDir := t.TempDir()
	write(t, cfgDir, "obs.json", observerJSON("obs.a"))
	code, stdout, stderr := runIn(t, "outcome", "some-id", "--observer-config", filepath.Join(cfgDir, "obs.json"), "--region")
	if code != 2 || !strings.Contains(stderr, "sauna outcome: flag needs an argument: -region") {
		t.Errorf("outcome ID --observer-config F --region: exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
}

func observerJSON(id string) string {
	return `{"schema":"iglu:io.sauna.observers/KinesisObserverConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"` + id + `","parameters":{"aws":{},
   "kinesis":{"region":"us-east-1","streamName":"s","maxRecords":10,"initialPosition":"TRIM_HORIZON"}}}}`
}

func TestValidateResponderIDs(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "pd.json", `{"schema":"iglu:com.snowplowanalytics.sauna.responders/PagerDutyConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"pd","parameters":{"createEventEnabled":true}}}`)
	write(t, dir, "slack.json", `{"schema":"iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"Slack Responder","parameters":{"sendMessageEnabled":true,"webhookUrl":"https://hooks.slack.com/services/T/B/X"}}}`)
	code, stdout, stderr := runIn(t, "validate", dir)
	if code != 0 || stdout != "" || !strings.Contains(stderr, `ok (responder "pd"`) || !strings.Contains(stderr, `ok (responder "Slack Responder"`) {
		t.Errorf("exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
	}
}

// A parameter a responder refuses is named by its path, as a problem the
// schema finds is, and the output never quotes a secret.
func TestValidateNamesRefusedResponderParameters(t *testing.T) {
	dir := t.TempDir()
	slack := write(t, dir, "slack.json", `{"schema":"iglu:io.sauna.responders/SlackConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"slack","parameters":{"sendMessageEnabled":true,"webhookUrl":"hooks.slack.com/services/T/B/PlantedSecret"}}}`)
	webhook := write(t, dir, "webhook.json", `{"schema":"iglu:io.sauna.responders/WebhookConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"webhook","parameters":{"url":"https://h.example/PlantedSecret","headers":{"Content-Type":"PlantedSecret"},"signingSecret":null}}}`)
	sendgrid := write(t, dir, "sendgrid.json", `{"schema":"iglu:io.sauna.responders/SendgridConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"sendgrid","parameters":{"recipientsEnabled":false,"emailsEnabled":true,"apiKeyId":"SG.Planted Secret"}}}`)
	pd := write(t, dir, "pd.json", `{"schema":"iglu:io.sauna.responders/PagerDutyConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"pd","parameters":{"createEventEnabled":true,"apiUrl":"https://events.pagerduty.com","rateLimitPerSecond":1,"rateLimitBurst":0}}}`)
	code, stdout, stderr := runIn(t, "validate", dir)
	want := pd + ": data.parameters.rateLimitBurst: must be at least 1, got 0\n" +
		sendgrid + ": data.parameters.apiKeyId: contains a space, a control or a non-ASCII character at byte 10\n" +
		slack + ": data.parameters.webhookUrl: must be an http(s) URL\n" +
		webhook + `: data.parameters.headers["Content-Type"]: "Content-Type" is reserved` + "\n"
	if code != 1 || stdout != want {
		t.Errorf("exit %d\nstdout %q\nwant   %q\nstderr %q", code, stdout, want, stderr)
	}
	if strings.Contains(stdout+stderr, "Planted") {
		t.Errorf("output quotes a secret:\n%s%s", stdout, stderr)
	}
}

func TestValidateWarnsAboutDeprecatedSchemas(t *testing.T) {
	dir := t.TempDir()
	f := write(t, dir, "slack.json", `{"schema":"iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-1",
 "data":{"enabled":true,"id":"slack","parameters":{"sendMessageEnabled":true,"webhookUrl":"https://hooks.slack.com/services/T/B/X"}}}`)
	code, stdout, stderr := runIn(t, "validate", f)
	want := f + ": schema: warning: iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-1 is deprecated: name iglu:io.sauna.responders/SlackConfig/avro/1-0-0 instead; only the schema line changes\n"
	if code != 0 || stdout != want || !strings.Contains(stderr, "ok (responder") {
		t.Errorf("exit %d\nstdout %q\nwant   %q\nstderr %q", code, stdout, want, stderr)
	}
	for _, schema := range []string{
		"iglu:io.sauna.responders/SlackConfig/avro/1-0-0",
		"iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-0",
	} {
		write(t, dir, "slack.json", strings.Replace(mustRead(t, f), "iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-1", schema, 1))
		if code, stdout, _ := runIn(t, "validate", f); code != 0 || stdout != "" {
			t.Errorf("%s: exit %d, stdout %q", schema, code, stdout)
		}
	}
}

// What a responder warns about as it is built, which 'sauna run' logs, is a
// warning of its file in validate's output too, in that file's place.
func TestValidateShowsWhatResponderConfigsWarnAbout(t *testing.T) {
	dir := t.TempDir()
	obs := write(t, dir, "a.json", strings.Replace(observerJSON("obs.a"), `"maxRecords":10`, `"maxRecords":0`, 1))
	hook := write(t, dir, "b.json", `{"schema":"iglu:io.sauna.responders/WebhookConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"hook","parameters":{"url":"http://127.0.0.1:8089/PlantedSecret","signingSecret":null}}}`)
	slack := write(t, dir, "c.json", `{"schema":"iglu:io.sauna.responders/SlackConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"slack","parameters":{"sendMessageEnabled":true,"webhookUrl":"http://hooks.example/services/T/B/PlantedSecret"}}}`)
	code, stdout, stderr := runIn(t, "validate", dir)
	want := obs + ": data.parameters.kinesis.maxRecords: must be between 1 and 10000 (the GetRecords limit), got 0\n" +
		hook + ": warning: url is not https: bodies and headers travel in clear text (destination=http://127.0.0.1:8089)\n" +
		slack + ": warning: webhookUrl is not https: the URL is the webhook's only credential (destination=http://hooks.example)\n"
	if code != 1 || stdout != want || !strings.Contains(stderr, hook+": ok (responder") {
		t.Errorf("exit %d\nstdout %q\nwant   %q\nstderr %q", code, stdout, want, stderr)
	}
	if strings.Contains(stdout+stderr, "Planted") {
		t.Errorf("output quotes a secret:\n%s%s", stdout, stderr)
	}
	// Alone, the warning does not fail the file.
	if code, stdout, _ := runIn(t, "validate", hook); code != 0 || !strings.HasPrefix(stdout, hook+": warning: url is not https") {
		t.Errorf("%s alone: exit %d, stdout %q", hook, code, stdout)
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestValidateAgreesWithRunOnWhichFilesAreConfigs(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"x.JSON", ".hidden.json", "notes.txt"} {
		p := write(t, dir, name, observerJSON("obs.a"))
		code, stdout, stderr := runIn(t, "validate", p)
		want := p + ": 'sauna run' does not read this file: config files are named *.json or *.avro (lower case) and do not start with \".\"\n"
		if code != 1 || stdout != want || strings.Contains(stderr, ": ok") {
			t.Errorf("%s: exit %d\nstdout %q\nstderr %q", name, code, stdout, stderr)
		}
	}
	// A directory holding only those has no config files, for run as for validate.
	code, stdout, _ := runIn(t, "validate", dir)
	if code != 0 || stdout != dir+": warning: "+"no config files in the config directory (config files are named *.json or *.avro (lower case) and do not start with \".\")\n" {
		t.Errorf("directory without configs: exit %d, stdout %q", code, stdout)
	}
}

func TestValidateRefusesNonRegularAndHugeFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sub.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, dir, "huge.json", strings.Repeat(" ", 1<<20+1))
	code, stdout, _ := runIn(t, "validate", dir)
	for _, want := range []string{
		filepath.Join(dir, "huge.json") + ": larger than 1048576 bytes",
		filepath.Join(dir, "sub.json") + ": a directory, not a regular file",
	} {
		if code != 1 || !strings.Contains(stdout, want) {
			t.Errorf("exit %d, stdout %q, want a line with %q", code, stdout, want)
		}
	}
}

func TestVersionPrintsBuildInfo(t *testing.T) {
	code, stdout, _ := runIn(t, "version")
	// A test binary has no module version: "devel", then the Go version.
	if code != 0 || !strings.HasPrefix(stdout, "sauna devel (") || !strings.Contains(stdout, "go1.") {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
	defer func(v string) { buildVersion = v }(buildVersion)
	buildVersion = "v9.8.7"
	if _, stdout, _ := runIn(t, "version"); !strings.HasPrefix(stdout, "sauna v9.8.7 (") {
		t.Errorf("stamped: %q", stdout)
	}
}

func TestVersionFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/sauna-io/sauna", Version: "v1.4.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abc"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	for _, tc := range []struct {
		bi                *debug.BuildInfo
		version, revision string
		want              string
	}{
		{bi, "", "", "sauna v1.4.0 (revision 0123abc (2026-12-01T10:00:00Z), modified; go1.26.8)"},
		{bi, "v2.0.0", "", "sauna v2.0.0 (revision 0123abc (2026-12-01T10:00:00Z), modified; go1.26.8)"},
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "", "", "sauna devel (go1.26.8)"},
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "v2.0.0", "fedcba9", "sauna v2.0.0 (revision fedcba9; go1.26.8)"},
		{nil, "", "", "sauna devel"},
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "example.com/ops/sauna", Version: "v0.3.0"},
			Deps: []*debug.Module{{Path: "github.com/sauna-io/sauna", Version: "v1.4.0"}}}, "", "",
			"sauna v0.3.0 (custom build example.com/ops/sauna with github.com/sauna-io/sauna v1.4.0; go1.26.8)"},
		{&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "example.com/ops/sauna", Version: "(devel)"},
			Deps: []*debug.Module{{Path: "github.com/sauna-io/sauna", Version: "v0.0.0-00010101000000-000000000000", Replace: &debug.Module{Path: "/src/sauna", Version: "(devel)"}}}}, "", "",
			"sauna devel (custom build example.com/ops/sauna with github.com/sauna-io/sauna replaced by /src/sauna; go1.26.8)"},
	} {
		if got := fromBuildInfo(tc.bi, tc.version, tc.revision).String(); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}

// A deprecated config schema's settings are all in its replacement, with the
// same types and defaults (the replacement may add some, with defaults), so
// that changing a file's schema line is all a user does.
func TestDeprecatedConfigSchemasHaveTheSameSettings(t *testing.T) {
	sets := []schemas.ConfigSchemas{kinesis.Configs}
	for _, m := range responders.Modules() {
		sets = append(sets, m.Configs())
	}
	n := 0
	for _, c := range sets {
		for _, k := range c.Deprecated {
			by, ok := c.DeprecatedBy(k)
			if !ok || !c.Accepts(k) {
				t.Errorf("%s: deprecated but not accepted", k)
				continue
			}
			dep := settingsOf(t, k)
			if diff := cmp.Diff(dep, restrict(dep, settingsOf(t, by))); diff != "" {
				t.Errorf("%s and its replacement %s differ (-deprecated +replacement):\n%s", k, by, diff)
			}
			n++
		}
	}
	if n != 5 {
		t.Errorf("%d deprecated config schemas, want 5", n)
	}
}

// settingsOf is an Avro schema without names of types, namespaces and docs.
func settingsOf(t *testing.T, k schemas.Key) any {
	t.Helper()
	raw, ok := schemas.Raw(k)
	if !ok {
		t.Fatalf("%s is not bundled", k)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	var strip func(v any) any
	strip = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			out := map[string]any{}
			_, named := x["fields"]
			_, symbols := x["symbols"]
			for key, val := range x {
				switch {
				case key == "doc", key == "namespace":
				case key == "name" && (named || symbols):
				default:
					out[key] = strip(val)
				}
			}
			return out
		case []any:
			out := make([]any, len(x))
			for i := range x {
				out[i] = strip(x[i])
			}
			return out
		}
		return v
	}
	return strip(v)
}

// restrict drops from b the record fields a does not have.
func restrict(a, b any) any {
	am, ok1 := a.(map[string]any)
	bm, ok2 := b.(map[string]any)
	if ok1 && ok2 {
		out := map[string]any{}
		for k, v := range bm {
			out[k] = restrict(am[k], v)
		}
		if af, ok := am["fields"].([]any); ok {
			bf, _ := bm["fields"].([]any)
			var kept []any
			for _, f := range af {
				name := f.(map[string]any)["name"]
				for _, g := range bf {
					if g.(map[string]any)["name"] == name {
						kept = append(kept, restrict(f, g))
					}
				}
			}
			out["fields"] = kept
			// A default of a whole record lists the fields it has.
			if ad, ok := am["default"].(map[string]any); ok {
				if bd, ok := bm["default"].(map[string]any); ok {
					d := map[string]any{}
					for k := range ad {
						d[k] = bd[k]
					}
					out["default"] = d
				}
			}
		}
		return out
	}
	al, ok1 := a.([]any)
	bl, ok2 := b.([]any)
	if ok1 && ok2 && len(al) == len(bl) {
		out := make([]any, len(bl))
		for i := range bl {
			out[i] = restrict(al[i], bl[i])
		}
		return out
	}
	return b
}

// Between two configs with one id, validate refuses the one 'sauna run'
// refuses (the later by name), whatever order the files are given in.
func TestValidateRefusesWhatRunRefuses(t *testing.T) {
	dir := t.TempDir()
	a := write(t, dir, "a.json", observerJSON("obs.x"))
	b := write(t, dir, "b.json", observerJSON("obs.x"))
	for _, args := range [][]string{{dir}, {a, b}, {b, a}} {
		code, stdout, stderr := runIn(t, append([]string{"validate"}, args...)...)
		want := b + `: data.id: id "obs.x" is already used by ` + a + "; ids must be unique across enabled configs\n"
		if code != 1 || stdout != want || !strings.Contains(stderr, a+": ok") || strings.Contains(stderr, b+": ok") {
			t.Errorf("validate %v: exit %d\nstdout %q, want %q\nstderr %q", args, code, stdout, want, stderr)
		}
	}
}

func TestCounted(t *testing.T) {
	for n, want := range map[int]string{0: "0 live workers", 1: "1 live worker", 3: "3 live workers"} {
		if got := counted(n, "live worker"); got != want {
			t.Errorf("counted(%d) = %q, want %q", n, got, want)
		}
	}
}
