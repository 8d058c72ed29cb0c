package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
)

// table is an outcomes table in memory that counts what it is asked: by
// identity, done or claimed, as outcomes.Table keeps them.
type table struct {
	mu      sync.Mutex
	done    map[outcomes.Identity]outcomes.Final
	held    map[outcomes.Identity]bool
	claims  int
	peeks   int
	batches []int // sizes of the RecordDone calls
	// finishedBy tells how each outcome was written: "finish" or "batch".
	finishedBy map[string]string
	// failWrites is how many RecordDone calls fail first.
	failWrites int
	// events logs the Finishes and conditional writes that landed and the
	// releases, in order: "finish ID", "if_absent ID", "release ID".
	events []string
}

func newTable() *table {
	return &table{done: map[outcomes.Identity]outcomes.Final{}, held: map[outcomes.Identity]bool{}, finishedBy: map[string]string{}}
}

func (t *table) Claim(_ context.Context, c outcomes.Claim) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.claims++
	if _, ok := t.done[c.Identity()]; ok {
		return &outcomes.DuplicateError{Record: &outcomes.Record{CommandID: c.CommandID}}
	}
	if t.held[c.Identity()] {
		return outcomes.ErrClaimedElsewhere
	}
	t.held[c.Identity()] = true
	return nil
}

func (t *table) Extend(context.Context, outcomes.Identity) error { return nil }
func (t *table) Release(_ context.Context, id outcomes.Identity) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events = append(t.events, "release "+id.CommandID)
	return nil
}

func (t *table) Reject(context.Context, outcomes.Rejection) error { return nil }

func (t *table) Finish(_ context.Context, id outcomes.Identity, f outcomes.Final) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.held[id] {
		return outcomes.ErrNotClaimed
	}
	delete(t.held, id)
	t.done[id] = f
	t.finishedBy[id.CommandID] = "finish"
	t.events = append(t.events, "finish "+id.CommandID)
	return nil
}

func (t *table) Peek(_ context.Context, cs []outcomes.Claim) ([]outcomes.Peeked, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.peeks++
	res := make([]outcomes.Peeked, len(cs))
	for i, c := range cs {
		switch {
		case t.held[c.Identity()]:
			res[i].Seen = outcomes.Contended
		default:
			if _, ok := t.done[c.Identity()]; ok {
				res[i] = outcomes.Peeked{Seen: outcomes.SeenDone, Duplicate: &outcomes.DuplicateError{Record: &outcomes.Record{CommandID: c.CommandID}}}
			}
		}
	}
	return res, nil
}

func (t *table) RecordDone(_ context.Context, ds []outcomes.Done) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.batches = append(t.batches, len(ds))
	if t.failWrites > 0 {
		t.failWrites--
		return errors.New("connection reset")
	}
	for _, d := range ds {
		t.done[d.Claim.Identity()] = d.Final
		t.finishedBy[d.Claim.CommandID] = "batch"
	}
	return nil
}

func (t *table) RecordDoneIfAbsent(_ context.Context, d outcomes.Done) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.done[d.Claim.Identity()]; ok || t.held[d.Claim.Identity()] {
		return outcomes.ErrItemExists
	}
	t.done[d.Claim.Identity()] = d.Final
	t.finishedBy[d.Claim.CommandID] = "if_absent"
	t.events = append(t.events, "if_absent "+d.Claim.CommandID)
	return nil
}

func (t *table) counts() (claims, peeks int, batches []int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.claims, t.peeks, append([]int(nil), t.batches...)
}

// fastRunners are the runners of shards of one observer process, sharing
// its Memory and Batcher, with tab as ledger and respond as responder.
type fastRunners struct {
	tab     *table
	memory  *Memory
	batcher *Batcher
	mu      sync.Mutex
	settled []Outcome
	runners []*Runner
	// lost are the runners' lease-lost channels.
	lost     []chan struct{}
	finished chan struct{}
}

