package observer

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/kinesis"
	_ "github.com/sauna-io/sauna/responders/slack"
	_ "github.com/sauna-io/sauna/responders/webhook"
)

// problemLines formats problems as "field: message" for comparisons.
func problemLines(probs []Problem) []string {
	var out []string
	for _, p := range probs {
		out = append(out, p.Field+": "+p.Message)
	}
	return out
}

func TestResponderIDsNeedNotBeTableNames(t *testing.T) {
	for _, id := range []string{"pd", "Slack Responder", "x", "ünïcode/ok"} {
		content := responderConfig(t, id, "app")
		e, probs := ParseFile("r.json", []byte(content), quiet)
		if e == nil || len(probs) > 0 {
			t.Errorf("responder id %q: problems %v", id, probs)
		}
	}
	_, probs := ParseFile("r.json", []byte(responderConfig(t, "", "app")), quiet)
	if got := problemLines(probs); len(got) != 1 || got[0] != "data.id: must not be empty" {
		t.Errorf("empty responder id: %v", got)
	}
	// An observer id still names its lease table.
	_, probs = ParseFile("o.json", []byte(observerConfig("pd", "s", 10)), quiet)
	if got := problemLines(probs); len(got) != 1 || !strings.HasPrefix(got[0], "data.id: \"pd\" is not usable as a DynamoDB table name") {
		t.Errorf("observer id pd: %v", got)
	}
}

// A parameter that a responder module refuses is reported at its own path,
// like a problem the schema finds; any other refusal concerns data as a whole.
func TestResponderParamErrorsNameTheParameter(t *testing.T) {
	tests := []struct{ name, content, want string }{
		{"fake module", responderConfig(t, "r", refuseParam), "data.parameters.appId: is refused"},
		{"fake module, wrapped", responderConfig(t, "r", refuseWrappedParam), `data.parameters.nested["k"]: is refused`},
		{"fake module, not a parameter", responderConfig(t, "r", refuseConfig), "data: the whole config is refused"},
		{"slack", `{"schema":"iglu:io.sauna.responders/SlackConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"s","parameters":{"sendMessageEnabled":true,"webhookUrl":"hooks.slack.com/services/T/B/PlantedSecret"}}}`,
			"data.parameters.webhookUrl: must be an http(s) URL"},
		{"slack rate", `{"schema":"iglu:io.sauna.responders/SlackConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"s","parameters":{"sendMessageEnabled":true,"webhookUrl":"https://hooks.slack.com/services/T/B/PlantedSecret","rateLimitPerSecond":0}}}`,
			"data.parameters.rateLimitPerSecond: must be greater than 0 (or null for no limit), got 0"},
		{"webhook", `{"schema":"iglu:io.sauna.responders/WebhookConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"w","parameters":{"url":"file:///PlantedSecret","headers":{},"signingSecret":null}}}`,
			"data.parameters.url: must be an http(s) URL"},
		{"webhook header", `{"schema":"iglu:io.sauna.responders/WebhookConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"w","parameters":{"url":"https://h.example/PlantedSecret","headers":{"X-Api-Key":"PlantedSecret","X_Api_Key":"PlantedSecret"},"signingSecret":null}}}`,
			`data.parameters.headers["X_Api_Key"]: "X-Api-Key" and "X_Api_Key" name the same header`},
		{"webhook signing secret", `{"schema":"iglu:io.sauna.responders/WebhookConfig/avro/1-0-0",
 "data":{"enabled":true,"id":"w","parameters":{"url":"https://h.example/PlantedSecret","headers":{},"signingSecret":""}}}`,
			"data.parameters.signingSecret: empty; use null to send unsigned requests"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, probs := ParseFile("r.json", []byte(tc.content), quiet)
			if got := problemLines(probs); e != nil || len(got) != 1 || got[0] != tc.want {
				t.Errorf("problems %q, want [%q]", got, tc.want)
			}
			for _, p := range probs {
				if strings.Contains(p.String(), "PlantedSecret") {
					t.Errorf("problem quotes a secret: %s", p)
				}
			}
		})
	}
}

