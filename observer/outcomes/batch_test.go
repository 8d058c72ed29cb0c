package outcomes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"

	"github.com/sauna-io/sauna/observer/backoff"
	"github.com/sauna-io/sauna/observer/ddbtable/ddbfake"
	"github.com/sauna-io/sauna/observer/internal/testclock"
	"github.com/sauna-io/sauna/observer/verdict"
)

// memStore answers the batch calls, and the create and read Claim starts
// with, from a map of items as DynamoDB would, leaving keys or writes
// unprocessed as told.
type memStore struct {
	mu           sync.Mutex
	items        map[string]map[string]types.AttributeValue
	gets, writes [][]string // the keys of each batch call, in order
	// leave, if set, is how many of the n keys or writes of batch call
	// number call (from 1, gets and writes counted apart) are left
	// unprocessed: the last ones.
	leave func(call, n int) int
}

func newStore(f *ddbfake.DB, items ...map[string]types.AttributeValue) *memStore {
	f.Table, f.HashKey, f.ConsistentReads = "obs-commands", AttrCommandID, true
	m := &memStore{items: make(map[string]map[string]types.AttributeValue)}
	for _, it := range items {
		key, _ := str(it, AttrCommandID)
		m.items[key] = it
	}
	f.OnBatchGetItem = m.batchGet
	f.OnBatchWriteItem = m.batchWrite
	f.OnGetItem = func(in *dynamodb.GetItemInput) (*dynamodb.GetItemOutput, error) {
		key, _ := str(in.Key, AttrCommandID)
		m.mu.Lock()
		defer m.mu.Unlock()
		return &dynamodb.GetItemOutput{Item: m.items[key]}, nil
	}
	f.OnPutItem = func(in *dynamodb.PutItemInput) (*dynamodb.PutItemOutput, error) {
		key, _ := str(in.Item, AttrCommandID)
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.items[key] != nil {
			return nil, conditionFailed()
		}
		m.items[key] = in.Item
		return &dynamodb.PutItemOutput{}, nil
	}
	return m
}

func (m *memStore) left(call, n int) int {
	if m.leave == nil {
		return 0
	}
	return min(m.leave(call, n), n)
}

func (m *memStore) batchGet(in *dynamodb.BatchGetItemInput) (*dynamodb.BatchGetItemOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ka := in.RequestItems["obs-commands"]
	var keys []string
	for _, k := range ka.Keys {
		key, _ := str(k, AttrCommandID)
		keys = append(keys, key)
	}
	m.gets = append(m.gets, keys)
	out := &dynamodb.BatchGetItemOutput{Responses: map[string][]map[string]types.AttributeValue{}}
	done := len(keys) - m.left(len(m.gets), len(keys))
	for _, k := range ka.Keys[:done] {
		key, _ := str(k, AttrCommandID)
		if it := m.items[key]; it != nil {
			out.Responses["obs-commands"] = append(out.Responses["obs-commands"], it)
		}
	}
	if done < len(keys) {
		out.UnprocessedKeys = map[string]types.KeysAndAttributes{"obs-commands": {Keys: ka.Keys[done:], ConsistentRead: ka.ConsistentRead}}
	}
	return out, nil
}

func (m *memStore) batchWrite(in *dynamodb.BatchWriteItemInput) (*dynamodb.BatchWriteItemOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	reqs := in.RequestItems["obs-commands"]
	var keys []string
	for _, w := range reqs {
		key, _ := str(w.PutRequest.Item, AttrCommandID)
		keys = append(keys, key)
	}
	m.writes = append(m.writes, keys)
	done := len(reqs) - m.left(len(m.writes), len(reqs))
	for _, w := range reqs[:done] {
		key, _ := str(w.PutRequest.Item, AttrCommandID)
		m.items[key] = w.PutRequest.Item
	}
	out := &dynamodb.BatchWriteItemOutput{}
	if done < len(reqs) {
		out.UnprocessedItems = map[string][]types.WriteRequest{"obs-commands": reqs[done:]}
	}
	return out, nil
}

func newBatchTable(t *testing.T, f *ddbfake.DB, clk *testclock.Clock) *Table {
	tbl := newUnitTable(t, f, clk, nil)
	tbl.unprocessed = backoff.Policy{First: time.Millisecond, Max: time.Millisecond}
	return tbl
}