func newFastRunners(t *testing.T, shards int, respond answer) *fastRunners {
	d := responders.NewDispatcher(nil)
	d.Replace(map[string]responders.Enabled{"cmdslack": {ID: "slack", Module: "cmdslack", Responder: respond}})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := &fastRunners{tab: newTable(), memory: NewMemory()}
	f.batcher = NewBatcher(f.tab, log)
	f.batcher.Start()
	t.Cleanup(func() { f.batcher.Stop(context.Background()) })
	for i := range shards {
		lost := make(chan struct{})
		f.lost = append(f.lost, lost)
		lease := Lease{Lost: lost, Fence: func() time.Time { return time.Now().Add(time.Hour) }}
		hardOrLost, cancel := lease.Context(context.Background())
		t.Cleanup(cancel)
		f.runners = append(f.runners, &Runner{
			Observer: "obs", Stream: "s", Shard: "shard-" + string(rune('a'+i)),
			Dispatcher: d, Ledger: f.tab, Memory: f.memory, Batcher: f.batcher,
			Lease:  lease,
			Intake: context.Background(), Hard: context.Background(), HardOrLost: hardOrLost,
			Log:       log,
			Attempted: func(string, responders.Verdict, time.Duration) {},
			Settled: func(o Outcome) {
				f.mu.Lock()
				defer f.mu.Unlock()
				f.settled = append(f.settled, o)
			},
		})
	}
	return f
}

// prepare prepares recs on runner r and peeks them as the source does.
func (f *fastRunners) prepare(t *testing.T, r *Runner, recs ...Record) []Prepared {
	t.Helper()
	ps := make([]Prepared, len(recs))
	claims := make([]outcomes.Claim, len(recs))
	for i, rec := range recs {
		ps[i] = r.Prepare(rec)
		c, ok := ps[i].Claim(r.Shard)
		if !ok {
			t.Fatalf("record %s: %v", rec.Sequence, ps[i].err)
		}
		claims[i] = c
	}
	at := time.Now()
	res, err := f.tab.Peek(context.Background(), claims)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ps {
		ps[i].Peeked(res[i], at)
	}
	return ps
}

func (f *fastRunners) verdicts() map[verdict.Outcome]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[verdict.Outcome]int{}
	for _, o := range f.settled {
		m[o.Verdict]++
	}
	return m
}

// Commands the ledger has never seen run without a claim, and their
// outcomes are written many to a request: no write per command.
func TestFastPathWritesNoClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 60
		release := make(chan struct{})
		var mu sync.Mutex
		started := 0
		f := newFastRunners(t, 1, func(string) error {
			mu.Lock()
			started++
			if started == n {
				close(release)
			}
			mu.Unlock()
			<-release
			return nil
		})
		recs := make([]Record, n)
		for i := range recs {
			recs[i] = record(i+1, "hello")
		}
		ps := f.prepare(t, f.runners[0], recs...)
		var wg sync.WaitGroup
		for i := range ps {
			wg.Go(func() {
				if !f.runners[0].Execute(&ps[i], Turn{}) {
					t.Errorf("record %d stopped short", i+1)
				}
			})
		}
		wg.Wait()
		claims, _, batches := f.tab.counts()
		if v := f.verdicts(); v[verdict.Executed] != n {
			t.Fatalf("verdicts %v, want %d executed", v, n)
		}
		total := 0
		for _, b := range batches {
			total += b
			if b > BatchSize {
				t.Errorf("a write of %d outcomes, more than %d", b, BatchSize)
			}
		}
		if claims != 0 || total != n || len(batches) > 3 {
			t.Errorf("%d claims and outcome writes %v for %d commands; want no claim and %d outcomes in 3 writes", claims, batches, n, n)
		}
		for i := range n {
			if by := f.tab.finishedBy[recs[i].commandID()]; by != "batch" {
				t.Errorf("command %d recorded by %q", i+1, by)
			}
		}
	})
}

// A lone command's outcome is written at once: nothing else is running, so
// nothing would join its write.
func TestFastPathLoneOutcomeWrittenAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFastRunners(t, 1, func(string) error { return nil })
		ps := f.prepare(t, f.runners[0], record(1, "alone"))
		start := time.Now()
		if !f.runners[0].Execute(&ps[0], Turn{}) {
			t.Fatal("stopped short")
		}
		if took := time.Since(start); took != 0 {
			t.Errorf("the outcome of a lone command waited %v to be written", took)
		}
		if _, _, batches := f.tab.counts(); len(batches) != 1 || batches[0] != 1 {
			t.Errorf("outcome writes %v, want one of 1", batches)
		}
	})
}

// A lone outcome is written by its own run, under the run's stop: once the
// lease is lost, the run stops retrying a failing write and leaves the
// record unfinished, and no write of it goes on after.
func TestFastPathLoneOutcomeWriteEndsWithTheLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFastRunners(t, 1, func(string) error { return nil })
		f.tab.failWrites = 1000
		r := f.runners[0]
		ps := f.prepare(t, r, record(1, "alone"))
		final := make(chan bool)
		go func() { final <- r.Execute(&ps[0], Turn{}) }()
		time.Sleep(time.Second) // the write failed and is retried
		synctest.Wait()
		close(f.lost[0])
		if <-final {
			t.Fatal("the run finished without its outcome recorded")
		}
		synctest.Wait()
		_, _, before := f.tab.counts()
		time.Sleep(time.Minute)
		if _, _, after := f.tab.counts(); len(after) != len(before) || len(before) < 2 {
			t.Errorf("outcome writes %v before the lease was lost, %v a minute after", before, after)
		}
	})
}

