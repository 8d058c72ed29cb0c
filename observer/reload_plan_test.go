package observer

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// planEntry is a parsed, enabled config; version stands for its bytes.
func planEntry(file, id string, kind Kind, version byte) *Entry {
	e := &Entry{File: file, ID: id, Kind: kind, Enabled: true, Hash: [sha256.Size]byte{version}}
	if kind == KindResponder {
		e.Module = "mod"
	}
	return e
}

func obs(file, id string, version byte) *Entry { return planEntry(file, id, KindObserver, version) }

func disabledEntry(e *Entry) *Entry { e.Enabled = false; return e }

// parsed is a scanned file that was parsed into e.
func parsed(e *Entry, probs ...Problem) scannedFile {
	return scannedFile{File: e.File, Hash: e.Hash, Entry: e, Problems: probs}
}

// unchanged is a scanned file with the bytes of e, which runs: not parsed.
func unchanged(e *Entry) scannedFile { return scannedFile{File: e.File, Hash: e.Hash} }

func unreadable(file, why string) scannedFile { return scannedFile{File: file, ReadErr: why} }

// unusable is a scanned file that parsed into nothing.
func unusable(file, id string, version byte, probs ...Problem) scannedFile {
	return scannedFile{File: file, ID: id, Hash: [sha256.Size]byte{version}, Problems: probs}
}

func running(es ...*Entry) map[string]*Entry {
	m := map[string]*Entry{}
	for _, e := range es {
		m[e.File] = e
	}
	return m
}

// planSummary is a reloadPlan in words, for comparisons.
type planSummary struct {
	Changes, Refused, Disabled, Warned, Discard []string
}

func summarize(p reloadPlan) planSummary {
	var s planSummary
	for _, c := range p.Changes {
		switch c.Action {
		case start:
			s.Changes = append(s.Changes, fmt.Sprintf("start %s %s", c.File, c.New.ID))
		case stop:
			s.Changes = append(s.Changes, fmt.Sprintf("stop %s %s", c.File, c.Old.ID))
		default:
			s.Changes = append(s.Changes, fmt.Sprintf("%s %s %s->%s", c.Action, c.File, c.Old.ID, c.New.ID))
		}
	}
	for _, r := range p.Refused {
		kind := "claim"
		if strings.HasPrefix(r.Key, "read:") {
			kind = "read"
		} else if len(r.Key) == 2*sha256.Size {
			kind = "bytes"
		}
		runs := "-"
		if r.Running != nil {
			runs = r.Running.ID
		}
		s.Refused = append(s.Refused, fmt.Sprintf("%s id=%s runs=%s %s: %s", r.File, r.ID, runs, kind, r.Problems[0]))
	}
	for _, n := range p.Disabled {
		s.Disabled = append(s.Disabled, n.File)
	}
	for _, n := range p.Warned {
		s.Warned = append(s.Warned, n.File)
	}
	for _, e := range p.Discard {
		s.Discard = append(s.Discard, e.File+" "+e.ID)
	}
	return s
}

