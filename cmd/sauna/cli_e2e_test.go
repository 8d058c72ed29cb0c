package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sauna-io/sauna/observer/kinesis/emulator"
)

// TestCLIEndToEnd runs the command-line rules through the binary: none of
// these needs an emulator.
func TestCLIEndToEnd(t *testing.T) {
	var none emulator.Env
	dir := t.TempDir()
	writeFile(t, dir, "pd.json", `{"schema":"iglu:com.snowplowanalytics.sauna.responders/PagerDutyConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"pd","parameters":{"createEventEnabled":true}}}`)
	slack := writeFile(t, dir, "slack.json", "\xef\xbb\xbf"+`{"schema":"iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-1",
 "data":{"enabled":true,"id":"Slack Responder","parameters":{"sendMessageEnabled":true,"webhookUrl":"https://hooks.slack.com/services/T/B/X"}}}`)
	obs := writeFile(t, dir, "observer.json", `{"schema":"iglu:io.sauna.observers/KinesisObserverConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"pd","parameters":{"aws":{},"kinesis":{"region":"us-east-1","streamName":"s","maxRecords":10,"initialPosition":"TRIM_HORIZON"}}}}`)

	t.Run("responder ids and deprecation", func(t *testing.T) {
		// Responder ids need not be table names; the observer's does, and is
		// the only problem reported for it (no derived table or namespace).
		code, stdout, stderr := runCLI(t, none, "", "validate", dir)
		want := obs + `: data.id: "pd" is not usable as a DynamoDB table name: use 3-255 characters of A-Z a-z 0-9 _ . -` + "\n" +
			slack + ": schema: warning: iglu:com.snowplowanalytics.sauna.responders/SlackConfig/avro/1-0-1 is deprecated: name iglu:io.sauna.responders/SlackConfig/avro/1-0-0 instead; only the schema line changes\n"
		if code != 1 || stdout != want {
			t.Errorf("exit %d\nstdout %q\nwant   %q\nstderr %q", code, stdout, want, stderr)
		}
		for _, ok := range []string{`ok (responder "pd"`, `ok (responder "Slack Responder"`} {
			if !strings.Contains(stderr, ok) {
				t.Errorf("stderr %q lacks %q", stderr, ok)
			}
		}
		if !strings.HasSuffix(stderr, "sauna validate: 1 problem(s) found\n") {
			t.Errorf("stderr %q", stderr)
		}
	})

	t.Run("flags after arguments, help and errors", func(t *testing.T) {
		bad := writeFile(t, t.TempDir(), "cmd.json", `{"schema":"iglu:com.snowplowanalytics.sauna.commands/command/jsonschema/1-0-0","data":{}}`)
		code, _, stderr := runCLI(t, none, "", "publish", bad, "--stream", "S")
		if code != 1 || !strings.HasPrefix(stderr, "sauna publish: "+bad+": ") {
			t.Errorf("publish FILE --stream S: exit %d, stderr %q", code, stderr)
		}
		code, stdout, stderr := runCLI(t, none, "", "validate", "-h")
		if code != 0 || !strings.HasPrefix(stdout, "usage: sauna validate") || stderr != "" {
			t.Errorf("validate -h: exit %d\nstdout %q\nstderr %q", code, stdout, stderr)
		}
		code, _, stderr = runCLI(t, none, "", "validate", dir, "--bogus")
		if code != 2 || !strings.HasPrefix(stderr, "sauna validate: flag provided but not defined: -bogus") {
			t.Errorf("validate DIR --bogus: exit %d, stderr %q", code, stderr)
		}
		upper := writeFile(t, t.TempDir(), "x.JSON", "{}")
		code, stdout, _ = runCLI(t, none, "", "validate", upper)
		if code != 1 || !strings.Contains(stdout, upper+": 'sauna run' does not read this file") {
			t.Errorf("validate x.JSON: exit %d, stdout %q", code, stdout)
		}
	})
}

// TestValidateNamesRefusedParamsEndToEnd checks through the binary that a
// parameter a responder refuses is reported at its path, as any other config
// problem is, without the secret the parameter holds.
func TestValidateNamesRefusedParamsEndToEnd(t *testing.T) {
	var none emulator.Env
	dir := t.TempDir()
	slack := writeFile(t, dir, "slack.json", `{"schema":"iglu:io.sauna.responders/SlackConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"slack","parameters":{"sendMessageEnabled":true,"webhookUrl":"hooks.slack.com/services/T/B/PlantedSecret"}}}`)
	webhook := writeFile(t, dir, "webhook.json", `{"schema":"iglu:io.sauna.responders/WebhookConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"webhook","parameters":{"url":"https://h.example/PlantedSecret","headers":{},"signingSecret":"","timeoutMillis":1000}}}`)
	code, stdout, stderr := runCLI(t, none, "", "validate", dir)
	want := slack + ": data.parameters.webhookUrl: must be an http(s) URL\n" +
		webhook + ": data.parameters.signingSecret: empty; use null to send unsigned requests\n"
	if code != 1 || stdout != want {
		t.Errorf("exit %d\nstdout %q\nwant   %q\nstderr %q", code, stdout, want, stderr)
	}
	if strings.Contains(stdout+stderr, "PlantedSecret") {
		t.Errorf("output quotes a secret:\n%s%s", stdout, stderr)
	}
}

// TestVersionStamps builds the binary with the documented link-time stamp
// and checks what `sauna version` prints, with and without it.
func TestVersionStamps(t *testing.T) {
	parallel(t)
	bin := filepath.Join(t.TempDir(), "sauna")
	// -buildvcs=auto: a GOFLAGS default of false must not hide what a plain
	// go build in a checkout records.
	build := exec.Command("go", "build", "-buildvcs=auto", "-ldflags", "-X github.com/sauna-io/sauna/cmd/sauna/cli.buildVersion=v1.2.3-stamped", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "sauna v1.2.3-stamped (") {
		t.Errorf("stamped version %q", out)
	}
	// Go records the revision only in a primary git checkout: a linked
	// worktree's .git is a file, which it does not take for a repository.
	head, err1 := exec.Command("git", "rev-parse", "HEAD").Output()
	gitDir, err2 := exec.Command("git", "rev-parse", "--path-format=absolute", "--git-dir").Output()
	common, err3 := exec.Command("git", "rev-parse", "--path-format=absolute", "--git-common-dir").Output()
	if err := errors.Join(err1, err2, err3); err != nil || string(gitDir) != string(common) {
		t.Logf("not a primary git checkout (%v): revision not checked", err)
		return
	}
	if rev := strings.TrimSpace(string(head)); !strings.Contains(string(out), "revision "+rev) {
		t.Errorf("version %q lacks the revision %s", out, rev)
	}
}