// A first attempt that must be retried takes a claim before the retry:
// the first attempt went without one, the retry under it, and the outcome
// ends the claim.
func TestFastPathRetryTakesAClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var f *fastRunners
		var claimsAtCall []int
		f = newFastRunners(t, 1, func(string) error {
			claims, _, _ := f.tab.counts()
			claimsAtCall = append(claimsAtCall, claims)
			if len(claimsAtCall) == 1 {
				return responders.Retryable(errors.New("503"), 0)
			}
			return nil
		})
		ps := f.prepare(t, f.runners[0], record(1, "flaky"))
		if !f.runners[0].Execute(&ps[0], Turn{}) {
			t.Fatal("stopped short")
		}
		if len(claimsAtCall) != 2 || claimsAtCall[0] != 0 || claimsAtCall[1] != 1 {
			t.Errorf("claims held at each call %v, want [0 1]", claimsAtCall)
		}
		id := record(1, "").commandID()
		if by := f.tab.finishedBy[id]; by != "finish" {
			t.Errorf("outcome recorded by %q, want by the claim's Finish", by)
		}
		for fid, fin := range f.tab.done {
			if fid.CommandID == id && (fin.Attempts != 2 || fin.Verdict != verdict.Executed) {
				t.Errorf("outcome %+v, want executed after 2 attempts", fin)
			}
		}
	})
}

// Two records of one command in one process, on one shard or on two, run
// once: the second waits for the first (in flight) or finds it recorded
// lately (recent), and takes a claim, which finds it done. Their Peeks,
// read before either ran, both found nothing.
func TestFastPathSameCommandTwiceInOneProcess(t *testing.T) {
	for _, tc := range []struct {
		name       string
		shards     int
		concurrent bool
	}{
		{"one shard, in flight together", 1, true},
		{"two shards, in flight together", 2, true},
		{"two shards, one after the other", 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var calls sync.Map
				gate := make(chan struct{})
				f := newFastRunners(t, tc.shards, func(text string) error {
					n, _ := calls.LoadOrStore(text, new(int))
					*n.(*int)++
					if tc.concurrent {
						<-gate
					}
					return nil
				})
				first := f.prepare(t, f.runners[0], record(7, "same"))
				second := f.prepare(t, f.runners[tc.shards-1], Record{Sequence: "8", PartitionKey: "other", Data: record(7, "same").Data})
				var wg sync.WaitGroup
				wg.Go(func() { f.runners[0].Execute(&first[0], Turn{}) })
				if tc.concurrent {
					synctest.Wait()
					wg.Go(func() { f.runners[tc.shards-1].Execute(&second[0], Turn{}) })
					synctest.Wait()
					close(gate)
				} else {
					wg.Wait()
					f.runners[tc.shards-1].Execute(&second[0], Turn{})
				}
				wg.Wait()
				if n, _ := calls.Load("same"); *n.(*int) != 1 {
					t.Errorf("the responder was called %d times, want once", *n.(*int))
				}
				if v := f.verdicts(); v[verdict.Executed] != 1 || v[verdict.Duplicate] != 1 {
					t.Errorf("verdicts %v, want one executed, one duplicate", v)
				}
				if fl, _ := f.memory.size(); fl != 0 {
					t.Errorf("%d identities left in flight", fl)
				}
			})
		})
	}
}

// Two different commands under one id in flight together in one process
// both run, the second under a claim once the first is recorded, so that
// its outcome is not written over the first's item.
func TestFastPathOtherCommandSameIDTakesAClaim(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gate := make(chan struct{})
		f := newFastRunners(t, 1, func(string) error { <-gate; return nil })
		first := f.prepare(t, f.runners[0], record(7, "first"))
		other := f.prepare(t, f.runners[0], Record{Sequence: "8", PartitionKey: "other", Data: record(7, "other").Data})
		var wg sync.WaitGroup
		wg.Go(func() { f.runners[0].Execute(&first[0], Turn{}) })
		synctest.Wait()
		wg.Go(func() { f.runners[0].Execute(&other[0], Turn{}) })
		synctest.Wait()
		close(gate)
		wg.Wait()
		claims, _, batches := f.tab.counts()
		if v := f.verdicts(); v[verdict.Executed] != 2 {
			t.Errorf("verdicts %v, want both executed", v)
		}
		if claims != 1 || len(batches) != 1 {
			t.Errorf("%d claims, outcome writes %v; want the first recorded in bulk, the other claimed", claims, batches)
		}
	})
}

