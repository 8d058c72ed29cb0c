package kinesis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"

	"github.com/sauna-io/sauna/observer/command"
	"github.com/sauna-io/sauna/observer/deadletter"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
)

// fakeLedger keeps claims in memory, as the outcomes table would: by
// identity, commandId and digest.
type fakeLedger struct {
	mu       sync.Mutex
	done     map[outcomes.Identity]outcomes.Final
	held     map[outcomes.Identity]bool
	elsewhre map[string]int // claims refused this many times first, by commandId
	released []outcomes.Identity
	claims   []outcomes.Claim
	unheld   []outcomes.Identity // ended without being held: a bug
	peeks    []int               // sizes of the Peek calls
	batches  []int               // sizes of the RecordDone calls
}

func newFakeLedger() *fakeLedger {
	return &fakeLedger{done: map[outcomes.Identity]outcomes.Final{}, held: map[outcomes.Identity]bool{}, elsewhre: map[string]int{}}
}

func (f *fakeLedger) Claim(_ context.Context, c outcomes.Claim) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claims = append(f.claims, c)
	if _, ok := f.done[c.Identity()]; ok {
		return &outcomes.DuplicateError{}
	}
	if f.held[c.Identity()] {
		return outcomes.ErrClaimedElsewhere
	}
	if f.elsewhre[c.CommandID] > 0 {
		f.elsewhre[c.CommandID]--
		return outcomes.ErrClaimedElsewhere
	}
	f.held[c.Identity()] = true
	return nil
}

func (f *fakeLedger) Extend(_ context.Context, id outcomes.Identity) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.held[id] {
		f.unheld = append(f.unheld, id)
	}
	return nil
}

func (f *fakeLedger) Finish(_ context.Context, id outcomes.Identity, fin outcomes.Final) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.held[id] {
		f.unheld = append(f.unheld, id)
	}
	delete(f.held, id)
	f.done[id] = fin
	return nil
}

func (f *fakeLedger) Release(_ context.Context, id outcomes.Identity) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.held, id)
	f.released = append(f.released, id)
	return nil
}

// Reject records a rejection under the bare commandId (a rejected
// command may have no digest); an executed command keeps its outcome.
func (f *fakeLedger) Reject(_ context.Context, r outcomes.Rejection) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, fin := range f.done {
		if id.CommandID == r.CommandID && fin.Verdict == verdict.Executed {
			return nil
		}
	}
	f.done[outcomes.Identity{CommandID: r.CommandID}] = outcomes.Final{Verdict: verdict.Rejected, Reason: r.Reason}
	return nil
}

// Peek classifies as outcomes.Table does: done (a duplicate), held or
// refused (contended), or never seen.
func (f *fakeLedger) Peek(_ context.Context, cs []outcomes.Claim) ([]outcomes.Peeked, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peeks = append(f.peeks, len(cs))
	res := make([]outcomes.Peeked, len(cs))
	for i, c := range cs {
		if _, ok := f.done[c.Identity()]; ok {
			res[i] = outcomes.Peeked{Seen: outcomes.SeenDone, Duplicate: &outcomes.DuplicateError{Record: &outcomes.Record{CommandID: c.CommandID}}}
		} else if f.held[c.Identity()] || f.elsewhre[c.CommandID] > 0 {
			res[i].Seen = outcomes.Contended
		}
	}
	return res, nil
}

// RecordDone records outcomes of commands run without a claim.
func (f *fakeLedger) RecordDone(_ context.Context, ds []outcomes.Done) error {
	// A DynamoDB round trip.
	time.Sleep(5 * time.Millisecond)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, len(ds))
	for _, d := range ds {
		if f.held[d.Claim.Identity()] {
			f.unheld = append(f.unheld, d.Claim.Identity())
		}
		f.done[d.Claim.Identity()] = d.Final
	}
	return nil
}

func (f *fakeLedger) RecordDoneIfAbsent(_ context.Context, d outcomes.Done) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.done[d.Claim.Identity()]; ok || f.held[d.Claim.Identity()] {
		return outcomes.ErrItemExists
	}
	f.done[d.Claim.Identity()] = d.Final
	return nil
}

