package observer

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/sauna-io/sauna/observer/ingest"
	"github.com/sauna-io/sauna/observer/kinesis"
	"github.com/sauna-io/sauna/responders"
	"github.com/sauna-io/sauna/schemas"
)

// Kind says what a config file configures.
type Kind int

// Kinds of config files.
const (
	KindObserver Kind = iota + 1
	KindResponder
	KindIngest
)

func (k Kind) String() string {
	switch k {
	case KindObserver:
		return "observer"
	case KindResponder:
		return "responder"
	case KindIngest:
		return "ingest"
	}
	return "unknown"
}

// Entry is one config file that decoded and validated.
type Entry struct {
	File    string
	Hash    [sha256.Size]byte
	Schema  schemas.Key
	ID      string
	Enabled bool
	Kind    Kind

	// Observer is set for KindObserver.
	Observer kinesis.Config
	// Module and Responder are set for KindResponder. Responder is nil when
	// the config enables none of the module's actions.
	Module    string
	Responder responders.Responder
	// Ingest is set for KindIngest.
	Ingest ingest.Config
}

// unsupported names config schemas Sauna knew that this daemon deliberately
// does not run, so that an enabled one is an error rather than a silent skip.
var unsupported = map[string]string{
	"com.snowplowanalytics.sauna.observers/LocalFilesystemConfig": "the local filesystem observer (batch files) is not supported; use an AmazonKinesisConfig observer",
	"com.snowplowanalytics.sauna.observers/AmazonS3Config":        "the Amazon S3 observer (batch files) is not supported; use an AmazonKinesisConfig observer",
	"com.snowplowanalytics.sauna.observers/AzureEventHubsConfig":  "the Azure Event Hubs observer is not supported",
	"com.snowplowanalytics.sauna.loggers/AmazonDynamodbConfig":    "loggers are not supported: sauna logs with structured logs and keeps command outcomes itself",
	"com.snowplowanalytics.sauna.loggers/HipchatConfig":           "loggers are not supported, and HipChat Cloud was shut down in February 2019",
	"com.snowplowanalytics.sauna.responders/OptimizelyConfig":     "the Optimizely responder (batch files) is not supported",
	"com.snowplowanalytics.sauna.responders/FacebookConfig":       "the Facebook custom audience responder is not supported",
	"com.snowplowanalytics.sauna.responders/OpsGenieConfig":       "the OpsGenie responder is not supported",
	"com.snowplowanalytics.sauna.responders/PusherConfig":         "the Pusher responder is not supported",
	"com.snowplowanalytics.sauna.responders/SendgridConfig/1-0-0": "SendgridConfig 1-0-0 only configures the batch recipients responder, which is not supported; use SendgridConfig 1-0-1 or later with emailsEnabled",
}

func unsupportedReason(k schemas.Key) (string, bool) {
	if r, ok := unsupported[fmt.Sprintf("%s/%s/%d-%d-%d", k.Vendor, k.Name, k.Model, k.Revision, k.Addition)]; ok {
		return r, true
	}
	r, ok := unsupported[k.Vendor+"/"+k.Name]
	return r, ok
}

// IsConfigFile reports whether a directory entry name is read as a config:
// top-level *.json and *.avro files, except hidden ones (editor swap files,
// the "..data" links of Kubernetes ConfigMap volumes). `sauna run` and
// `sauna validate` both decide with it.
func IsConfigFile(name string) bool {
	return !strings.HasPrefix(name, ".") && (strings.HasSuffix(name, ".json") || strings.HasSuffix(name, ".avro"))
}

// ConfigFileRule says which files IsConfigFile accepts, for messages.
const ConfigFileRule = "config files are named *.json or *.avro (lower case) and do not start with \".\""

// MaxConfigSize bounds a config file. Configs are a few KiB: a larger file
// is something else (a log, a dump) and is refused rather than read.
const MaxConfigSize = 1 << 20

// ReadConfigFile reads one config file: a regular file, symlinks followed,
// of at most MaxConfigSize bytes. Its errors do not repeat the path. An
// error that wraps fs.ErrNotExist means the file (or its symlink's target)
// is not there.
func ReadConfigFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, withoutPath(err)
	}
	if err := usable(fi); err != nil {
		return nil, err
	}
	// Opened only once it is known to be a regular file: opening a FIFO
	// blocks until a writer appears.
	f, err := os.Open(path)
	if err != nil {
		return nil, withoutPath(err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, withoutPath(err)
	}
	if err := usable(fi); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return nil, withoutPath(err)
	}
	if len(b) > MaxConfigSize {
		return nil, tooLarge()
	}
	return b, nil
}

