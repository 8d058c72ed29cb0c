package observer

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
)

// action is what a reload does with one config file's entity.
type action int

const (
	keep    action = iota // it runs on untouched
	start                 // a new file: it starts
	stop                  // the file went, or enables nothing now: it stops
	replace               // a new version replaces the running one
)

func (a action) String() string {
	return [...]string{"keep", "start", "stop", "replace"}[a]
}

// change is the plan for one config file that runs before or after the
// reload. Old is what runs now (nil for start), New what runs after (nil
// for stop; Old itself for keep).
type change struct {
	File     string
	Action   action
	Old, New *Entry
}

// scannedFile is one config file as a scan of the directory found it.
type scannedFile struct {
	File string
	Hash [sha256.Size]byte
	// ReadErr is why the file could not be read; the fields below are then
	// unset.
	ReadErr string
	// Entry is the parsed config: nil when the file is unusable, or when it
	// was not parsed because its bytes are those of the running entry.
	Entry    *Entry
	Problems []Problem
	// ID is data.id as far as it can be read, for the refusal of an
	// unusable file.
	ID string
}

// refusal is a file version that does not run. Running, its last good
// version, keeps running in its place.
type refusal struct {
	File     string
	ID       string // the id the refused version asks for
	Running  *Entry
	Problems []Problem // at least one
	// Key names the version and the reason: a refusal is reported once per
	// key.
	Key string
}

// notice is a file whose problems are only warnings: one that enables
// nothing (Running, if any, stops), or a usable one with a deprecated
// schema.
type notice struct {
	File     string
	Hash     [sha256.Size]byte
	Running  *Entry
	Problems []Problem
}

// reloadPlan is what a reload does, decided by plan.
type reloadPlan struct {
	Changes  []change  // by file
	Refused  []refusal // by file
	Disabled []notice  // files that enable nothing
	Warned   []notice  // usable files with warnings
	// Discard are the parsed entries that will not run; their responders
	// are to be closed.
	Discard []*Entry
}

// next returns what runs once p is applied.
func (p *reloadPlan) next() map[string]*Entry {
	m := make(map[string]*Entry, len(p.Changes))
	for _, c := range p.Changes {
		if c.New != nil {
			m[c.File] = c.New
		}
	}
	return m
}

// changes tells whether p changes the running set at all.
func (p *reloadPlan) changes() bool {
	return slices.ContainsFunc(p.Changes, func(c change) bool { return c.Action != keep })
}

// plan decides, from what runs (by file) and what a scan of the directory
// found, what starts, stops, is replaced or keeps running, and which file
// versions are refused and why. It changes nothing: the Supervisor carries
// out the changes and the reloader reports the rest.
//
//   - a file with new bytes replaces its entity; the same bytes keep it;
//   - a file that is gone stops its entity; one that enables nothing too;
//   - a version that is unreadable or invalid is refused, and the last good
//     version keeps running;
//   - a config that claims an id (or responder module) a running config of
//     another file holds is refused, naming both files (see settleClaims).
func plan(running map[string]*Entry, scanned []scannedFile) reloadPlan {
	var p reloadPlan
	var t claimTiers
	// In name order, so that between new files the first by name wins.
	byName := func(a, b scannedFile) int { return cmp.Compare(a.File, b.File) }
	for _, sf := range slices.SortedFunc(slices.Values(scanned), byName) {
		p.classify(running[sf.File], sf, &t)
	}
	want := p.settleClaims(running, t)
	for _, f := range slices.Sorted(maps.Keys(union(running, want))) {
		old, e := running[f], want[f]
		c := change{File: f, Old: old, New: e, Action: replace}
		switch {
		case old == nil:
			c.Action = start
		case e == nil:
			c.Action = stop
		case old == e:
			c.Action = keep
		}
		p.Changes = append(p.Changes, c)
	}
	slices.SortStableFunc(p.Refused, func(a, b refusal) int { return cmp.Compare(a.File, b.File) })
	return p
}

