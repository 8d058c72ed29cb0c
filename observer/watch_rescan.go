package observer

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// ReloadStatus describes how the running set follows the config directory.
type ReloadStatus struct {
	// LastRescan is when the last rescan of the directory ended.
	LastRescan time.Time
	// LastSuccess is when a rescan last found the directory readable and
	// every config file in it usable.
	LastSuccess time.Time
	// Rescans counts rescans, including those that found nothing new.
	Rescans uint64
	// Applied counts changes made to the running set: files added, changed
	// or removed.
	Applied uint64
	// Refused counts file versions refused (invalid, unreadable, or in
	// conflict with a running config). A version is counted once, however
	// often it is seen again.
	Refused uint64
	// Refusing lists the files whose current content is refused; the last
	// good version of each, if there was one, keeps running.
	Refusing []string
	// LastError is the latest refusal or directory error.
	LastError string
}

// ReloadStatus returns the state of the config directory reloads.
func (s *Supervisor) ReloadStatus() ReloadStatus { return s.reload.get() }

type reloadState struct {
	mu sync.Mutex
	st ReloadStatus
}

func (r *reloadState) get() ReloadStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.st
	st.Refusing = slices.Clone(st.Refusing)
	return st
}

func (r *reloadState) update(f func(*ReloadStatus)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(&r.st)
}

// runningSet is what a reload changes: the Supervisor, or a fake in tests.
type runningSet interface {
	Running() map[string]*Entry
	// apply carries out a plan's changes and returns how many files were
	// added, changed or removed.
	apply(ctx context.Context, changes []change) int
}

// reloader keeps the running set in step with the config directory: each
// rescan scans the directory, lets plan decide, reports what plan refused
// and has the running set carry out the changes. It remembers what the last
// rescan saw, so that a rescan that finds the same bytes does nothing; the
// invalid versions it parsed, so that they are not parsed again until their
// bytes change; and what it reported, so that each refusal and warning is
// logged once.
type reloader struct {
	dir    string
	log    *slog.Logger
	set    runningSet
	status *reloadState

	scanned  bool
	seen     map[string]seenFile
	bad      map[string]scannedFile       // file -> its current version, parsed and unusable
	reported map[string]string            // file -> key of the refused or disabled version last reported
	warned   map[string][sha256.Size]byte // file -> content whose warnings were logged
	refusing []string                     // files whose current content is refused
	dirErr   string
	empty    bool

	// read is ReadConfigFile, or a fault in tests.
	read func(string) ([]byte, error)
}

// seenFile is a file's content as one rescan saw it.
type seenFile struct {
	hash    [sha256.Size]byte
	readErr string
}

func newReloader(s *Supervisor, dir string) *reloader {
	return &reloader{dir: dir, log: s.log, set: s, status: &s.reload}
}

func (r *reloader) init() {
	if r.reported == nil {
		r.reported = map[string]string{}
		r.warned = map[string][sha256.Size]byte{}
	}
	if r.read == nil {
		r.read = ReadConfigFile
	}
}

// rescan brings the running set in step with the directory: scan, plan,
// report, apply. Only files whose bytes changed are parsed again.
func (r *reloader) rescan(ctx context.Context) {
	r.init()
	now, contents, ok := r.scan()
	if !ok {
		return
	}
	if r.scanned && maps.Equal(now, r.seen) {
		r.finish(0, "")
		return
	}
	r.scanned, r.seen = true, now
	running := r.set.Running()
	p := plan(running, r.parse(running, now, contents))
	r.report(&p)
	r.finish(r.applyPlan(ctx, running, &p), "")
}

// scan lists and reads the directory's config files. When the directory
// cannot be read, the running set stays (a volume being remounted must not
// stop every observer), and scan reports false.
func (r *reloader) scan() (map[string]seenFile, map[string][]byte, bool) {
	files, err := ListConfigFiles(r.dir)
	if err != nil {
		if msg := err.Error(); msg != r.dirErr {
			r.dirErr = msg
			r.log.Error("cannot read the config directory; keeping the running configs", "dir", r.dir, "err", err)
		}
		r.finish(0, err.Error())
		return nil, nil, false
	}
	r.dirErr = ""
	if empty := len(files) == 0; empty != r.empty {
		r.empty = empty
		if empty {
			r.log.Warn(NoConfigFiles, "dir", r.dir)
		}
	}
	now := make(map[string]seenFile, len(files))
	contents := make(map[string][]byte, len(files))
	for _, f := range files {
		b, err := r.read(f)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// Gone since the listing, or a dangling symlink: the same as
			// not listed. Any other error keeps the last good version.
		case err != nil:
			now[f] = seenFile{readErr: err.Error()}
		default:
			now[f] = seenFile{hash: sha256.Sum256(b)}
			contents[f] = b
		}
	}
	return now, contents, true
}