func usable(fi fs.FileInfo) error {
	m := fi.Mode()
	if !m.IsRegular() {
		what := "a special file"
		switch {
		case m.IsDir():
			what = "a directory"
		case m&fs.ModeNamedPipe != 0:
			what = "a named pipe (FIFO)"
		case m&fs.ModeSocket != 0:
			what = "a socket"
		case m&fs.ModeDevice != 0:
			what = "a device"
		}
		return fmt.Errorf("%s, not a regular file: a config must be a regular file", what)
	}
	if fi.Size() > MaxConfigSize {
		return tooLarge()
	}
	return nil
}

func tooLarge() error {
	return fmt.Errorf("larger than %d bytes, the limit of a config file", MaxConfigSize)
}

// withoutPath drops the path from an *fs.PathError: problems name the file
// already.
func withoutPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("cannot %s the file: %w", pe.Op, pe.Err)
	}
	return err
}

// utf8BOM is skipped at the start of a file: some editors write it.
var utf8BOM = []byte("\xef\xbb\xbf")

// ParseFile decodes and validates one config file's content. It returns the
// entry (nil when the file is unusable) and every problem found. Problems of
// a disabled file are warnings: Sauna ignores disabled files entirely. A
// usable file may come with warnings, such as a deprecated schema.
func ParseFile(file string, content []byte, log *slog.Logger) (*Entry, []Problem) {
	e := &Entry{File: file, Hash: sha256.Sum256(content)}
	deprecation, err := parse(e, bytes.TrimPrefix(content, utf8BOM), log)
	probs := problemsOf(file, err)
	if deprecation != nil {
		probs = append(probs, Problem{File: file, Field: deprecation.Path, Message: deprecation.Message, Warning: true})
	}
	if !e.Enabled {
		for i := range probs {
			probs[i].Warning = true
		}
	}
	if err != nil {
		return nil, probs
	}
	return e, probs
}

// parse fills e from a config file's content. Its errors are
// *schemas.FieldError, several in an errors.Join, or plain errors about the
// whole file; deprecation is the warning about a deprecated schema.
func parse(e *Entry, content []byte, log *slog.Logger) (deprecation *schemas.FieldError, err error) {
	data, err := readDocument(e, content)
	if err != nil {
		return nil, err
	}
	configs, mod, err := resolve(e)
	if err != nil {
		return nil, err
	}
	n, err := configs.Normalise(e.File, e.Schema, data)
	if err != nil {
		return n.Deprecation, err
	}
	switch e.Kind {
	case KindObserver:
		e.Observer, err = kinesis.ParseConfig(n)
	case KindIngest:
		e.Ingest, err = ingest.ParseConfig(n)
	case KindResponder:
		e.Responder, err = newResponder(e, mod, n, log)
	}
	return n.Deprecation, err
}

// readDocument reads the self-describing wrapper {"schema", "data"}: it sets
// e.Schema, and e.Enabled and e.ID as the data holds them before any
// validation, and returns the data.
func readDocument(e *Entry, content []byte) (json.RawMessage, error) {
	// Until "enabled" is read, a problem is an error: a file that cannot be
	// read at all is never silently taken for a disabled one.
	e.Enabled = true
	var wrapper map[string]json.RawMessage
	if err := decodeStrict(content, &wrapper); err != nil {
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			return nil, fmt.Errorf("invalid JSON at %s: %w", position(content, se.Offset-1), err)
		}
		if errors.Is(err, errTrailingData) {
			return nil, err
		}
		return nil, fmt.Errorf("not a self-describing JSON object {\"schema\": ..., \"data\": {...}}: %w", err)
	}
	for k := range wrapper {
		if k != "schema" && k != "data" {
			return nil, e.errorf(k, "unknown field (a config has only \"schema\" and \"data\")")
		}
	}
	rawSchema, ok := wrapper["schema"]
	if !ok {
		return nil, e.errorf("schema", "missing required field")
	}
	data, ok := wrapper["data"]
	if !ok {
		return nil, e.errorf("data", "missing required field")
	}
	var uri string
	if err := json.Unmarshal(rawSchema, &uri); err != nil {
		return nil, e.errorf("schema", "must be an iglu URI string")
	}
	key, err := schemas.ParseKey(uri)
	if err != nil {
		return nil, e.errorf("schema", "%v", err)
	}
	e.Schema = key
	var head map[string]json.RawMessage
	if err := json.Unmarshal(data, &head); err != nil || head == nil {
		return nil, e.errorf("data", "must be a JSON object")
	}
	// Sauna's gate: only the JSON boolean true enables a config.
	e.Enabled = string(bytes.TrimSpace(head["enabled"])) == "true"
	if err := json.Unmarshal(head["id"], &e.ID); err != nil {
		e.ID = ""
	}
	return data, nil
}

