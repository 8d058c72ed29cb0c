package outcomes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sauna-io/sauna/observer/backoff"
	"github.com/sauna-io/sauna/observer/ddbtable"
)

// Seen is what Peek makes of a command: whether it may run without a claim.
type Seen int

const (
	// Unseen: no item holds the command's id.
	Unseen Seen = iota
	// SeenDone: Claim would answer *DuplicateError (same identity, done; not
	// a replay).
	SeenDone
	// Contended: anything else (a claim, live or expired; another command
	// under the id; a dead letter delivered from another record; an item
	// without digest; a claim this Table holds or is taking): take a claim.
	Contended
)

func (s Seen) String() string {
	switch s {
	case Unseen:
		return "unseen"
	case SeenDone:
		return "seen_done"
	case Contended:
		return "contended"
	}
	return fmt.Sprintf("Seen(%d)", int(s))
}

// Peeked is Peek's answer for one claim.
type Peeked struct {
	Seen      Seen
	Duplicate *DuplicateError // set with SeenDone: what Claim would return
}

// unprocessedBackoff spaces the retries of keys and items a batch request
// left unprocessed (DynamoDB throttled part of it, or the answer grew too
// large), as DynamoDB asks.
var unprocessedBackoff = backoff.Policy{First: 50 * time.Millisecond, Max: 2 * time.Second}

