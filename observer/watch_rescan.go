package observer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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

// runningSet is what a rescan changes: the Supervisor, or a fake in tests.
type runningSet interface {
	Running() map[string]*Entry
	apply(ctx context.Context, want []*Entry) int
}

// reloader diffs the config directory against the running set. It keeps
// what the last rescan saw, so that a rescan that finds the same bytes does
// nothing, and what it refused, so that a bad version is reported once and
// not parsed again until its bytes change.
type reloader struct {
	dir    string
	log    *slog.Logger
	set    runningSet
	status *reloadState

	scanned  bool
	seen     map[string]seenFile
	bad      map[string][sha256.Size]byte // file -> content refused on its own
	reported map[string]string            // file -> last refusal reported
	refusing map[string]string            // file -> why its current content is refused
	warned   map[string][sha256.Size]byte // file -> content whose warnings were logged
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
	if r.bad == nil {
		r.bad = map[string][sha256.Size]byte{}
		r.reported = map[string]string{}
		r.refusing = map[string]string{}
		r.warned = map[string][sha256.Size]byte{}
	}
	if r.read == nil {
		r.read = ReadConfigFile
	}
}

// rescan reads the directory and applies what changed:
//   - a new file starts its observer or responder; a removed one stops it;
//   - a file with new bytes replaces its entity; the same bytes do nothing;
//   - a new version that is invalid or unreadable is refused and the last
//     good version keeps running;
//   - a config that claims an id (or responder module) a running config of
//     another file holds is refused, naming both files. Running configs
//     keep their claims whatever their file names, so a new file never
//     evicts a running one; between new files, the first by name wins.
func (r *reloader) rescan(ctx context.Context) {
	r.init()
	files, err := ListConfigFiles(r.dir)
	if err != nil {
		// The running set stays: a volume being remounted must not stop
		// every observer.
		if msg := err.Error(); msg != r.dirErr {
			r.dirErr = msg
			r.log.Error("cannot read the config directory; keeping the running configs", "dir", r.dir, "err", err)
		}
		r.finish(0, err.Error())
		return
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
	if r.scanned && maps.Equal(now, r.seen) {
		r.finish(0, "")
		return
	}
	r.scanned, r.seen = true, now

	running := r.set.Running()
	clear(r.refusing)
	// Tiers of claims: running entries that stay, then new versions of
	// running files, then files that run nothing.
	var keep, changed, fresh []*Entry
	for _, f := range slices.Sorted(maps.Keys(now)) {
		cur, sf := running[f], now[f]
		if sf.readErr != "" {
			r.refuse(f, cur, "read:"+sf.readErr, "", []Problem{{File: f, Message: sf.readErr}})
			keep = appendNonNil(keep, cur)
			continue
		}
		if cur != nil && cur.Hash == sf.hash {
			r.accepted(f)
			keep = append(keep, cur)
			continue
		}
		if h, ok := r.bad[f]; ok && h == sf.hash {
			r.refusing[f] = r.reported[f]
			keep = appendNonNil(keep, cur)
			continue
		}
		e, probs := ParseFile(f, contents[f], r.log)
		switch {
		case e == nil && !allWarnings(probs):
			r.bad[f] = sf.hash
			r.refuse(f, cur, hex.EncodeToString(sf.hash[:]), peekID(contents[f]), probs)
			keep = appendNonNil(keep, cur)
		case e == nil || !e.Enabled:
			// enabled other than true is how an operator switches a
			// config off: it stops, it is not a bad edit.
			if e != nil {
				closeEntry(e)
			}
			r.disabled(f, sf.hash, cur, probs)
		case cur != nil:
			r.warn(f, sf.hash, probs)
			changed = append(changed, e)
		default:
			r.warn(f, sf.hash, probs)
			fresh = append(fresh, e)
		}
	}

	// Every running config holds its claims until its own new version is
	// accepted. A new version that asks for what another running config
	// holds waits for that one to give it up in this same rescan (an id
	// moved down a chain of files); what is still blocked when nothing moves
	// is refused, and its last good version stays.
	var c claims
	var want []*Entry
	for _, e := range keep {
		c.take(e)
		want = append(want, e)
	}
	for _, e := range changed {
		c.take(running[e.File])
	}
	for moved := true; moved; {
		moved = false
		var blocked []*Entry
		for _, e := range changed {
			old := running[e.File]
			c.drop(old)
			if _, taken := c.conflict(e); taken {
				c.take(old)
				blocked = append(blocked, e)
				continue
			}
			r.accepted(e.File)
			c.take(e)
			want = append(want, e)
			moved = true
		}
		changed = blocked
	}
	for _, e := range changed {
		p, _ := c.conflict(e)
		closeEntry(e)
		cur := running[e.File]
		r.refuse(e.File, cur, hex.EncodeToString(e.Hash[:])+p.Message, e.ID, []Problem{p})
		want = append(want, cur)
	}
	for _, e := range fresh {
		if p, taken := c.conflict(e); taken {
			closeEntry(e)
			r.refuse(e.File, nil, hex.EncodeToString(e.Hash[:])+p.Message, e.ID, []Problem{p})
			continue
		}
		r.accepted(e.File)
		c.take(e)
		want = append(want, e)
	}
	for f := range r.reported {
		if _, ok := now[f]; !ok {
			r.accepted(f)
		}
	}
	for f := range r.bad {
		if _, ok := now[f]; !ok {
			delete(r.bad, f)
		}
	}
	for f := range r.warned {
		if _, ok := now[f]; !ok {
			delete(r.warned, f)
		}
	}

	n := 0
	if !sameSet(running, want) {
		n = r.set.apply(ctx, want)
		if hasIntake(slices.Collect(maps.Values(running))) && !hasIntake(want) {
			r.log.Warn(noIntake)
		}
	}
	r.finish(n, "")
}

func sameSet(running map[string]*Entry, want []*Entry) bool {
	if len(running) != len(want) {
		return false
	}
	for _, e := range want {
		if running[e.File] != e {
			return false
		}
	}
	return true
}

func appendNonNil(es []*Entry, e *Entry) []*Entry {
	if e == nil {
		return es
	}
	return append(es, e)
}

func allWarnings(probs []Problem) bool {
	for _, p := range probs {
		if !p.Warning {
			return false
		}
	}
	return true
}

// accepted forgets what was refused of f: its next refusal is news.
func (r *reloader) accepted(f string) {
	delete(r.reported, f)
	delete(r.bad, f)
}

// refuse logs and counts a refused version of f, once per key (the content
// and, for conflicts, the reason). cur is the running last good version.
func (r *reloader) refuse(f string, cur *Entry, key, id string, probs []Problem) {
	r.refusing[f] = key
	if r.reported[f] == key {
		return
	}
	r.reported[f] = key
	msgs := make([]string, len(probs))
	for i, p := range probs {
		msgs[i] = p.Message
		if p.Field != "" {
			msgs[i] = p.Field + ": " + p.Message
		}
	}
	problem := strings.Join(msgs, "; ")
	attrs := []any{"file", f, "id", id, "field", probs[0].Field, "problem", problem}
	msg := "config refused"
	if cur != nil {
		msg = "config refused; the last good version keeps running"
		attrs = append(attrs, "running_id", cur.ID)
	}
	r.log.Error(msg, attrs...)
	r.status.update(func(st *ReloadStatus) {
		st.Refused++
		st.LastError = probs[0].String()
	})
}

// warn logs the warnings of a usable file (a deprecated schema), once per
// content: a rescan that parses the same bytes again stays quiet.
func (r *reloader) warn(f string, hash [sha256.Size]byte, probs []Problem) {
	if len(probs) == 0 || r.warned[f] == hash {
		return
	}
	r.warned[f] = hash
	for _, p := range probs {
		r.log.Warn("config warning", "file", p.File, "field", p.Field, "problem", p.Message)
	}
}

// disabled notes a file that enables nothing. What it ran, if anything,
// stops; apply logs that.
func (r *reloader) disabled(f string, hash [sha256.Size]byte, cur *Entry, probs []Problem) {
	key := "disabled:" + hex.EncodeToString(hash[:])
	if r.reported[f] == key {
		return
	}
	r.reported[f] = key
	for _, p := range probs {
		r.log.Warn("config problem", "file", p.File, "field", p.Field, "problem", p.Message)
	}
	if cur == nil {
		r.log.Info("config disabled; skipped", "file", f)
	}
}

func (r *reloader) finish(applied int, dirErr string) {
	refusing := slices.Sorted(maps.Keys(r.refusing))
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