// resolve sets e.Kind from e.Schema and returns the config schemas of that
// kind, and for a responder its module.
func resolve(e *Entry) (schemas.ConfigSchemas, responders.Module, error) {
	key := e.Schema
	if kinesis.Configs.Accepts(key) {
		e.Kind = KindObserver
		return kinesis.Configs, responders.Module{}, nil
	}
	if ingest.Configs.Accepts(key) {
		e.Kind = KindIngest
		return ingest.Configs, responders.Module{}, nil
	}
	if mod, ok := responders.ForConfig(key); ok {
		e.Kind = KindResponder
		e.Module = mod.Name
		if mod.Retired != "" {
			return schemas.ConfigSchemas{}, mod, e.errorf("schema", "%s: %s; remove this config", key, mod.Retired)
		}
		return mod.Configs(), mod, nil
	}
	if why, ok := unsupportedReason(key); ok {
		return schemas.ConfigSchemas{}, responders.Module{}, e.errorf("schema", "%s is recognised but not supported: %s", key, why)
	}
	return schemas.ConfigSchemas{}, responders.Module{}, e.errorf("schema", "unknown config schema %q (forgotten import?)", key.String())
}

// newResponder builds the responder of a normalised responder config.
func newResponder(e *Entry, mod responders.Module, n schemas.Normalised, log *slog.Logger) (responders.Responder, error) {
	var params json.RawMessage
	if _, err := n.Unmarshal(mod.Configs(), &params); err != nil {
		return nil, err
	}
	// A responder owns no table: its id only has to name it.
	if e.ID == "" {
		return nil, e.errorf("data.id", "must not be empty")
	}
	r, err := mod.New(responders.Config{
		ID:         e.ID,
		File:       e.File,
		Schema:     e.Schema,
		Parameters: params,
		Logger:     log.With("responder", e.ID, "module", mod.Name),
	})
	if err != nil {
		// A refused parameter is reported at its own path, with the message
		// the module gave for it; anything else concerns the config as a
		// whole.
		if pe, ok := errors.AsType[*responders.ParamError](err); ok {
			return nil, e.errorf("data."+pe.Path(), "%v", pe.Err)
		}
		return nil, e.errorf("data", "%v", err)
	}
	return r, nil
}

// errorf reports a problem at path in e's file.
func (e *Entry) errorf(path, format string, args ...any) error {
	return &schemas.FieldError{File: e.File, Path: path, Message: fmt.Sprintf(format, args...)}
}

func decodeStrict(content []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(content))
	if err := dec.Decode(v); err != nil {
		return err
	}
	end := dec.InputOffset()
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w, at %s", errTrailingData, position(content, skipSpace(content, end)))
	}
	return nil
}

var errTrailingData = errors.New("trailing data after the JSON object")

// position names the byte at offset as an editor shows it: "line 3,
// column 17", both counted from 1, the column in characters. A byte offset
// alone, as encoding/json reports it, points nowhere in a file of many lines.
func position(content []byte, offset int64) string {
	offset = max(0, min(offset, int64(len(content))))
	before := content[:offset]
	line := bytes.Count(before, []byte("\n")) + 1
	col := utf8.RuneCount(before[bytes.LastIndexByte(before, '\n')+1:]) + 1
	return fmt.Sprintf("line %d, column %d", line, col)
}

// skipSpace returns the offset of the first byte at or after offset that is
// not JSON white space.
func skipSpace(content []byte, offset int64) int64 {
	for offset < int64(len(content)) && strings.IndexByte(" \t\r\n", content[offset]) >= 0 {
		offset++
	}
	return offset
}

// Snapshot is the validated content of a config directory.
type Snapshot struct {
	// Entries are the configs that would run, in the order their files
	// were given (a directory's are sorted by name).
	Entries []*Entry
	// Disabled are the files whose config is not enabled.
	Disabled []string
	// Problems lists every problem, file by file.
	Problems []Problem
}