// identityOf is the identity the processor claims a record under.
func identityOf(t *testing.T, r types.Record) outcomes.Identity {
	t.Helper()
	cmd, err := responders.Decode(r.Data)
	if err != nil {
		t.Fatal(err)
	}
	d, err := cmd.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return outcomes.Identity{CommandID: cmd.ID, Digest: d}
}

// doneFor finds the outcome recorded for a commandId, whatever its digest.
func (f *fakeLedger) doneFor(commandID string) (outcomes.Final, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, fin := range f.done {
		if id.CommandID == commandID {
			return fin, true
		}
	}
	return outcomes.Final{}, false
}

type fakeDeadLetters struct {
	mu      sync.Mutex
	letters []deadletter.Letter
	fail    bool
}

func (f *fakeDeadLetters) Put(_ context.Context, l deadletter.Letter) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errors.New("kinesis unavailable")
	}
	f.letters = append(f.letters, l)
	return nil
}

func TestExecuteWithClaimsAndDeadLetters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ledger, dlq := newFakeLedger(), &fakeDeadLetters{}
		h := newHarness(t, func(o *Observer) {
			o.ledger, o.deadLetters = ledger, dlq
			o.cfg.RetryBudget = time.Minute
			o.cfg.DeadLetterStream = "dlq"
		})
		ledger.done[identityOf(t, keyedRecord("2", "b", "already ran"))] = outcomes.Final{Verdict: "executed"}
		ledger.elsewhre["00000000-0000-4000-8000-000000000005"] = 2
		h.resp.reply = func(_ context.Context, text string, _ int) error {
			switch text {
			case "rejected by vendor":
				return responders.Permanent(errors.New("400 invalid_payload"))
			case "always down":
				return responders.Retryable(errors.New("503"), 0)
			}
			return nil
		}
		cp := &fakeCheckpointer{}
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{
			keyedRecord("1", "a", "fine"),
			keyedRecord("2", "b", "already ran"),
			keyedRecord("3", "c", "rejected by vendor"),
			keyedRecord("4", "d", "always down"),
			keyedRecord("5", "e", "claimed elsewhere first"),
			rawRecord("6", "not json"),
			rawRecord("7", strings.Replace(string(keyedRecord("7", "g", "x").Data), "com.slack.sauna.commands", "com.example", 1)),
		}})
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})

		want := []string{"1=executed", "2=duplicate", "3=dead_lettered", "4=dead_lettered", "5=executed", "6=rejected:invalid_json", "7=rejected:unknown_schema"}
		if got := h.results(); !slices.Equal(got, want) {
			t.Errorf("outcomes %v, want %v", got, want)
		}
		if slices.Contains(h.resp.calls, "already ran") {
			t.Error("a duplicate reached the responder")
		}
		reasons := map[string]string{}
		for _, l := range dlq.letters {
			reasons[l.SequenceNumber] = l.Reason
			if len(l.Record) == 0 || l.Shard != "shardId-000000000001" {
				t.Errorf("letter without its record or shard: %+v", l)
			}
		}
		wantReasons := map[string]string{"3": "failed_permanently", "4": "retry_budget_exhausted", "6": "rejected:invalid_json", "7": "rejected:unknown_schema"}
		if !mapsEqual(reasons, wantReasons) {
			t.Errorf("dead-letter reasons %v, want %v", reasons, wantReasons)
		}
		for _, id := range []string{"1", "3", "4", "5"} {
			if f, ok := ledger.doneFor("00000000-0000-4000-8000-00000000000" + id); !ok || f.Attempts < 1 {
				t.Errorf("command %s has no recorded outcome: %+v", id, f)
			}
		}
		// A rejected command whose id is readable is recorded, so that
		// `sauna outcome` finds it.
		if f, _ := ledger.doneFor("00000000-0000-4000-8000-000000000007"); f.Verdict != verdict.Rejected || !strings.Contains(f.Reason, "unknown_schema") {
			t.Errorf("rejected command recorded as %+v", f)
		}
		if cp.written[len(cp.written)-1] != "7" {
			t.Errorf("checkpoints %v, want to end at 7", cp.written)
		}
		for _, c := range ledger.claims {
			want := identityOf(t, keyedRecord(c.Sequence, "", map[string]string{
				"1": "fine", "2": "already ran", "3": "rejected by vendor", "4": "always down", "5": "claimed elsewhere first",
			}[c.Sequence]))
			if c.Identity() != want || c.Schema != "iglu:com.slack.sauna.commands/send_message/jsonschema/1-0-0" {
				t.Errorf("claim %+v, want identity %+v and the command's schema", c, want)
			}
		}
		if len(ledger.unheld) > 0 {
			t.Errorf("claims extended or finished under another identity: %v", ledger.unheld)
		}
	})
}