// Peek classifies claims (any number, duplicates allowed) with consistent
// BatchGetItem calls of at most 100 distinct keys, retrying unprocessed keys
// with backoff until ctx ends; each call has CallTimeout. The result is
// parallel to claims. It reads the items Claim reads first, and judges them
// by Claim's rules: Unseen only where no item exists under the bare id,
// SeenDone only where Claim would answer a *DuplicateError (the same one),
// Contended everywhere else. A claim Claim would refuse outright (no id, no
// digest) is Contended without a read, so that Claim reports it.
//
// A Peek is true when it is read: a claim, or a recorded outcome, may come
// right after it.
func (t *Table) Peek(ctx context.Context, claims []Claim) ([]Peeked, error) {
	res := make([]Peeked, len(claims))
	var keys []string
	for i, c := range claims {
		res[i].Seen = Contended
		if c.CommandID != "" && c.Digest != "" {
			keys = append(keys, c.CommandID)
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys) // DynamoDB refuses a key twice in one request
	items := make(map[string]map[string]types.AttributeValue, len(keys))
	for chunk := range slices.Chunk(keys, ddbtable.MaxBatchGet) {
		if err := t.batchGet(ctx, chunk, items); err != nil {
			return nil, err
		}
	}
	now := t.now()
	for i, c := range claims {
		if c.CommandID == "" || c.Digest == "" {
			continue
		}
		res[i] = t.peeked(items[c.CommandID], c, now)
	}
	return res, nil
}

// peeked classifies c by judge, which Claim decides by, on the item under
// its bare id.
func (t *Table) peeked(item map[string]types.AttributeValue, c Claim, now time.Time) Peeked {
	t.mu.Lock()
	_, held := t.held[c.Identity()]
	t.mu.Unlock()
	if held {
		return Peeked{Seen: Contended} // Claim refuses it while held
	}
	// judge reads the claim token only of an item it finds, and in a
	// drain hardly any id has one: hashing a token for every id was most
	// of a Peek's CPU outside its request.
	var tok string
	if len(item) != 0 {
		tok = t.claimToken(c.CommandID, c)
	}
	stand, rec := judge(item, c, tok, now)
	switch {
	case stand == standAbsent:
		return Peeked{Seen: Unseen}
	case stand == standDuplicate && rec.Digest != "":
		return Peeked{Seen: SeenDone, Duplicate: &DuplicateError{Record: rec}}
	}
	// Claim takes an item without a digest for the command's own; whether it
	// is, only the command that wrote it knew, so such an item is left to
	// Claim (it exists only within Retention of an upgrade, or for Reject).
	return Peeked{Seen: Contended}
}

// batchGet reads the items of keys (at most 100, distinct) into items.
func (t *Table) batchGet(ctx context.Context, keys []string, items map[string]map[string]types.AttributeValue) error {
	req := make([]map[string]types.AttributeValue, len(keys))
	for i, k := range keys {
		req[i] = map[string]types.AttributeValue{AttrCommandID: s(k)}
	}
	for attempt := 1; ; attempt++ {
		cctx, cancel := t.callCtx(ctx)
		out, err := t.db.BatchGetItem(cctx, &dynamodb.BatchGetItemInput{
			RequestItems: map[string]types.KeysAndAttributes{
				// Consistent: a command must not run because an outcome
				// recorded a moment ago was not read.
				t.cfg.TableName: {Keys: req, ConsistentRead: aws.Bool(true)},
			},
		})
		cancel()
		if err != nil {
			return fmt.Errorf("outcomes table %q: peek %d ids: %w", t.cfg.TableName, len(req), err)
		}
		for _, item := range out.Responses[t.cfg.TableName] {
			if key, ok := str(item, AttrCommandID); ok {
				items[key] = item
			}
		}
		req = out.UnprocessedKeys[t.cfg.TableName].Keys
		if len(req) == 0 {
			return nil
		}
		if !backoff.Sleep(ctx, t.unprocessed.Delay(attempt)) {
			return fmt.Errorf("outcomes table %q: peek: %d ids left unprocessed: %w", t.cfg.TableName, len(req), context.Cause(ctx))
		}
	}
}

// Done is a command run without a claim, and its outcome.
type Done struct {
	Claim Claim
	Final Final
}

// RecordDone records commands run without a claim: each one's item is what
// Claim and then Finish would have left (status done, the verdict, attempts,
// the first and last attempt, this worker as owner, where the command was
// read, its digest and schema, the expiry), without a claim token. It puts
// the items with BatchWriteItem, at most 25 per request and a key at most
// once per request (a later Done of the same key goes into a later request,
// so that the last one given stays), retrying unprocessed items with backoff
// until ctx ends; each call has CallTimeout.
//
// The puts are unconditional: RecordDone is for commands Peek saw Unseen, so
// the item is new unless another process recorded the same id meanwhile,
// which the later write wins. Nothing here keeps a worker that lost the
// lease its command ran under from putting its outcome over the claim or
// outcome of the next owner, which claims the command again: the caller
// writes only while it holds that lease, and ends the call at the lease's
// fence (command.Batcher); after that it writes the outcome with
// RecordDoneIfAbsent. An invalid Done fails the whole call before
// anything is written; any other error may leave some items written, and
// writing them again is harmless.
func (t *Table) RecordDone(ctx context.Context, done []Done) error {
	if len(done) == 0 {
		return nil
	}
	if t.cfg.WorkerID == "" {
		return fmt.Errorf("outcomes table %q: record: empty worker id", t.cfg.TableName)
	}
	now := t.now()
	puts := make([]types.WriteRequest, len(done))
	keys := make([]string, len(done))
	var errs []error
	for i, d := range done {
		if err := checkDone(i, d); err != nil {
			errs = append(errs, err)
			continue
		}
		keys[i] = d.Claim.CommandID
		puts[i] = types.WriteRequest{PutRequest: &types.PutRequest{Item: t.doneItem(d, now)}}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, batch := range writeBatches(keys, ddbtable.MaxBatchWrite) {
		req := make([]types.WriteRequest, len(batch))
		for j, i := range batch {
			req[j] = puts[i]
		}
		if err := t.batchWrite(ctx, req); err != nil {
			return err
		}
	}
	return nil
}

// ErrItemExists is RecordDoneIfAbsent's answer when an item holds the
// command's id already.
var ErrItemExists = errors.New("an item holds the command's id already")

// RecordDoneIfAbsent records one command run without a claim, as RecordDone
// would (the same item), but only where no item holds its id: a single
// PutItem conditioned on the id's absence, with CallTimeout, not retried.
// It is for an outcome its writer may no longer put unconditionally: the
// worker lost the shard lease the command ran under, and the shard's next
// owner may have claimed the command (or recorded it) since. Where an item
// exists it stays, and the answer matches ErrItemExists (errors.Is): that
// owner's claim or outcome, or this worker's own earlier write, whose
// answer may have been lost.
func (t *Table) RecordDoneIfAbsent(ctx context.Context, d Done) error {
	if t.cfg.WorkerID == "" {
		return fmt.Errorf("outcomes table %q: record: empty worker id", t.cfg.TableName)
	}
	if err := checkDone(0, d); err != nil {
		return err
	}
	var e ddbtable.Expr
	ctx, cancel := t.callCtx(ctx)
	defer cancel()
	_, err := t.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                aws.String(t.cfg.TableName),
		Item:                     t.doneItem(d, t.now()),
		ConditionExpression:      aws.String("attribute_not_exists(" + e.Name(AttrCommandID) + ")"),
		ExpressionAttributeNames: e.Names,
	})
	if isConditionFailed(err) {
		return fmt.Errorf("outcomes table %q: record %s: %w", t.cfg.TableName, d.Claim.CommandID, ErrItemExists)
	}
	if err != nil {
		return fmt.Errorf("outcomes table %q: record %s: %w", t.cfg.TableName, d.Claim.CommandID, err)
	}
	return nil
}