// claimTiers ranks entries by how firmly they hold their claims: running
// entries that stay, then new versions of running files, then new files.
type claimTiers struct {
	keep, changed, fresh []*Entry
}

// classify sorts one scanned file (cur is what it runs) into a tier, a
// refusal or a notice.
func (p *reloadPlan) classify(cur *Entry, sf scannedFile, t *claimTiers) {
	e := sf.Entry
	switch {
	case sf.ReadErr != "":
		// Unreadable is not removed: the last good version stays.
		p.refuse(sf.File, "", cur, "read:"+sf.ReadErr, Problem{File: sf.File, Message: sf.ReadErr})
		t.keep = appendNonNil(t.keep, cur)
	case cur != nil && cur.Hash == sf.Hash:
		t.keep = append(t.keep, cur)
		if e != nil && e != cur {
			p.Discard = append(p.Discard, e)
		}
	case e == nil && !allWarnings(sf.Problems):
		p.refuse(sf.File, sf.ID, cur, hashKey(sf.Hash), sf.Problems...)
		t.keep = appendNonNil(t.keep, cur)
	case e == nil || !e.Enabled:
		// enabled other than true is how an operator switches a config
		// off: it stops, it is not a bad edit.
		if e != nil {
			p.Discard = append(p.Discard, e)
		}
		p.Disabled = append(p.Disabled, notice{File: sf.File, Hash: sf.Hash, Running: cur, Problems: sf.Problems})
	default:
		if len(sf.Problems) > 0 {
			p.Warned = append(p.Warned, notice{File: sf.File, Hash: sf.Hash, Running: cur, Problems: sf.Problems})
		}
		if cur != nil {
			t.changed = append(t.changed, e)
		} else {
			t.fresh = append(t.fresh, e)
		}
	}
}

// settleClaims returns what runs after the reload, by file. Every running
// config holds its claims until its own new version is accepted. A new
// version that asks for what another running config holds waits for that
// one to give it up in this same reload (an id moved down a chain of
// files); what is still blocked when nothing moves is refused, and its last
// good version stays. New files come last, the first by name winning
// between them: a new file never evicts a running one.
func (p *reloadPlan) settleClaims(running map[string]*Entry, t claimTiers) map[string]*Entry {
	var c owners
	want := map[string]*Entry{}
	for _, e := range t.keep {
		c.take(e)
		want[e.File] = e
	}
	for _, e := range t.changed {
		c.take(running[e.File])
	}
	changed := t.changed
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
			c.take(e)
			want[e.File] = e
			moved = true
		}
		changed = blocked
	}
	for _, e := range changed {
		cur := running[e.File]
		p.refuseClaim(&c, e, cur)
		want[e.File] = cur
	}
	for _, e := range t.fresh {
		if !p.refuseClaim(&c, e, nil) {
			c.take(e)
			want[e.File] = e
		}
	}
	return want
}

// refuseClaim refuses e if what it claims is taken, and tells whether it
// did.
func (p *reloadPlan) refuseClaim(c *owners, e, cur *Entry) bool {
	pr, taken := c.conflict(e)
	if taken {
		p.Discard = append(p.Discard, e)
		p.refuse(e.File, e.ID, cur, hashKey(e.Hash)+pr.Message, pr)
	}
	return taken
}

func (p *reloadPlan) refuse(f, id string, cur *Entry, key string, probs ...Problem) {
	p.Refused = append(p.Refused, refusal{File: f, ID: id, Running: cur, Problems: probs, Key: key})
}

func hashKey(h [sha256.Size]byte) string { return hex.EncodeToString(h[:]) }

func union(a, b map[string]*Entry) map[string]*Entry {
	m := maps.Clone(a)
	if m == nil {
		m = map[string]*Entry{}
	}
	maps.Copy(m, b)
	return m
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