// parse turns what scan read into what plan decides on. A file whose bytes
// are those of its running entry is not parsed (that would build a second
// responder); an unusable version already parsed is not parsed again.
func (r *reloader) parse(running map[string]*Entry, now map[string]seenFile, contents map[string][]byte) []scannedFile {
	out := make([]scannedFile, 0, len(now))
	bad := map[string]scannedFile{}
	for _, f := range slices.Sorted(maps.Keys(now)) {
		sf := scannedFile{File: f, Hash: now[f].hash, ReadErr: now[f].readErr}
		prev, known := r.bad[f]
		switch cur := running[f]; {
		case sf.ReadErr != "", cur != nil && cur.Hash == sf.Hash:
			// Nothing to parse, or nothing new.
		case known && prev.Hash == sf.Hash:
			sf = prev
		default:
			sf.Entry, sf.Problems = ParseFile(f, contents[f], r.log)
			if sf.Entry == nil {
				sf.ID = peekID(contents[f])
			}
		}
		if sf.ReadErr == "" && sf.Entry == nil && !allWarnings(sf.Problems) {
			bad[f] = sf
		}
		out = append(out, sf)
	}
	r.bad = bad
	return out
}

// report logs and counts what p refuses, disables and warns about, each
// once per version, and forgets what no longer is.
func (r *reloader) report(p *reloadPlan) {
	still := map[string]bool{}
	r.refusing = nil
	for _, rf := range p.Refused {
		r.refuse(rf)
		still[rf.File] = true
		r.refusing = append(r.refusing, rf.File)
	}
	for _, n := range p.Disabled {
		r.disabled(n)
		still[n.File] = true
	}
	for _, n := range p.Warned {
		r.warn(n)
	}
	// The rest was accepted or is gone: its next refusal is news.
	for f := range r.reported {
		if !still[f] {
			delete(r.reported, f)
		}
	}
	for f := range r.warned {
		if _, ok := r.seen[f]; !ok {
			delete(r.warned, f)
		}
	}
}

// applyPlan closes what p discards and has the running set carry out p's
// changes; it returns how many files were added, changed or removed.
func (r *reloader) applyPlan(ctx context.Context, running map[string]*Entry, p *reloadPlan) int {
	for _, e := range p.Discard {
		closeEntry(e)
	}
	if !p.changes() {
		return 0
	}
	n := r.set.apply(ctx, p.Changes)
	if hasIntake(running) && !hasIntake(p.next()) {
		r.log.Warn(noIntake)
	}
	return n
}

// refuse logs and counts a refused version, once per key.
func (r *reloader) refuse(rf refusal) {
	if r.reported[rf.File] == rf.Key {
		return
	}
	r.reported[rf.File] = rf.Key
	msgs := make([]string, len(rf.Problems))
	for i, p := range rf.Problems {
		msgs[i] = p.Message
		if p.Field != "" {
			msgs[i] = p.Field + ": " + p.Message
		}
	}
	attrs := []any{"file", rf.File, "id", rf.ID, "field", rf.Problems[0].Field, "problem", strings.Join(msgs, "; ")}
	msg := "config refused"
	if rf.Running != nil {
		msg = "config refused; the last good version keeps running"
		attrs = append(attrs, "running_id", rf.Running.ID)
	}
	r.log.Error(msg, attrs...)
	r.status.update(func(st *ReloadStatus) {
		st.Refused++
		st.LastError = rf.Problems[0].String()
	})
}

// warn logs the warnings of a usable file (a deprecated schema), once per
// content: a rescan that parses the same bytes again stays quiet.
func (r *reloader) warn(n notice) {
	if r.warned[n.File] == n.Hash {
		return
	}
	r.warned[n.File] = n.Hash
	for _, p := range n.Problems {
		r.log.Warn("config warning", "file", p.File, "field", p.Field, "problem", p.Message)
	}
}

// disabled notes a file that enables nothing, once per content. What it
// ran, if anything, stops; the Supervisor logs that.
func (r *reloader) disabled(n notice) {
	key := "disabled:" + hashKey(n.Hash)
	if r.reported[n.File] == key {
		return
	}
	r.reported[n.File] = key
	for _, p := range n.Problems {
		r.log.Warn("config problem", "file", p.File, "field", p.Field, "problem", p.Message)
	}
	if n.Running == nil {
		r.log.Info("config disabled; skipped", "file", n.File)
	}
}

func (r *reloader) finish(applied int, dirErr string) {
	refusing := slices.Clone(r.refusing)
	r.status.update(func(st *ReloadStatus) {
		st.LastRescan = time.Now()
		st.Rescans++
		st.Applied += uint64(applied)
		st.Refusing = refusing
		if dirErr != "" {
			st.LastError = dirErr
		} else if len(refusing) == 0 {
			st.LastSuccess = st.LastRescan
		}
	})
}

// peekID reads data.id from content that may not be a valid config, for
// the log line of its refusal.
func peekID(content []byte) string {
	var doc struct {
		Data struct {
			ID any `json:"id"`
		} `json:"data"`
	}
	if json.Unmarshal(content, &doc) != nil {
		return ""
	}
	id, _ := doc.Data.ID.(string)
	return id
}