// A problem with a derived name (the idempotency table, the CloudWatch
// namespace) is reported on the field the file holds: the id.
func TestObserverIDProblemsNameOnlyUserFields(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want []string
	}{
		{"x", []string{`data.id: "x" is not usable as a DynamoDB table name: use 3-255 characters of A-Z a-z 0-9 _ . -`}},
		{"bad id!", []string{`data.id: "bad id!" is not usable as a DynamoDB table name: use 3-255 characters of A-Z a-z 0-9 _ . -`}},
		{strings.Repeat("a", 250), []string{`data.id: "` + strings.Repeat("a", 250) + `" is too long to name the idempotency table "` + strings.Repeat("a", 250) + `-commands" after it: shorten the id or set parameters.delivery.idempotency.tableName`}},
	} {
		_, probs := ParseFile("o.json", []byte(observerConfig(tc.id, "s", 10)), quiet)
		if diff := cmp.Diff(tc.want, problemLines(probs)); diff != "" {
			t.Errorf("id %q (-want +got):\n%s", tc.id, diff)
		}
	}
}

func TestATTimestampMustBeReachable(t *testing.T) {
	at := func(ms int64) string {
		return strings.Replace(observerConfig("obs.a", "s", 10), `"initialPosition":"TRIM_HORIZON","initialPositionModifiers":null`,
			fmt.Sprintf(`"initialPosition":"AT_TIMESTAMP","initialPositionModifiers":{"timestamp":%d}`, ms), 1)
	}
	now := time.Now()
	for _, tc := range []struct {
		name string
		ms   int64
		want string // "" when accepted
	}{
		{"past", now.Add(-time.Hour).UnixMilli(), ""},
		{"epoch", 0, ""},
		{"within the clock skew allowance", now.Add(10 * time.Second).UnixMilli(), ""},
		{"future", now.Add(time.Hour).UnixMilli(), "is in the future"},
		{"far future", 32503680000000, "is in the future"},
		{"negative", -1, "must not be negative, got -1"},
	} {
		_, probs := ParseFile("o.json", []byte(at(tc.ms)), quiet)
		got := problemLines(probs)
		if tc.want == "" {
			if len(got) > 0 {
				t.Errorf("%s: %v", tc.name, got)
			}
			continue
		}
		if len(got) != 1 || !strings.HasPrefix(got[0], "data.parameters.kinesis.initialPositionModifiers.timestamp: ") || !strings.Contains(got[0], tc.want) {
			t.Errorf("%s: %v, want one problem on the timestamp containing %q", tc.name, got, tc.want)
		}
	}
}

func TestDeprecatedKinesisSchemasWarnAndMatchTheCurrentOne(t *testing.T) {
	data := `{"enabled":true,"id":"obs.a","parameters":{"aws":{"accessKeyId":"AKIAEXAMPLE","secretAccessKey":"s3cr3t"},"kinesis":{"region":"us-east-1","streamName":"s","maxRecords":10,"initialPosition":"TRIM_HORIZON","initialPositionModifiers":null}}}`
	file := func(schema string) []byte { return []byte(`{"schema":"` + schema + `","data":` + data + `}`) }
	cur, probs := ParseFile("o.json", file("iglu:io.sauna.observers/KinesisObserverConfig/avro/1-0-0"), quiet)
	if cur == nil || len(probs) > 0 {
		t.Fatalf("current schema: %v", probs)
	}
	for _, k := range kinesis.Configs.Older {
		e, probs := ParseFile("o.json", file(k.String()), quiet)
		if e == nil {
			t.Fatalf("%s: %v", k, probs)
		}
		if diff := cmp.Diff(cur.Observer, e.Observer); diff != "" {
			t.Errorf("%s gives another config than the current schema (-current +got):\n%s", k, diff)
		}
		_, deprecated := kinesis.Configs.DeprecatedBy(k)
		var want []string
		if deprecated {
			want = []string{"schema: " + k.String() + " is deprecated: name iglu:io.sauna.observers/KinesisObserverConfig/avro/1-0-0 instead; only the schema line changes"}
		}
		if diff := cmp.Diff(want, problemLines(probs)); diff != "" {
			t.Errorf("%s warnings (-want +got):\n%s", k, diff)
		}
		for _, p := range probs {
			if !p.Warning {
				t.Errorf("%s: %v is not a warning", k, p)
			}
		}
	}
}