// A command the ledger holds as done is settled as a duplicate without a
// claim or a call; one whose Peek is older than PeekFresh when it starts
// takes a claim.
func TestFastPathSeenAndStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		f := newFastRunners(t, 1, func(string) error { calls++; return nil })
		done := f.prepare(t, f.runners[0], record(1, "done"))
		f.tab.done[done[0].identity()] = outcomes.Final{Verdict: verdict.Executed}
		done = f.prepare(t, f.runners[0], record(1, "done"))
		stale := f.prepare(t, f.runners[0], record(2, "stale"))
		if !f.runners[0].Execute(&done[0], Turn{}) {
			t.Fatal("stopped short")
		}
		time.Sleep(PeekFresh + time.Second)
		if !f.runners[0].Execute(&stale[0], Turn{}) {
			t.Fatal("stopped short")
		}
		claims, _, batches := f.tab.counts()
		if calls != 1 || claims != 1 || len(batches) != 0 {
			t.Errorf("%d calls, %d claims, outcome writes %v; want the stale command alone called and claimed", calls, claims, batches)
		}
		if v := f.verdicts(); v[verdict.Executed] != 1 || v[verdict.Duplicate] != 1 {
			t.Errorf("verdicts %v", v)
		}
	})
}

// A failed outcome write is tried again; the run is settled once it lands.
func TestFastPathOutcomeWriteRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFastRunners(t, 1, func(string) error { return nil })
		f.tab.failWrites = 2
		ps := f.prepare(t, f.runners[0], record(1, "hello"))
		if !f.runners[0].Execute(&ps[0], Turn{}) {
			t.Fatal("stopped short")
		}
		if _, _, batches := f.tab.counts(); len(batches) != 3 || f.tab.finishedBy[record(1, "").commandID()] != "batch" {
			t.Errorf("outcome writes %v, recorded by %q; want the third write to record it", batches, f.tab.finishedBy)
		}
	})
}

// A run without a claim whose outcome cannot be written before it must
// stop is not settled: the command ran, and its record is read again.
func TestFastPathUnwrittenOutcomeIsNotSettled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFastRunners(t, 1, func(string) error { return nil })
		f.batcher.Stop(context.Background())
		ps := f.prepare(t, f.runners[0], record(1, "hello"))
		if f.runners[0].Execute(&ps[0], Turn{}) {
			t.Error("settled without its outcome written")
		}
		if len(f.settled) != 0 {
			t.Errorf("outcomes reported %+v", f.settled)
		}
	})
}

// Memory remembers a recorded command for at least 2*PeekFresh and forgets
// it within 4*PeekFresh, so that it does not grow with the commands run.
func TestMemoryForgets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := NewMemory()
		lease := Lease{Lost: make(chan struct{})}
		run := func(id string) (recent bool) {
			_, recent, ok := m.enter(context.Background(), lease, m.key(id))
			if !ok {
				t.Fatal("enter refused")
			}
			m.leave(m.key(id), true)
			return recent
		}
		// Ids of a's stripe, which rotates as they are recorded.
		var same []string
		for i := 0; len(same) < 2; i++ {
			if id := fmt.Sprint("x", i); stripeOf(m, id) == stripeOf(m, "a") {
				same = append(same, id)
			}
		}
		run("a")
		time.Sleep(2*PeekFresh - time.Second)
		if !run("a") {
			t.Error("forgotten before 2*PeekFresh")
		}
		time.Sleep(2*PeekFresh + time.Second)
		run(same[0]) // rotates
		time.Sleep(2*PeekFresh + time.Second)
		run(same[1]) // rotates again: a's generation is dropped
		if _, recent, _ := m.enter(context.Background(), lease, m.key("a")); recent {
			t.Error("remembered after 4*PeekFresh")
		}
		m.leave(m.key("a"), false)
		if fl, rec := m.size(); fl != 0 || rec != 2 {
			t.Errorf("%d in flight, %d remembered; want 0 and %v", fl, rec, same)
		}
	})
}

func stripeOf(m *Memory, id string) *stripe {
	return m.stripe(m.key(id))
}

func (r Record) commandID() string {
	cmd, err := responders.Decode(r.Data)
	if err != nil {
		panic(err)
	}
	return cmd.ID
}

func (p *Prepared) identity() outcomes.Identity {
	return outcomes.Identity{CommandID: p.cmd.ID, Digest: p.digest}
}