// ListConfigFiles returns the paths of the entries at the top of dir that
// IsConfigFile accepts, sorted. Whether each is a readable, regular file is
// for ReadConfigFile to say: an unusable one is reported, never skipped.
func ListConfigFiles(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("config directory must be a readable directory: %w", err)
	}
	var files []string
	for _, de := range des {
		if IsConfigFile(de.Name()) {
			files = append(files, filepath.Join(dir, de.Name()))
		}
	}
	slices.Sort(files)
	return files, nil
}

// NoConfigFiles is the warning about a config directory without config files.
const NoConfigFiles = "no config files in the config directory (" + ConfigFileRule + ")"

// Assemble parses the given files and decides which of them would run as
// the first rescan of 'sauna run' decides it, through the same plan a
// reload makes (with nothing running yet), so that the two never disagree:
// ids are unique across enabled configs, and each responder module has at
// most one enabled config. Between files in conflict the first by name
// keeps its place, whatever the order files are given in; the later one is
// refused with a message naming both. A file given twice counts once. The
// entries that would not run are closed. What a file's responder logs as it
// is built carries the attribute "file".
func Assemble(files []string, contents map[string][]byte, log *slog.Logger, snap *Snapshot) *Snapshot {
	if snap == nil {
		snap = &Snapshot{}
	}
	var order []string
	scanned := make([]scannedFile, 0, len(files))
	for _, f := range files {
		content, ok := contents[f]
		if !ok || slices.Contains(order, f) {
			continue
		}
		order = append(order, f)
		sf := scannedFile{File: f, Hash: sha256.Sum256(content)}
		sf.Entry, sf.Problems = ParseFile(f, content, log.With("file", f))
		if sf.Entry == nil {
			sf.ID = peekID(content)
		}
		scanned = append(scanned, sf)
	}
	p := plan(nil, scanned)
	for _, e := range p.Discard {
		closeEntry(e)
	}
	probs := map[string][]Problem{}
	for _, n := range p.Warned {
		probs[n.File] = append(probs[n.File], n.Problems...)
	}
	for _, n := range p.Disabled {
		probs[n.File] = append(probs[n.File], n.Problems...)
		snap.Disabled = append(snap.Disabled, n.File)
	}
	for _, rf := range p.Refused {
		probs[rf.File] = append(probs[rf.File], rf.Problems...)
	}
	runs := p.next()
	for _, f := range order {
		snap.Problems = append(snap.Problems, probs[f]...)
		if e := runs[f]; e != nil {
			snap.Entries = append(snap.Entries, e)
		}
	}
	return snap
}

// owners enforces the rules that span files: ids are unique across enabled
// configs, and each responder module has at most one enabled config. It
// records the file that owns each id and module; what was taken first keeps
// its place.
type owners struct {
	byID     map[string]string // id -> file
	byModule map[string]string // module -> file
}

// conflict returns the problem that refuses e, naming the file that holds
// what e asks for.
func (o *owners) conflict(e *Entry) (Problem, bool) {
	if other, ok := o.byID[e.ID]; ok && other != e.File {
		return Problem{File: e.File, Field: "data.id", Message: fmt.Sprintf("id %q is already used by %s; ids must be unique across enabled configs", e.ID, other)}, true
	}
	if e.Kind == KindResponder {
		if other, ok := o.byModule[e.Module]; ok && other != e.File {
			return Problem{File: e.File, Field: "schema", Message: fmt.Sprintf("a %s responder is already enabled by %s; enable one config per responder", e.Module, other)}, true
		}
	}
	return Problem{}, false
}

// drop gives up what e holds.
func (o *owners) drop(e *Entry) {
	if o.byID[e.ID] == e.File {
		delete(o.byID, e.ID)
	}
	if e.Kind == KindResponder && o.byModule[e.Module] == e.File {
		delete(o.byModule, e.Module)
	}
}

func (o *owners) take(e *Entry) {
	if o.byID == nil {
		o.byID, o.byModule = map[string]string{}, map[string]string{}
	}
	o.byID[e.ID] = e.File
	if e.Kind == KindResponder {
		o.byModule[e.Module] = e.File
	}
}

func closeEntry(e *Entry) {
	if e.Responder != nil {
		_ = responders.CloseResponder(e.Responder)
	}
}