// Records that share a commandId but ask different things are different
// commands: each runs once; a redelivery of either is a duplicate.
func TestExecuteSameIDDifferentCommands(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ledger := newFakeLedger()
		h := newHarness(t, func(o *Observer) { o.ledger = ledger })
		sameID := func(seq, key, text string) types.Record {
			r := keyedRecord(seq, key, text)
			r.Data = []byte(strings.Replace(string(r.Data), "00000000-0000-4000-8000-"+fmt.Sprintf("%012s", seq), "00000000-0000-4000-8000-000000000001", 1))
			return r
		}
		cp := &fakeCheckpointer{}
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{
			sameID("1", "a", "first"), sameID("2", "b", "second"), sameID("3", "c", "first"), sameID("4", "d", "second"),
		}})
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
		got := h.results()
		executed, dups := 0, 0
		for _, r := range got {
			switch {
			case strings.HasSuffix(r, "=executed"):
				executed++
			case strings.HasSuffix(r, "=duplicate"):
				dups++
			}
		}
		if executed != 2 || dups != 2 {
			t.Errorf("outcomes %v, want two executed and two duplicates", got)
		}
		slices.Sort(h.resp.calls)
		if !slices.Equal(h.resp.calls, []string{"first", "second"}) {
			t.Errorf("responder calls %v, want each command once", h.resp.calls)
		}
	})
}

// Without a dead-letter stream a command that keeps failing holds its key
// rather than being lost; other keys flow past it.
func TestExecuteWithoutDeadLettersNeverDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t)
		h.p.o.cfg.RetryBudget = time.Second
		h.resp.reply = func(_ context.Context, text string, _ int) error {
			if text == "down" {
				return responders.Retryable(errors.New("503"), 0)
			}
			return nil
		}
		go func() {
			time.Sleep(10 * time.Minute)
			h.stop()
		}()
		cp := &fakeCheckpointer{}
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{
			keyedRecord("1", "a", "down"), keyedRecord("2", "a", "same key"), keyedRecord("3", "b", "other key"),
		}})
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
		if got := h.results(); !slices.Equal(got, []string{"3=executed"}) {
			t.Errorf("outcomes %v, want only 3 executed", got)
		}
		if slices.Contains(h.resp.calls, "same key") {
			t.Error("a command ran before the earlier command of its key")
		}
		if len(cp.written) > 0 {
			t.Errorf("checkpoint %v passed a command that never ran", cp.written)
		}
	})
}