func TestParseFileSkipsUTF8BOM(t *testing.T) {
	e, probs := ParseFile("o.json", append([]byte("\xef\xbb\xbf"), observerConfig("obs.a", "s", 10)...), quiet)
	if e == nil || len(probs) > 0 {
		t.Fatalf("problems %v", probs)
	}
}

// writeOddFiles puts in dir files named like configs that are not config
// files: a directory, a FIFO, a symlink loop, one byte too many; and a
// file of exactly MaxConfigSize (spaces, so not a config either).
func writeOddFiles(t *testing.T, dir string) {
	t.Helper()
	p := func(n string) string { return filepath.Join(dir, n) }
	if err := os.Mkdir(p("dir.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(p("fifo.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("loop2.json", p("loop1.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("loop1.json", p("loop2.json")); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte(" "), MaxConfigSize+1)
	if err := os.WriteFile(p("big.json"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p("max.json"), big[:MaxConfigSize], 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadConfigFileRefusesWhatIsNotARegularConfigFile(t *testing.T) {
	dir := t.TempDir()
	p := func(n string) string { return filepath.Join(dir, n) }
	writeOddFiles(t, dir)
	for name, want := range map[string]string{
		"dir.json":   "a directory, not a regular file",
		"fifo.json":  "a named pipe (FIFO), not a regular file",
		"loop1.json": "too many levels of symbolic links",
		"big.json":   "larger than 1048576",
	} {
		_, err := ReadConfigFile(p(name))
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), dir) {
			t.Errorf("%s: %v, want an error containing %q that does not repeat the path", name, err, want)
		}
		if errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v reads as a missing file", name, err)
		}
	}
	if b, err := ReadConfigFile(p("max.json")); err != nil || len(b) != MaxConfigSize {
		t.Errorf("a file of exactly MaxConfigSize: %d bytes, %v", len(b), err)
	}
	if _, err := ReadConfigFile(p("missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// What is not a config file is refused, naming the file and why, and runs
// nothing.
func TestRescanRefusesWhatIsNotARegularConfigFile(t *testing.T) {
	f := newReloadFixture(t)
	writeOddFiles(t, f.dir)
	if got := f.rescan(); got != nil {
		t.Fatalf("applied %v", ids(got))
	}
	refused := map[string]string{}
	for _, l := range f.log.lines("config refused") {
		refused[filepath.Base(fmt.Sprint(l["file"]))] = fmt.Sprint(l["problem"])
	}
	want := map[string]string{
		"big.json":   "larger than 1048576 bytes, the limit of a config file",
		"dir.json":   "a directory, not a regular file: a config must be a regular file",
		"fifo.json":  "a named pipe (FIFO), not a regular file: a config must be a regular file",
		"loop1.json": "cannot stat the file: too many levels of symbolic links",
		"loop2.json": "cannot stat the file: too many levels of symbolic links",
		"max.json":   "not a self-describing JSON object",
	}
	for name, msg := range want {
		if !strings.HasPrefix(refused[name], msg) {
			t.Errorf("%s: refused with %q, want %q", name, refused[name], msg)
		}
	}
	if len(refused) != len(want) {
		t.Errorf("refused %v", refused)
	}
	if got := f.r.status.get().Refusing; len(got) != len(want) {
		t.Errorf("refusing %v", got)
	}
}

// A file that cannot be read is not a removed file: its last good version
// keeps running, and the error is logged and shown in the reload status.
func TestRescanKeepsLastGoodWhenAFileBecomesUnreadable(t *testing.T) {
	f := newReloadFixture(t)
	f.write("a.json", observerConfig("obs.a", "stream-a", 100))
	f.write("b.json", observerConfig("obs.b", "stream-b", 100))
	f.rescan()

	// A symlink loop in place of a.json.
	f.remove("a.json")
	if err := os.Symlink("a.json", f.path("a.json")); err != nil {
		t.Fatal(err)
	}
	// b.json fails with EIO.
	f.r.read = func(p string) ([]byte, error) {
		if p == f.path("b.json") {
			return nil, fmt.Errorf("cannot read the file: %w", syscall.EIO)
		}
		return ReadConfigFile(p)
	}
	if got := f.rescan(); got != nil {
		t.Fatalf("applied %v", ids(got))
	}
	f.rescan()
	if got := ids(f.set.Running()); !maps.Equal(got, map[string]string{"a.json": "obs.a", "b.json": "obs.b"}) {
		t.Fatalf("running %v", got)
	}
	refused := f.log.lines("config refused")
	if len(refused) != 2 {
		t.Fatalf("refusals logged: %v", refused)
	}
	for _, l := range refused {
		if !strings.Contains(fmt.Sprint(l["problem"]), "too many levels of symbolic links") && !strings.Contains(fmt.Sprint(l["problem"]), "input/output error") {
			t.Errorf("refusal %v", l)
		}
	}
	st := f.r.status.get()
	if diff := cmp.Diff([]string{f.path("a.json"), f.path("b.json")}, st.Refusing); diff != "" {
		t.Errorf("refusing (-want +got):\n%s", diff)
	}

	// A directory or a FIFO named like a config is refused too, and runs nothing.
	if err := os.Mkdir(f.path("c.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(f.path("d.json"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.rescan()
	if got := f.r.status.get().Refusing; len(got) != 4 {
		t.Errorf("refusing %v", got)
	}
}

// A deprecated schema is warned about once per content, however often the
// directory is rescanned.
func TestRescanWarnsOnceAboutADeprecatedSchema(t *testing.T) {
	f := newReloadFixture(t)
	dep := strings.Replace(observerConfig("obs.a", "stream-a", 100), "AmazonKinesisConfig/avro/1-0-0", "AmazonKinesisConfig/avro/1-0-2", 1)
	f.write("a.json", dep)
	f.write("b.json", observerConfig("obs.a", "stream-b", 100)) // refused: id taken, parsed on every change
	f.rescan()
	f.write("c.json", observerConfig("obs.c", "stream-c", 100))
	f.rescan()
	f.r.rescan(t.Context())
	warned := f.log.lines("config warning")
	if len(warned) != 1 || warned[0]["file"] != f.path("a.json") || !strings.Contains(fmt.Sprint(warned[0]["problem"]), "KinesisObserverConfig/avro/1-0-0") {
		t.Fatalf("warnings %v", warned)
	}
	f.write("a.json", strings.Replace(dep, `"maxRecords":100`, `"maxRecords":50`, 1))
	f.rescan()
	if n := len(f.log.lines("config warning")); n != 2 {
		t.Errorf("new content: %d warnings in all, want 2", n)
	}
}

func TestRescanWarnsAboutAnEmptyDirectory(t *testing.T) {
	f := newReloadFixture(t)
	f.rescan()
	f.rescan()
	if n := len(f.log.lines(NoConfigFiles)); n != 1 {
		t.Errorf("empty directory warned %d times, want once", n)
	}
	f.write("a.json", observerConfig("obs.a", "stream-a", 100))
	f.rescan()
	f.remove("a.json")
	f.rescan()
	if n := len(f.log.lines(NoConfigFiles)); n != 2 {
		t.Errorf("emptied again: warned %d times in all, want 2", n)
	}
}