func TestPlan(t *testing.T) {
	bad := Problem{File: "a.json", Field: "data.parameters.kinesis.maxRecords", Message: "must be at least 1"}
	deprecated := Problem{File: "a.json", Field: "schema", Message: "deprecated", Warning: true}
	a1, b1, c1 := obs("a.json", "obs.a", 1), obs("b.json", "obs.b", 1), obs("c.json", "obs.c", 1)
	r1 := planEntry("r1.json", "resp.one", KindResponder, 1)
	tests := []struct {
		name    string
		running map[string]*Entry
		scanned []scannedFile
		want    planSummary
	}{
		{name: "nothing runs, nothing found"},
		{
			name:    "a new file starts",
			scanned: []scannedFile{parsed(obs("a.json", "obs.a", 1))},
			want:    planSummary{Changes: []string{"start a.json obs.a"}},
		},
		{
			name:    "the same bytes keep running",
			running: running(a1),
			scanned: []scannedFile{unchanged(a1)},
			want:    planSummary{Changes: []string{"keep a.json obs.a->obs.a"}},
		},
		{
			name:    "the same bytes parsed again keep the running instance; the new one is discarded",
			running: running(a1),
			scanned: []scannedFile{parsed(obs("a.json", "obs.a", 1))},
			want:    planSummary{Changes: []string{"keep a.json obs.a->obs.a"}, Discard: []string{"a.json obs.a"}},
		},
		{
			name:    "new bytes replace",
			running: running(a1),
			scanned: []scannedFile{parsed(obs("a.json", "obs.a2", 2))},
			want:    planSummary{Changes: []string{"replace a.json obs.a->obs.a2"}},
		},
		{
			name:    "a file changes kind",
			running: running(a1),
			scanned: []scannedFile{parsed(planEntry("a.json", "in.a", KindIngest, 2))},
			want:    planSummary{Changes: []string{"replace a.json obs.a->in.a"}},
		},
		{
			name:    "a file gone stops",
			running: running(a1, b1),
			scanned: []scannedFile{unchanged(b1)},
			want:    planSummary{Changes: []string{"stop a.json obs.a", "keep b.json obs.b->obs.b"}},
		},
		{
			name:    "an unreadable file keeps its last good version",
			running: running(a1),
			scanned: []scannedFile{unreadable("a.json", "cannot open the file: input/output error")},
			want: planSummary{
				Changes: []string{"keep a.json obs.a->obs.a"},
				Refused: []string{"a.json id= runs=obs.a read: a.json: cannot open the file: input/output error"},
			},
		},
		{
			name:    "a new unreadable file runs nothing",
			scanned: []scannedFile{unreadable("a.json", "cannot stat the file: too many levels of symbolic links")},
			want:    planSummary{Refused: []string{"a.json id= runs=- read: a.json: cannot stat the file: too many levels of symbolic links"}},
		},
		{
			name:    "a directory, FIFO or device named like a config is refused",
			scanned: []scannedFile{unreadable("a.json", "a named pipe (FIFO), not a regular file: a config must be a regular file")},
			want:    planSummary{Refused: []string{"a.json id= runs=- read: a.json: a named pipe (FIFO), not a regular file: a config must be a regular file"}},
		},
		{
			name:    "an over-size file is refused and its last good version runs on",
			running: running(a1),
			scanned: []scannedFile{unreadable("a.json", "larger than 1048576 bytes, the limit of a config file")},
			want: planSummary{
				Changes: []string{"keep a.json obs.a->obs.a"},
				Refused: []string{"a.json id= runs=obs.a read: a.json: larger than 1048576 bytes, the limit of a config file"},
			},
		},
		{
			name:    "an invalid version keeps the last good one",
			running: running(a1),
			scanned: []scannedFile{unusable("a.json", "obs.a", 2, bad)},
			want: planSummary{
				Changes: []string{"keep a.json obs.a->obs.a"},
				Refused: []string{"a.json id=obs.a runs=obs.a bytes: " + bad.String()},
			},
		},
		{
			name:    "an invalid new file runs nothing",
			scanned: []scannedFile{unusable("a.json", "obs.a", 2, bad)},
			want:    planSummary{Refused: []string{"a.json id=obs.a runs=- bytes: " + bad.String()}},
		},
		{
			name:    "a disabled version stops",
			running: running(a1),
			scanned: []scannedFile{parsed(disabledEntry(obs("a.json", "obs.a", 2)))},
			want:    planSummary{Changes: []string{"stop a.json obs.a"}, Disabled: []string{"a.json"}, Discard: []string{"a.json obs.a"}},
		},
		{
			name:    "a disabled new file is skipped",
			scanned: []scannedFile{parsed(disabledEntry(obs("a.json", "obs.a", 2)))},
			want:    planSummary{Disabled: []string{"a.json"}, Discard: []string{"a.json obs.a"}},
		},
		{
			name:    "a disabled invalid version is not refused: it stops",
			running: running(a1),
			scanned: []scannedFile{unusable("a.json", "obs.a", 2, Problem{File: "a.json", Message: "bad", Warning: true})},
			want:    planSummary{Changes: []string{"stop a.json obs.a"}, Disabled: []string{"a.json"}},
		},
		{
			name:    "a usable file with warnings starts and is warned about",
			scanned: []scannedFile{parsed(obs("a.json", "obs.a", 1), deprecated)},
			want:    planSummary{Changes: []string{"start a.json obs.a"}, Warned: []string{"a.json"}},
		},
		{
			name:    "a new file with a running id is refused naming the running file",
			running: running(obs("b.json", "obs.x", 1)),
			scanned: []scannedFile{parsed(obs("a.json", "obs.x", 1)), unchanged(obs("b.json", "obs.x", 1))},
			want: planSummary{
				Changes: []string{"keep b.json obs.x->obs.x"},
				Refused: []string{`a.json id=obs.x runs=- claim: a.json: data.id: id "obs.x" is already used by b.json; ids must be unique across enabled configs`},
				Discard: []string{"a.json obs.x"},
			},
		},
		{
			name:    "a removed file frees its id for a new one",
			running: running(obs("b.json", "obs.x", 1)),
			scanned: []scannedFile{parsed(obs("a.json", "obs.x", 1))},
			want:    planSummary{Changes: []string{"start a.json obs.x", "stop b.json obs.x"}},
		},
		{
			name:    "two new files with one id: the first by name runs",
			scanned: []scannedFile{parsed(obs("b.json", "obs.x", 1)), parsed(obs("a.json", "obs.x", 1))},
			want: planSummary{
				Changes: []string{"start a.json obs.x"},
				Refused: []string{`b.json id=obs.x runs=- claim: b.json: data.id: id "obs.x" is already used by a.json; ids must be unique across enabled configs`},
				Discard: []string{"b.json obs.x"},
			},
		},
		{
			name:    "a new version taking a running id keeps the last good one",
			running: running(a1, b1),
			scanned: []scannedFile{parsed(obs("a.json", "obs.b", 2)), unchanged(b1)},
			want: planSummary{
				Changes: []string{"keep a.json obs.a->obs.a", "keep b.json obs.b->obs.b"},
				Refused: []string{`a.json id=obs.b runs=obs.a claim: a.json: data.id: id "obs.b" is already used by b.json; ids must be unique across enabled configs`},
				Discard: []string{"a.json obs.b"},
			},
		},
		{
			name:    "an id moves down a chain of files in one reload",
			running: running(a1, b1, c1),
			scanned: []scannedFile{parsed(obs("a.json", "obs.b", 2)), parsed(obs("b.json", "obs.d", 2)), unchanged(c1)},
			want:    planSummary{Changes: []string{"replace a.json obs.a->obs.b", "replace b.json obs.b->obs.d", "keep c.json obs.c->obs.c"}},
		},
		{
			name:    "a blocked chain: each keeps its last good version",
			running: running(obs("a.json", "obs.b", 1), obs("b.json", "obs.d", 1), c1),
			scanned: []scannedFile{parsed(obs("a.json", "obs.d", 2)), unchanged(obs("b.json", "obs.d", 1)), parsed(obs("c.json", "obs.b", 2))},
			want: planSummary{
				Changes: []string{"keep a.json obs.b->obs.b", "keep b.json obs.d->obs.d", "keep c.json obs.c->obs.c"},
				Refused: []string{
					`a.json id=obs.d runs=obs.b claim: a.json: data.id: id "obs.d" is already used by b.json; ids must be unique across enabled configs`,
					`c.json id=obs.b runs=obs.c claim: c.json: data.id: id "obs.b" is already used by a.json; ids must be unique across enabled configs`,
				},
				Discard: []string{"a.json obs.d", "c.json obs.b"},
			},
		},
		{
			name:    "two running files swapping ids in one reload: neither gives up first",
			running: running(a1, b1),
			scanned: []scannedFile{parsed(obs("a.json", "obs.b", 2)), parsed(obs("b.json", "obs.a", 2))},
			want: planSummary{
				Changes: []string{"keep a.json obs.a->obs.a", "keep b.json obs.b->obs.b"},
				Refused: []string{
					`a.json id=obs.b runs=obs.a claim: a.json: data.id: id "obs.b" is already used by b.json; ids must be unique across enabled configs`,
					`b.json id=obs.a runs=obs.b claim: b.json: data.id: id "obs.a" is already used by a.json; ids must be unique across enabled configs`,
				},
				Discard: []string{"a.json obs.b", "b.json obs.a"},
			},
		},
		{
			name:    "a refused version keeps its claims against a new file",
			running: running(a1),
			scanned: []scannedFile{unusable("a.json", "obs.a", 2, bad), parsed(obs("b.json", "obs.a", 1))},
			want: planSummary{
				Changes: []string{"keep a.json obs.a->obs.a"},
				Refused: []string{
					"a.json id=obs.a runs=obs.a bytes: " + bad.String(),
					`b.json id=obs.a runs=- claim: b.json: data.id: id "obs.a" is already used by a.json; ids must be unique across enabled configs`,
				},
				Discard: []string{"b.json obs.a"},
			},
		},
		{
			name:    "an unreadable file keeps its claims against a new file",
			running: running(a1),
			scanned: []scannedFile{unreadable("a.json", "cannot open the file: permission denied"), parsed(obs("b.json", "obs.a", 1))},
			want: planSummary{
				Changes: []string{"keep a.json obs.a->obs.a"},
				Refused: []string{
					"a.json id= runs=obs.a read: a.json: cannot open the file: permission denied",
					`b.json id=obs.a runs=- claim: b.json: data.id: id "obs.a" is already used by a.json; ids must be unique across enabled configs`,
				},
				Discard: []string{"b.json obs.a"},
			},
		},
		{
			name:    "a second config of a running responder module is refused",
			running: running(r1),
			scanned: []scannedFile{parsed(planEntry("r0.json", "resp.zero", KindResponder, 1)), unchanged(r1)},
			want: planSummary{
				Changes: []string{"keep r1.json resp.one->resp.one"},
				Refused: []string{"r0.json id=resp.zero runs=- claim: r0.json: schema: a mod responder is already enabled by r1.json; enable one config per responder"},
				Discard: []string{"r0.json resp.zero"},
			},
		},
		{
			name:    "a responder's new version keeps its module",
			running: running(r1),
			scanned: []scannedFile{parsed(planEntry("r1.json", "resp.one", KindResponder, 2))},
			want:    planSummary{Changes: []string{"replace r1.json resp.one->resp.one"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, summarize(plan(tc.running, tc.scanned))); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

// A plan's refusal keys tell versions apart, so that a version is reported
// once and another version, or another reason, is news.
func TestPlanRefusalKeys(t *testing.T) {
	a1 := obs("a.json", "obs.a", 1)
	key := func(sf scannedFile) string {
		p := plan(running(a1), []scannedFile{sf, parsed(obs("b.json", "obs.b", 1))})
		return p.Refused[0].Key
	}
	bad := Problem{File: "a.json", Message: "bad"}
	keys := map[string]string{
		"bytes v2":         key(unusable("a.json", "obs.a", 2, bad)),
		"bytes v3":         key(unusable("a.json", "obs.a", 3, bad)),
		"read error":       key(unreadable("a.json", "cannot open the file: permission denied")),
		"other read error": key(unreadable("a.json", "cannot open the file: input/output error")),
		"claim v2":         key(parsed(obs("a.json", "obs.b", 2))),
	}
	seen := map[string]string{}
	for what, k := range keys {
		if other, ok := seen[k]; ok {
			t.Errorf("%s and %s share the key %q", what, other, k)
		}
		seen[k] = what
	}
	if again := key(unusable("a.json", "obs.a", 2, bad)); again != keys["bytes v2"] {
		t.Errorf("the same version has keys %q and %q", keys["bytes v2"], again)
	}
}