// Peek classifies by Claim's rules: SeenDone exactly where Claim answers the
// same *DuplicateError, Unseen where Claim creates the item, Contended
// wherever Claim would take over, wait, or claim a conflict item.
func TestPeekClassifies(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	here := Claim{CommandID: "c1", Digest: testDigest, Shard: "shardId-1", Sequence: "42", Responder: "slack"}
	elsewhere := here
	elsewhere.Shard, elsewhere.Sequence = "shardId-3", "99"
	done := Record{
		CommandID: "c1", Observer: "obs", Shard: "shardId-1", Sequence: "42", Responder: "slack", Digest: testDigest,
		Status: StatusDone, Verdict: verdict.Executed, Owner: "worker-b", Attempts: 2,
		FirstAttempt: now.Add(-time.Minute), LastAttempt: now.Add(-time.Second), ExpiresAt: now.Add(time.Hour).Truncate(time.Second),
	}
	with := func(r Record, change func(*Record)) Record { change(&r); return r }
	dead := with(done, func(r *Record) { r.Verdict, r.Reason = verdict.DeadLettered, "failed_permanently: 400" })
	live := Record{
		CommandID: "c1", Digest: testDigest, Status: StatusInProgress, Owner: "worker-b", Attempts: 1,
		FirstAttempt: now, LastAttempt: now, ClaimedUntil: now.Add(time.Millisecond),
	}

	tests := []struct {
		name   string
		stored *Record
		claim  Claim
		want   Seen
	}{
		{name: "no item", claim: here, want: Unseen},
		{name: "executed", stored: &done, claim: elsewhere, want: SeenDone},
		{name: "failed", stored: ptr(with(done, func(r *Record) { r.Verdict = verdict.Failed })), claim: elsewhere, want: SeenDone},
		{name: "dead-lettered, redelivered at the same place", stored: &dead, claim: here, want: SeenDone},
		{name: "dead-lettered, replayed elsewhere", stored: &dead, claim: elsewhere, want: Contended},
		{name: "rejected with a digest, same record", stored: ptr(with(dead, func(r *Record) { r.Verdict = verdict.Rejected })), claim: here, want: SeenDone},
		{name: "rejected, another record", stored: ptr(with(dead, func(r *Record) { r.Verdict = verdict.Rejected })), claim: elsewhere, want: Contended},
		{name: "live claim", stored: &live, claim: here, want: Contended},
		{name: "expired claim", stored: ptr(with(live, func(r *Record) { r.ClaimedUntil = now })), claim: here, want: Contended},
		{name: "another command under the id, done", stored: ptr(with(done, func(r *Record) { r.Digest = "d2" })), claim: elsewhere, want: Contended},
		{name: "another command under the id, this one listed", stored: ptr(with(done, func(r *Record) { r.Digest, r.Conflicts = "d2", []string{testDigest} })),
			claim: elsewhere, want: Contended},
		{name: "legacy item without digest, executed", stored: ptr(with(done, func(r *Record) { r.Digest = "" })), claim: elsewhere, want: Contended},
		{name: "Reject's item (no digest), same record", stored: ptr(with(dead, func(r *Record) { r.Digest, r.Verdict = "", verdict.Rejected })), claim: here, want: Contended},
		{name: "unknown status", stored: ptr(with(done, func(r *Record) { r.Status = "paused" })), claim: here, want: Contended},
		{name: "no digest in the claim", claim: Claim{CommandID: "c1"}, want: Contended},
		{name: "no id in the claim", claim: Claim{Digest: testDigest}, want: Contended},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			var stored []map[string]types.AttributeValue
			if tc.stored != nil {
				stored = append(stored, item(*tc.stored, "seen-token"))
			}
			m := newStore(f, stored...)
			f.OnUpdateItem = func(*dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
				return nil, errors.New("takeover (test)")
			}
			tbl := newBatchTable(t, f, clk)
			got, err := tbl.Peek(t.Context(), []Claim{tc.claim})
			if err != nil {
				t.Fatalf("Peek: %v", err)
			}
			if len(got) != 1 || got[0].Seen != tc.want {
				t.Fatalf("Peek = %+v, want %v", got, tc.want)
			}
			if tc.claim.CommandID == "" || tc.claim.Digest == "" {
				if len(m.gets) != 0 {
					t.Errorf("an invalid claim was read: %v", m.gets)
				}
				return
			}
			// What Claim says of the same command.
			claimErr := tbl.Claim(t.Context(), tc.claim)
			switch tc.want {
			case SeenDone:
				var dup *DuplicateError
				if !errors.As(claimErr, &dup) {
					t.Fatalf("Claim = %v, want a *DuplicateError", claimErr)
				}
				if diff := cmp.Diff(dup, got[0].Duplicate); diff != "" {
					t.Errorf("Peek's duplicate differs from Claim's (-claim +peek):\n%s", diff)
				}
			case Unseen:
				if claimErr != nil || !slices.Contains(f.Ops(), "PutItem") || len(m.items) != 1 {
					t.Errorf("Claim = %v, ops %v; want the item created", claimErr, f.Ops())
				}
			default:
				if got[0].Duplicate != nil {
					t.Errorf("Duplicate %v set with %v", got[0].Duplicate, got[0].Seen)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// A claim this Table holds or is taking is Contended, as Claim refuses it,
// even before its item can be read.
func TestPeekHeldClaim(t *testing.T) {
	f := newFake(t)
	m := newStore(f)
	tbl := newBatchTable(t, f, newClock())
	c := Claim{CommandID: "c1", Digest: testDigest, Shard: "s", Sequence: "1"}
	if err := tbl.Claim(t.Context(), c); err != nil {
		t.Fatalf("Claim: %v", err)
	}
	clear(m.items) // as if the claim's write were not visible yet
	got, err := tbl.Peek(t.Context(), []Claim{c, {CommandID: "c1", Digest: "d2"}})
	if err != nil {
		t.Fatalf("Peek: %v", err)
	}
	if got[0].Seen != Contended || got[1].Seen != Unseen {
		t.Errorf("Peek = %+v, want [contended unseen]: only the identity held is refused", got)
	}
}

// Any number of claims, repeated ids among them: one consistent request per
// 100 distinct ids, none holding an id twice; the answer is parallel to
// the claims.
func TestPeekChunks(t *testing.T) {
	clk := newClock()
	var stored []map[string]types.AttributeValue
	for i := 0; i < 230; i += 2 {
		stored = append(stored, item(Record{CommandID: fmt.Sprint("c", i), Digest: testDigest, Status: StatusDone, Verdict: verdict.Executed, Attempts: 1}, ""))
	}
	f := newFake(t)
	m := newStore(f, stored...)
	tbl := newBatchTable(t, f, clk)
	var claims []Claim
	for i := range 230 {
		claims = append(claims, Claim{CommandID: fmt.Sprint("c", i), Digest: testDigest, Shard: "s", Sequence: fmt.Sprint(i)})
		if i%10 == 0 {
			claims = append(claims, claims[len(claims)-1]) // the same id twice
		}
	}
	got, err := tbl.Peek(t.Context(), claims)
	if err != nil {
		t.Fatalf("Peek: %v", err)
	}
	if len(got) != len(claims) {
		t.Fatalf("%d answers for %d claims", len(got), len(claims))
	}
	for i, c := range claims {
		var n int
		_, _ = fmt.Sscanf(c.CommandID, "c%d", &n)
		want := Unseen
		if n%2 == 0 {
			want = SeenDone
		}
		if got[i].Seen != want {
			t.Errorf("claim %d (%s): %v, want %v", i, c.CommandID, got[i].Seen, want)
		}
	}
	var sizes []int
	for _, keys := range m.gets {
		sizes = append(sizes, len(keys))
	}
	if !slices.Equal(sizes, []int{100, 100, 30}) {
		t.Errorf("BatchGetItem sizes %v, want [100 100 30]", sizes)
	}
}

func TestPeekNothing(t *testing.T) {
	f := newFake(t) // no answer set: any call fails the test
	got, err := newBatchTable(t, f, newClock()).Peek(t.Context(), nil)
	if err != nil || len(got) != 0 {
		t.Errorf("Peek(nil) = %v, %v", got, err)
	}
}

// Unprocessed keys are asked again, consistently, until they are answered.
func TestPeekUnprocessed(t *testing.T) {
	var stored []map[string]types.AttributeValue
	var claims []Claim
	for i := range 10 {
		stored = append(stored, item(Record{CommandID: fmt.Sprint("c", i), Digest: testDigest, Status: StatusDone, Verdict: verdict.Executed, Attempts: 1}, ""))
		claims = append(claims, Claim{CommandID: fmt.Sprint("c", i), Digest: testDigest})
	}
	f := newFake(t)
	m := newStore(f, stored...)
	m.leave = func(call, n int) int { return map[int]int{1: 7, 2: 3}[call] }
	got, err := newBatchTable(t, f, newClock()).Peek(t.Context(), claims)
	if err != nil {
		t.Fatalf("Peek: %v", err)
	}
	for i, p := range got {
		if p.Seen != SeenDone {
			t.Errorf("claim %d: %v, want seen_done", i, p.Seen)
		}
	}
	if want := []string{"c3", "c4", "c5", "c6", "c7", "c8", "c9"}; !slices.Equal(m.gets[1], want) {
		t.Errorf("second request %v, want the unprocessed %v", m.gets[1], want)
	}
	if len(m.gets) != 3 || len(m.gets[2]) != 3 {
		t.Errorf("requests %v, want 3, the last of 3 keys", m.gets)
	}
}

// Keys never processed are retried until the caller's context ends.
func TestPeekUnprocessedUntilCancel(t *testing.T) {
	f := newFake(t)
	m := newStore(f)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	m.leave = func(call, n int) int {
		if call == 5 {
			cancel()
		}
		return n
	}
	_, err := newBatchTable(t, f, newClock()).Peek(ctx, []Claim{{CommandID: "c1", Digest: testDigest}})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "unprocessed") {
		t.Errorf("Peek = %v, want context.Canceled after unprocessed keys", err)
	}
	if len(m.gets) != 5 {
		t.Errorf("%d requests, want 5", len(m.gets))
	}
}

func TestPeekError(t *testing.T) {
	f := newFake(t)
	f.OnBatchGetItem = func(*dynamodb.BatchGetItemInput) (*dynamodb.BatchGetItemOutput, error) {
		return nil, apiErr("InternalServerError")
	}
	_, err := newBatchTable(t, f, newClock()).Peek(t.Context(), []Claim{{CommandID: "c1", Digest: testDigest}})
	if err == nil || !strings.Contains(err.Error(), "InternalServerError") || !strings.Contains(err.Error(), "obs-commands") {
		t.Errorf("Peek = %v, want the table's error", err)
	}
}

// RecordDone's item is the one Claim then Finish leave, without a claim.
func TestRecordDoneItem(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	f := newFake(t)
	m := newStore(f)
	tbl := newBatchTable(t, f, clk)
	first := now.Add(-3 * time.Second)
	d := Done{
		Claim: Claim{CommandID: "c1", Digest: testDigest, Schema: "iglu:a/b/jsonschema/1-0-0", Shard: "shardId-1", Sequence: "42", Responder: "slack"},
		Final: Final{Verdict: verdict.DeadLettered, Attempts: 1, FirstAttempt: first, LastAttempt: now.Add(-time.Second), Reason: "failed_permanently: 400"},
	}
	bare := Done{Claim: Claim{CommandID: "c2", Digest: testDigest}, Final: Final{Verdict: verdict.Executed}}
	if err := tbl.RecordDone(t.Context(), []Done{d, bare}); err != nil {
		t.Fatalf("RecordDone: %v", err)
	}
	want := &Record{
		CommandID: "c1", Observer: "obs", Shard: "shardId-1", Sequence: "42", Responder: "slack",
		Digest: testDigest, Schema: "iglu:a/b/jsonschema/1-0-0",
		Status: StatusDone, Verdict: verdict.DeadLettered, Reason: "failed_permanently: 400", Owner: "worker-a", Attempts: 1,
		FirstAttempt: first, LastAttempt: now.Add(-time.Second), ExpiresAt: now.Add(48 * time.Hour).Truncate(time.Second),
	}
	if diff := cmp.Diff(want, parseRecord(m.items["c1"])); diff != "" {
		t.Errorf("item (-want +got):\n%s", diff)
	}
	for _, attr := range []string{attrToken, attrClaimedUntil} {
		if _, ok := m.items["c1"][attr]; ok {
			t.Errorf("item has %s", attr)
		}
	}
	if day, _ := str(m.items["c1"], AttrSearchDay); day != tbl.searchDay(first) {
		t.Errorf("searchDay %q, want %q", day, tbl.searchDay(first))
	}
	// Times and attempts left zero: one attempt, now, as Claim counts it.
	wantBare := &Record{
		CommandID: "c2", Observer: "obs", Digest: testDigest, Status: StatusDone, Verdict: verdict.Executed,
		Owner: "worker-a", Attempts: 1, FirstAttempt: now, LastAttempt: now, ExpiresAt: now.Add(48 * time.Hour).Truncate(time.Second),
	}
	if diff := cmp.Diff(wantBare, parseRecord(m.items["c2"])); diff != "" {
		t.Errorf("item without times (-want +got):\n%s", diff)
	}
	// Peek sees them done, and Claim answers them as duplicates.
	got, err := tbl.Peek(t.Context(), []Claim{d.Claim, bare.Claim})
	if err != nil || got[0].Seen != SeenDone || got[1].Seen != SeenDone {
		t.Fatalf("Peek = %+v, %v; want seen_done", got, err)
	}
	if err := tbl.Claim(t.Context(), d.Claim); !errors.Is(err, ErrDuplicate) {
		t.Errorf("Claim = %v, want a duplicate", err)
	}
}

// At most 25 puts per request and a key once per request; a key given twice
// keeps the later outcome.
func TestRecordDoneChunks(t *testing.T) {
	f := newFake(t)
	m := newStore(f)
	tbl := newBatchTable(t, f, newClock())
	var done []Done
	for i := range 60 {
		done = append(done, Done{Claim: Claim{CommandID: fmt.Sprint("c", i), Digest: testDigest}, Final: Final{Verdict: verdict.Executed}})
	}
	// c5 again within the first 25, with another outcome.
	done = slices.Insert(done, 10, Done{Claim: Claim{CommandID: "c5", Digest: "d2"}, Final: Final{Verdict: verdict.DeadLettered}})
	if err := tbl.RecordDone(t.Context(), done); err != nil {
		t.Fatalf("RecordDone: %v", err)
	}
	var sizes []int
	for _, keys := range m.writes {
		sizes = append(sizes, len(keys))
	}
	if !slices.Equal(sizes, []int{10, 25, 25, 1}) {
		t.Errorf("BatchWriteItem sizes %v, want [10 25 25 1]", sizes)
	}
	if len(m.items) != 60 {
		t.Errorf("%d items, want 60", len(m.items))
	}
	if rec := parseRecord(m.items["c5"]); rec.Digest != "d2" || rec.Verdict != verdict.DeadLettered {
		t.Errorf("c5 = %+v, want the later outcome", rec)
	}
}

func TestRecordDoneNothing(t *testing.T) {
	f := newFake(t) // no answer set: any call fails the test
	if err := newBatchTable(t, f, newClock()).RecordDone(t.Context(), nil); err != nil {
		t.Errorf("RecordDone(nil) = %v", err)
	}
}

func TestRecordDoneInvalid(t *testing.T) {
	f := newFake(t) // no answer set: nothing may be written
	tbl := newBatchTable(t, f, newClock())
	err := tbl.RecordDone(t.Context(), []Done{
		{Claim: Claim{CommandID: "ok", Digest: testDigest}, Final: Final{Verdict: verdict.Executed}},
		{Claim: Claim{CommandID: "c1"}, Final: Final{Verdict: verdict.Executed}},
		{Claim: Claim{CommandID: "c2", Digest: testDigest}, Final: Final{Verdict: verdict.Duplicate}},
	})
	if err == nil || !strings.Contains(err.Error(), "c1: empty digest") || !strings.Contains(err.Error(), `c2: unknown verdict "duplicate"`) {
		t.Errorf("RecordDone = %v, want both problems named", err)
	}
}

// Unprocessed writes are sent again until they are processed, or until the
// caller's context ends.
func TestRecordDoneUnprocessed(t *testing.T) {
	f := newFake(t)
	m := newStore(f)
	m.leave = func(call, n int) int { return map[int]int{1: 20, 2: 5}[call] }
	tbl := newBatchTable(t, f, newClock())
	var done []Done
	for i := range 25 {
		done = append(done, Done{Claim: Claim{CommandID: fmt.Sprint("c", i), Digest: testDigest}, Final: Final{Verdict: verdict.Executed}})
	}
	if err := tbl.RecordDone(t.Context(), done); err != nil {
		t.Fatalf("RecordDone: %v", err)
	}
	if len(m.items) != 25 || len(m.writes) != 3 || len(m.writes[1]) != 20 || len(m.writes[2]) != 5 {
		t.Errorf("%d items written by requests %v, want 25 by 25, 20, 5", len(m.items), m.writes)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	m.writes = nil
	m.leave = func(call, n int) int {
		if call == 4 {
			cancel()
		}
		return n
	}
	err := tbl.RecordDone(ctx, done[:1])
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "unprocessed") {
		t.Errorf("RecordDone = %v, want context.Canceled after unprocessed items", err)
	}
	if len(m.writes) != 4 {
		t.Errorf("%d requests, want 4", len(m.writes))
	}
}

func TestWriteBatches(t *testing.T) {
	got := writeBatches([]string{"a", "b", "a", "c", "a", "d", "e"}, 3)
	want := [][]int{{0, 1}, {2, 3}, {4, 5, 6}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("batches (-want +got):\n%s", diff)
	}
}