// checkDone refuses a Done no item can be written for; i is its place in
// a RecordDone call.
func checkDone(i int, d Done) error {
	c := d.Claim
	switch {
	case c.CommandID == "":
		return fmt.Errorf("outcomes: record done %d: empty command id", i)
	case c.Digest == "":
		return fmt.Errorf("outcomes: record %s: empty digest", c.CommandID)
	case !final(d.Final.Verdict):
		return fmt.Errorf("outcomes: record %s: unknown verdict %q", c.CommandID, d.Final.Verdict)
	}
	return nil
}

// doneItem is the item Claim and Finish would leave for d, claimed when it
// was first attempted, recorded at now.
func (t *Table) doneItem(d Done, now time.Time) map[string]types.AttributeValue {
	f := d.Final
	first := earliest(f.FirstAttempt, f.LastAttempt)
	if first.IsZero() {
		first = now
	}
	item := t.newItem(d.Claim.CommandID, d.Claim, first)
	item[attrStatus] = s(StatusDone)
	item[attrVerdict] = s(string(f.Verdict))
	if f.Reason != "" {
		item[attrReason] = s(f.Reason)
	}
	// A claim counts one attempt.
	item[attrAttempts] = n(int64(max(f.Attempts, 1)))
	// Stored to the millisecond (formatTime truncates): a last attempt in
	// the first one's millisecond is left out, and read back as the first.
	if last := latest(first, f.LastAttempt); !sameMilli(first, last) {
		item[attrLastAttempt] = s(formatTime(last))
	}
	item[AttrExpiresAt] = n(now.Add(t.cfg.Retention).Unix())
	return item
}

// writeBatches splits the indexes of keys into requests of at most limit,
// none holding a key twice. Each index goes into the request being filled
// unless that is full or holds its key already, so the requests, written in
// order, leave each key with its last item.
func writeBatches(keys []string, limit int) [][]int {
	var batches [][]int
	var in map[string]bool
	for i, k := range keys {
		if len(batches) == 0 || len(batches[len(batches)-1]) == limit || in[k] {
			batches = append(batches, nil)
			in = make(map[string]bool, limit)
		}
		batches[len(batches)-1] = append(batches[len(batches)-1], i)
		in[k] = true
	}
	return batches
}

// batchWrite writes req (at most 25 writes, distinct keys) until every one
// is processed.
func (t *Table) batchWrite(ctx context.Context, req []types.WriteRequest) error {
	for attempt := 1; ; attempt++ {
		cctx, cancel := t.callCtx(ctx)
		out, err := t.db.BatchWriteItem(cctx, &dynamodb.BatchWriteItemInput{
			RequestItems: map[string][]types.WriteRequest{t.cfg.TableName: req},
		})
		cancel()
		if err != nil {
			return fmt.Errorf("outcomes table %q: record %d outcomes: %w", t.cfg.TableName, len(req), err)
		}
		req = out.UnprocessedItems[t.cfg.TableName]
		if len(req) == 0 {
			return nil
		}
		if !backoff.Sleep(ctx, t.unprocessed.Delay(attempt)) {
			return fmt.Errorf("outcomes table %q: record: %d outcomes left unprocessed: %w", t.cfg.TableName, len(req), context.Cause(ctx))
		}
	}
}