// A vendor asking for a day's wait holds a command no longer than the retry
// budget, then the command is dead-lettered without another call; without
// a dead-letter stream the wait is capped and the command runs when the
// vendor recovers.
func TestExecuteCapsTheResponderDelay(t *testing.T) {
	const day = 27 * time.Hour
	for _, withDLQ := range []bool{true, false} {
		t.Run(map[bool]string{true: "dead-letter stream", false: "no dead-letter stream"}[withDLQ], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ledger, dlq := newFakeLedger(), &fakeDeadLetters{}
				h := newHarness(t, func(o *Observer) {
					o.ledger = ledger
					o.cfg.RetryBudget = time.Minute
					if withDLQ {
						o.deadLetters, o.cfg.DeadLetterStream = dlq, "dlq"
					}
				})
				h.resp.reply = func(_ context.Context, _ string, call int) error {
					if call == 1 {
						return responders.Retryable(errors.New("429"), day)
					}
					return nil
				}
				start := time.Now()
				cp := &fakeCheckpointer{}
				h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{keyedRecord("1", "a", "limited")}})
				// Shutdown waits for the command to end.
				h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
				took := time.Since(start)
				f, _ := ledger.doneFor("00000000-0000-4000-8000-000000000001")
				if withDLQ {
					if got := h.results(); !slices.Equal(got, []string{"1=dead_lettered"}) {
						t.Errorf("outcomes %v, want the command dead-lettered", got)
					}
					if len(dlq.letters) != 1 || dlq.letters[0].Reason != "retry_budget_exhausted" {
						t.Errorf("letters %+v, want one, retry_budget_exhausted", dlq.letters)
					}
					if len(h.resp.calls) != 1 || took != time.Minute {
						t.Errorf("%d calls, dead-lettered after %s; want one call and the 1m budget", len(h.resp.calls), took)
					}
					return
				}
				if got := h.results(); !slices.Equal(got, []string{"1=executed"}) || f.Attempts != 2 {
					t.Errorf("outcomes %v after %d attempts, want executed after 2", got, f.Attempts)
				}
				if took > 6*time.Minute {
					t.Errorf("the retry came after %s; a responder's delay is capped at 5m", took)
				}
			})
		})
	}
}

// A dead letter that cannot be written leaves the record unfinished: the
// shard stops below it, and its lease is released for a new consumer to
// read it again; the observer goes on. The release's WARN says why the
// record stopped and when this worker takes the shard again.
func TestExecuteDeadLetterFailureIsNotFinal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dlq := &fakeDeadLetters{fail: true}
		events := &eventLog{}
		h := newHarness(t, func(o *Observer) {
			o.deadLetters = dlq
			o.log = slog.New(logEvents{Handler: slog.NewTextHandler(io.Discard, nil), log: events})
		})
		h.p.o.fatal = make(chan error, 1)
		var released []string
		h.p.o.abandon = func(shard, seq string) (time.Duration, error) {
			released = append(released, shard+"@"+seq)
			return 3 * time.Second, nil
		}
		cp := &fakeCheckpointer{}
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp, Records: []types.Record{rawRecord("1", "not json")}})
		synctest.Wait()
		h.p.ProcessRecords(&kcl.ProcessRecordsInput{Checkpointer: cp})
		h.p.Shutdown(&kcl.ShutdownInput{ShutdownReason: kcl.REQUESTED, Checkpointer: cp})
		if len(cp.written) > 0 || len(h.results()) > 0 {
			t.Errorf("checkpoints %v, outcomes %v: an undelivered dead letter must not count as done", cp.written, h.results())
		}
		if !slices.Equal(released, []string{"shardId-000000000001@1"}) {
			t.Errorf("leases released: %v, want the shard's once, at record 1", released)
		}
		warns := events.find("a record stopped without an outcome; the shard's lease is released for it to be read again from the checkpoint", "")
		if len(warns) != 1 {
			t.Fatalf("%d release lines, want 1", len(warns))
		}
		w := warns[0]
		if w.level != slog.LevelWarn || w.attrs["cause"].String() != "dead_letter_not_written" ||
			w.attrs["retake_in"].Duration() != 3*time.Second || w.attrs["seq"].String() != "1" {
			t.Errorf("release line %v %v, want WARN, cause dead_letter_not_written, seq 1, retake_in 3s", w.level, w.attrs)
		}
		if err, ok := w.attrs["cause_err"].Any().(error); !ok || !errors.Is(err, command.ErrDeadLetterNotWritten) {
			t.Errorf("cause_err %v, want an error matching command.ErrDeadLetterNotWritten", w.attrs["cause_err"])
		}
		select {
		case err := <-h.p.o.fatal:
			t.Errorf("observer restart requested for one shard's record: %v", err)
		default:
		}
	})
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
