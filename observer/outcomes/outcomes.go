// Package outcomes is the idempotency table of a Kinesis observer: one
// DynamoDB item per command that is first a claim (the command is being
// executed by one worker) and then the command's outcome (verdict, attempts,
// reason), which `sauna outcome` prints. A command rejected before any
// responder ran is recorded too (Reject), when its commandId was readable.
//
// The table has one global secondary index, IndexByDay: items keyed by
// observer and UTC day of their first attempt, sorted by that time, which
// `sauna outcomes` queries (Search) without ever scanning the table.
//
// An item stores nothing its other attributes already say, since every
// attribute costs on each write, and the index copies each item whole: the
// observer is read from searchDay, and a last attempt in the first one's
// millisecond is left out and read as the first. Items of older versions,
// which stored both, read as before.
//
// A command is identified by its commandId and the digest of what it asks
// (responders.Digest): producers written for Sauna, which never
// de-duplicated, may give one id to several commands. The first command seen
// under an id has the item keyed by the bare id; it records its digest and
// schema. A different command under the same id (a conflict) runs as a
// command of its own, in an item keyed "<commandId>#<digest>", and its digest
// is added to the conflicts set of the first item, so that Lookup finds
// every command recorded under the id. A command's item key is therefore a
// function of its identity and of whether it came first: a claim costs one
// conditional PutItem unless the id is already taken, and a batched claim can
// put many first items with the same condition and fall back to Claim for the
// ones that fail.
//
// Items written before digests were recorded have none. Such an item is taken
// to be the same command as whatever arrives under its id, so an upgrade
// never runs a command again; the first claim that takes it over (an expired
// claim, a replayed dead letter) records its digest.
//
// Commands that no worker can have started yet (the caller knows which) need
// no claim: Peek reads the items of many at once (BatchGetItem) and
// classifies each by Claim's own rules: Unseen (no item under the id: run
// it), SeenDone (Claim would answer a duplicate) or Contended (take a claim).
// RecordDone then writes the outcomes of those run without a claim in bulk
// (BatchWriteItem): items equal to what Claim and Finish leave, without a
// claim token, which everything here reads as it reads claimed ones. Nothing
// fences such a run in the table, so it can run twice: when it was in flight
// at a crash or a lost lease (the next owner runs it again at once), or when
// its id was read on two shards by two processes at the same moment (between
// one's Peek and the other's recorded outcome; two different commands under
// one id in that window leave one item, the later outcome).
//
// Every claim's state change is a single conditional write: dynalite, the
// local emulator, has no transactions, and none are needed because each item
// is only ever changed by the worker whose claim token it carries. The token
// is drawn from a random per-Table nonce and the record claimed, so a worker
// whose claim expired and was taken over cannot extend it or write an
// outcome over the new owner's, even when both run under the same worker id
// (a restarted process); and a worker that tries a claim again after losing
// the answer to a write that landed finds its own token and goes on, instead
// of waiting the claim out as another worker's. Finish leaves the token on
// the done item, so that a Finish tried again after its landed write's
// answer was lost tells its own outcome from a takeover (finishedBefore).
//
// Lifecycle of an item:
//
//	absent --Claim--> in_progress --Finish--> done
//	absent --RecordDone--> done (run without a claim: Peek saw no item)
//	in_progress (claim expired: crash mid-call) --Claim--> in_progress (new token, attempts go on)
//	in_progress --Release--> in_progress, expired at once (next Claim takes over)
//	done, verdict dead_lettered, seen again at another shard/sequence (a replay) --Claim--> in_progress
//
// Claim applies this to the item of the command's identity: a command whose
// id's item holds another digest never takes that item over.
//
// A done item is otherwise final: Claim reports it as a *DuplicateError.
// Items expire through DynamoDB TTL on expiresAt (epoch seconds), Retention
// after the last write; a command redelivered after that runs again. Adding
// a conflict to the first item renews its expiry, so it outlives the
// conflicting command's claim.
//
// Claim expiry compares the claimer's clock with the taker's: clocks must
// agree to well within ClaimTimeout.
package outcomes

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/sauna-io/sauna/observer/backoff"
	"github.com/sauna-io/sauna/observer/ddbtable"
	"github.com/sauna-io/sauna/observer/verdict"
)

// Item attributes.
const (
	AttrCommandID    = "commandId" // the hash key: the commandId, or "<commandId>#<digest>" for a conflict
	AttrExpiresAt    = "expiresAt" // the TTL attribute, epoch seconds
	attrObserver     = "observer"  // written by Reject and older versions; elsewhere searchDay holds it (observerOf)
	attrShard        = "shard"
	attrSequence     = "sequence"
	attrResponder    = "responder"
	attrStatus       = "status"
	attrVerdict      = "verdict"
	attrReason       = "reason"
	attrOwner        = "owner"
	attrToken        = "claimToken"
	attrClaimedUntil = "claimedUntil" // epoch milliseconds
	attrAttempts     = "attempts"
	attrFirstAttempt = "firstAttempt" // RFC 3339, UTC, fixed width: the index's range key
	attrLastAttempt  = "lastAttempt"  // RFC 3339, UTC; absent when equal to firstAttempt
	attrDigest       = "digest"       // responders.Digest of the command; absent in older items
	attrSchema       = "schema"       // the inner command's schema URI
	attrConflicts    = "conflicts"    // string set of the other digests under the id, on the first item
	// AttrSearchDay is IndexByDay's hash key: the observer id, "#", and the
	// UTC day (2006-01-02) of the first attempt.
	AttrSearchDay = "searchDay"
)

// IndexByDay is the global secondary index Search queries.
const IndexByDay = "byDay"

// Item statuses.
const (
	StatusInProgress = "in_progress"
	StatusDone       = "done"
)

// Defaults for the zero values of Config.
const (
	DefaultRetention        = 7 * 24 * time.Hour
	DefaultClaimTimeout     = 2 * time.Minute
	DefaultCallTimeout      = 10 * time.Second
	DefaultTableWaitTimeout = 2 * time.Minute
	// maxClaimRounds bounds Claim when the item keeps changing between its
	// read and its conditional write; every round means another worker made
	// progress, so giving up as "claimed elsewhere" is accurate.
	maxClaimRounds = 4
)

var (
	// ErrDuplicate is matched (errors.Is) by a *DuplicateError.
	ErrDuplicate = errors.New("command already done")

	// ErrClaimedElsewhere means another claim on the command is live: another
	// worker, or another record of this worker carrying the same commandId, is
	// executing it. From Claim: do not execute now; try again later. From
	// Extend or Finish: this worker's claim was taken over after it expired;
	// stop executing, the new owner decides the outcome.
	ErrClaimedElsewhere = errors.New("command claimed by another worker")

	// ErrNotFound means the table holds no item for the command.
	ErrNotFound = errors.New("command not found")

	// ErrNotClaimed means Extend or Finish was called for a command this
	// Table does not hold a claim on: a bug in the caller.
	ErrNotClaimed = errors.New("command not claimed by this worker")
)

// DuplicateError is Claim's answer for a command that is already done.
type DuplicateError struct {
	Record *Record
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("command %s already done (verdict %s, %d attempts)", e.Record.CommandID, e.Record.Verdict, e.Record.Attempts)
}

// Is makes errors.Is(err, ErrDuplicate) true.
func (e *DuplicateError) Is(target error) bool { return target == ErrDuplicate }

// Identity is what the table knows a command by: its commandId and the
// digest of what it asks (responders.Digest).
type Identity struct {
	CommandID, Digest string
}

// Conflict is a command whose commandId the table already holds for a
// different command. Both run.
type Conflict struct {
	Claim Claim   // the command now claimed
	Other *Record // the first command recorded under the id, as read
}

// Config configures a Table.
type Config struct {
	TableName    string        // the caller's default is "<observer id>-commands"
	Observer     string        // the observer id, recorded in each item
	WorkerID     string        // recorded as the owner of claims; required by Claim
	Retention    time.Duration // TTL window after the last write; 0 means DefaultRetention
	ClaimTimeout time.Duration // life of a claim without Extend; 0 means DefaultClaimTimeout
	CallTimeout  time.Duration // deadline of every DynamoDB call; 0 means DefaultCallTimeout
	Logger       *slog.Logger  // nil means slog.Default()
	Now          func() time.Time

	// OnConflict, if set, is called from Claim once per conflicting command:
	// when the item of a command whose id was taken is first created, before
	// Claim returns.
	OnConflict func(Conflict)

	// TableWaitTimeout bounds Init's wait for the table to become ACTIVE; 0
	// means DefaultTableWaitTimeout.
	TableWaitTimeout time.Duration
}

// Claim identifies one delivery of a command.
type Claim struct {
	CommandID string
	Digest    string // responders.Digest of the command; required
	Schema    string // the inner command's schema URI, recorded and named in conflicts
	Shard     string
	Sequence  string
	Responder string
}

// Identity is the command's identity.
func (c Claim) Identity() Identity { return Identity{CommandID: c.CommandID, Digest: c.Digest} }

// conflictKey is the item key of a command whose id was taken by another.
func conflictKey(id Identity) string { return id.CommandID + "#" + id.Digest }

// Final is a command's outcome.
type Final struct {
	// Verdict is verdict.Executed, Failed, DeadLettered or Rejected (expired
	// while retrying); never Duplicate, which leaves the first outcome.
	Verdict verdict.Outcome
	// Attempts, FirstAttempt and LastAttempt may be left zero: the table
	// counts attempts itself (Claim and Extend each count one) and keeps the
	// first attempt's time across takeovers. Values given are merged in: the
	// larger count, the earlier first and the later last attempt win.
	Attempts                  int
	FirstAttempt, LastAttempt time.Time
	Reason                    string // why it failed or was dead-lettered; never secrets
}

// Record is one item as stored, with what the item leaves out filled in:
// Observer from searchDay, LastAttempt from FirstAttempt. Times are zero
// when absent; ClaimedUntil is only meaningful while Status is
// StatusInProgress.
type Record struct {
	CommandID, Observer, Shard, Sequence, Responder string
	Status, Reason, Owner                           string
	// Verdict is set once Status is StatusDone.
	Verdict verdict.Outcome
	// Digest and Schema are empty in items of versions that did not record
	// them.
	Digest, Schema string
	// Conflict is true for a command whose id was already taken by another
	// command; Conflicts, on the first command's record, lists the digests of
	// those others.
	Conflict                  bool
	Conflicts                 []string
	Attempts                  int
	FirstAttempt, LastAttempt time.Time
	ClaimedUntil, ExpiresAt   time.Time
}

// Table is the claims and outcomes table of one worker. It is safe for
// concurrent use. Every successful Claim must end with Finish or Release:
// until then the Table treats the command as held by this worker and
// refuses further claims on it.
type Table struct {
	db  ddbtable.Client
	cfg Config
	log *slog.Logger
	now func() time.Time

	// Poll delays of Init's wait for ACTIVE; zero means ddbtable's defaults.
	waitMinDelay, waitMaxDelay time.Duration
	// unprocessed spaces the retries of batch requests' unprocessed keys.
	unprocessed backoff.Policy

	mu   sync.Mutex
	held map[Identity]*claimState
	// nonce makes this Table's claim tokens its own (see claimToken).
	nonce [16]byte
}

// claimState is what this worker knows of a claim it holds or is taking.
// A nil token marks a claim being taken: other callers in this process must
// not race it.
type claimState struct {
	key          string // the item's key
	token        string
	attempts     int
	first, last  time.Time
	pendingClaim bool
	created      bool // the claim created the item
}

// New returns a Table; nothing is called until Init or the first request.
func New(db ddbtable.Client, cfg Config) *Table {
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.ClaimTimeout <= 0 {
		cfg.ClaimTimeout = DefaultClaimTimeout
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.TableWaitTimeout <= 0 {
		cfg.TableWaitTimeout = DefaultTableWaitTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	t := &Table{
		db:   db,
		cfg:  cfg,
		log:  log.With("table", cfg.TableName),
		now:  now,
		held: make(map[Identity]*claimState),

		unprocessed: unprocessedBackoff,
	}
	_, _ = rand.Read(t.nonce[:]) // never fails (crypto/rand)
	return t
}

// Name is the DynamoDB table name.
func (t *Table) Name() string { return t.cfg.TableName }

// Claim marks the command as being executed by this worker. It returns nil
// (execute it), a *DuplicateError (already done: skip it), or
// ErrClaimedElsewhere (a live claim exists: wait and call Claim again). A
// claim whose holder crashed mid-call is taken over once it expires, and a
// dead-lettered command delivered from another shard or sequence number (a
// replay) is claimed again; in both cases the attempt count goes on. All of
// this is per identity: a command whose id is held by a different command
// (another digest) is claimed as a command of its own, reported to
// Config.OnConflict.
func (t *Table) Claim(ctx context.Context, c Claim) error {
	if c.CommandID == "" {
		return errors.New("outcomes: claim: empty command id")
	}
	if c.Digest == "" {
		return fmt.Errorf("outcomes: claim %s: empty digest", c.CommandID)
	}
	if t.cfg.WorkerID == "" {
		return fmt.Errorf("outcomes table %q: claim: empty worker id", t.cfg.TableName)
	}
	id := c.Identity()
	if !t.reserve(id) {
		return ErrClaimedElsewhere
	}
	st, err := t.claim(ctx, c)
	t.mu.Lock()
	if err != nil {
		delete(t.held, id)
	} else {
		t.held[id] = st
	}
	t.mu.Unlock()
	return err
}

// reserve marks the command as being claimed by this process, so that two
// records of one command (same identity) never race each other here (one of
// them could otherwise take over the other's expired claim and hand it the
// new token). Records of different commands under one id proceed: the table
// tells them apart.
func (t *Table) reserve(id Identity) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.held[id]; ok {
		return false
	}
	t.held[id] = &claimState{pendingClaim: true}
	return true
}

// claim claims the id's item, or, when that holds another command, the
// command's own conflict item.
func (t *Table) claim(ctx context.Context, c Claim) (*claimState, error) {
	for range maxClaimRounds {
		st, other, err := t.claimAt(ctx, c, c.CommandID)
		if other == nil {
			return st, err
		}
		if !slices.Contains(other.Conflicts, c.Digest) {
			// Listed before the conflict item exists, so that no command
			// recorded under the id is ever missing from Lookup.
			err := t.addConflict(ctx, c, other)
			if isConditionFailed(err) {
				continue // the item expired, and maybe came back, meanwhile
			}
			if err != nil {
				return nil, fmt.Errorf("outcomes table %q: claim %s: list conflict: %w", t.cfg.TableName, c.CommandID, err)
			}
		}
		st, _, err = t.claimAt(ctx, c, conflictKey(c.Identity()))
		if err == nil && st.created && t.cfg.OnConflict != nil {
			t.cfg.OnConflict(Conflict{Claim: c, Other: other})
		}
		return st, err
	}
	return nil, ErrClaimedElsewhere
}

// claimAt claims the item at key for c. At the id's own key it returns,
// instead, the record found there when that is another command's.
func (t *Table) claimAt(ctx context.Context, c Claim, key string) (*claimState, *Record, error) {
	tok := t.claimToken(key, c)
	for range maxClaimRounds {
		now := t.now()
		st, err := t.putNew(ctx, key, c, now, tok)
		if err == nil {
			return st, nil, nil
		}
		if !isConditionFailed(err) {
			return nil, nil, fmt.Errorf("outcomes table %q: claim %s: %w", t.cfg.TableName, key, err)
		}
		item, err := t.getItem(ctx, key)
		if err != nil {
			return nil, nil, fmt.Errorf("outcomes table %q: claim %s: read: %w", t.cfg.TableName, key, err)
		}
		stand, rec := judge(item, c, tok, now)
		switch stand {
		case standAbsent:
			continue // expired by TTL between the two calls
		case standOther:
			if key == c.CommandID {
				return nil, rec, nil
			}
			return nil, nil, fmt.Errorf("outcomes table %q: claim %s: item holds digest %s", t.cfg.TableName, key, rec.Digest)
		case standDuplicate:
			return nil, nil, &DuplicateError{Record: rec}
		case standOwn:
			return &claimState{key: key, token: tok, attempts: rec.Attempts, first: rec.FirstAttempt,
				last: rec.LastAttempt, created: rec.Attempts == 1}, nil, nil
		case standLive:
			return nil, nil, ErrClaimedElsewhere
		case standUnknown:
			return nil, nil, fmt.Errorf("outcomes table %q: claim %s: item has unknown status %q", t.cfg.TableName, key, rec.Status)
		}
		seenToken, hasToken := str(item, attrToken)
		st, err = t.takeOver(ctx, key, c, rec, seenToken, hasToken, now, tok)
		if err == nil {
			return st, nil, nil
		}
		if !isConditionFailed(err) {
			return nil, nil, fmt.Errorf("outcomes table %q: claim %s: take over: %w", t.cfg.TableName, key, err)
		}
		// Someone else moved first; look again.
	}
	return nil, nil, ErrClaimedElsewhere
}

// standing is what Claim makes of the item it reads at a command's key.
type standing int

const (
	standAbsent    standing = iota // no item: create it
	standOther                     // another command's (another digest)
	standDuplicate                 // done for good, or this very record's outcome: a *DuplicateError
	standOwn                       // this Table's claim of the record, landed though its answer was lost
	standLive                      // someone else's live claim: ErrClaimedElsewhere
	standTakeOver                  // an expired claim, or a dead-lettered or rejected command delivered from another record
	standUnknown                   // a status this version does not know
)

// judge is the one place that decides what an item means for a delivery of
// c: Claim acts on it, and Peek classifies by it, so that the two never
// disagree. tok is the token this Table claims c's record with, now the
// claimer's time.
func judge(item map[string]types.AttributeValue, c Claim, tok string, now time.Time) (standing, *Record) {
	if len(item) == 0 {
		return standAbsent, nil
	}
	rec := parseRecord(item)
	if rec.Digest != "" && rec.Digest != c.Digest {
		return standOther, rec
	}
	switch rec.Status {
	case StatusDone:
		// A dead-lettered or rejected command never ran to success: one
		// delivered again from elsewhere (a replay, a resend after a fix)
		// may run.
		if !reopenable(rec.Verdict) || (rec.Shard == c.Shard && rec.Sequence == c.Sequence) {
			return standDuplicate, rec
		}
	case StatusInProgress:
		if seen, _ := str(item, attrToken); seen == tok {
			// Our own write, landed though its answer was lost: the claim
			// is ours, with no wait for its expiry.
			return standOwn, rec
		}
		if rec.ClaimedUntil.After(now) {
			return standLive, rec
		}
	default:
		return standUnknown, rec
	}
	return standTakeOver, rec
}

// addConflict lists c's digest on other's item, the first command under the
// id, and renews that item's expiry so that it outlives c's claim.
func (t *Table) addConflict(ctx context.Context, c Claim, other *Record) error {
	var u ddbtable.Update
	u.Add(attrConflicts, &types.AttributeValueMemberSS{Value: []string{c.Digest}})
	u.Set(AttrExpiresAt, n(t.now().Add(t.cfg.Retention).Unix()))
	cond := u.Name(attrDigest) + " = " + u.Value("seenDigest", s(other.Digest))
	_, err := t.updateItem(ctx, c.CommandID, &u, cond, types.ReturnValueNone)
	return err
}

func (t *Table) putNew(ctx context.Context, key string, c Claim, now time.Time, tok string) (*claimState, error) {
	item := t.newItem(key, c, now)
	item[attrStatus] = s(StatusInProgress)
	item[attrToken] = s(tok)
	item[attrClaimedUntil] = millis(now.Add(t.cfg.ClaimTimeout))
	item[attrAttempts] = n(1)
	// lastAttempt is now, which is firstAttempt: left out (see parseRecord).
	item[AttrExpiresAt] = n(now.Add(t.cfg.Retention).Unix())
	var e ddbtable.Expr
	ctx, cancel := t.callCtx(ctx)
	defer cancel()
	_, err := t.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName:                aws.String(t.cfg.TableName),
		Item:                     item,
		ConditionExpression:      aws.String("attribute_not_exists(" + e.Name(AttrCommandID) + ")"),
		ExpressionAttributeNames: e.Names,
	})
	if err != nil {
		return nil, err
	}
	return &claimState{key: key, token: tok, attempts: 1, first: now, last: now, created: true}, nil
}

// newItem is what the first write of c's item at key records of it: its
// identity, where it was read, who runs it, and when it was first attempted
// (where Search finds it). The observer is not written: searchDay holds it
// (observerOf), and every attribute an item does without is work saved on
// each of the thousands of outcome writes a second a busy table takes.
func (t *Table) newItem(key string, c Claim, first time.Time) map[string]types.AttributeValue {
	// Sized for the whole item its callers complete (a done item has 15
	// attributes at most): an outcome write builds thousands of these a
	// second, and a map that grows while filled is rebuilt on the way.
	item := make(map[string]types.AttributeValue, itemAttrs)
	item[AttrCommandID] = s(key)
	item[attrDigest] = s(c.Digest)
	item[attrOwner] = s(t.cfg.WorkerID)
	item[attrFirstAttempt] = s(formatTime(first))
	item[AttrSearchDay] = s(t.searchDay(first))
	// DynamoDB Local and older emulators reject empty strings; an absent
	// attribute reads back as "" anyway.
	for _, a := range [...]struct{ name, v string }{
		{attrShard, c.Shard}, {attrSequence, c.Sequence}, {attrResponder, c.Responder},
		{attrSchema, c.Schema},
	} {
		if a.v != "" {
			item[a.name] = s(a.v)
		}
	}
	return item
}

// itemAttrs is the most attributes newItem's callers give an item.
const itemAttrs = 15

// takeOver replaces an expired claim, or reopens a dead-lettered command, in
// one write fenced on exactly the state that was read.
// An item without a digest gets c's.
func (t *Table) takeOver(ctx context.Context, key string, c Claim, rec *Record, seenToken string, hasToken bool, now time.Time, tok string) (*claimState, error) {
	var u ddbtable.Update
	u.Set(attrDigest, s(c.Digest))
	u.SetOrRemove(attrSchema, c.Schema)
	// Where the first attempt puts it, as for a new item; an item written
	// before the index existed joins it here.
	u.Set(AttrSearchDay, s(t.searchDay(earliest(rec.FirstAttempt, now))))
	u.Set(attrStatus, s(StatusInProgress))
	u.Set(attrOwner, s(t.cfg.WorkerID))
	u.Set(attrToken, s(tok))
	u.Set(attrClaimedUntil, millis(now.Add(t.cfg.ClaimTimeout)))
	u.SetExpr(attrAttempts, "if_not_exists(%s, %s) + %s", u.Name(attrAttempts), u.Value("zero", n(0)), u.Value("one", n(1)))
	u.SetExpr(attrFirstAttempt, "if_not_exists(%s, %s)", u.Name(attrFirstAttempt), u.Value("now", s(formatTime(now))))
	u.Set(attrLastAttempt, s(formatTime(now)))
	u.Set(AttrExpiresAt, n(now.Add(t.cfg.Retention).Unix()))
	// searchDay, set above, names this observer: an observer attribute of
	// an older item or of a rejection would only contradict it.
	u.Remove(attrObserver)
	u.SetOrRemove(attrShard, c.Shard)
	u.SetOrRemove(attrSequence, c.Sequence)
	u.SetOrRemove(attrResponder, c.Responder)
	u.Remove(attrVerdict)
	u.Remove(attrReason)

	var cond string
	if hasToken {
		cond = u.Name(attrToken) + " = " + u.Value("seenToken", s(seenToken))
	} else {
		cond = "attribute_not_exists(" + u.Name(attrToken) + ")"
	}
	cond += " AND (attribute_not_exists(" + u.Name(attrDigest) + ") OR " + u.Name(attrDigest) + " = " + u.Value("digest", s(c.Digest)) + ")"
	if rec.Status == StatusInProgress {
		// Not just the token: the holder may have extended its claim since
		// the read, which keeps the token.
		cond += " AND " + u.Name(attrStatus) + " = " + u.Value("inProgress", s(StatusInProgress)) +
			" AND " + u.Name(attrClaimedUntil) + " <= " + u.Value("nowMillis", millis(now))
	} else {
		cond += " AND " + u.Name(attrStatus) + " = " + u.Value("done", s(StatusDone)) +
			" AND " + u.Name(attrVerdict) + " IN (" + u.Value("deadLettered", s(string(verdict.DeadLettered))) +
			", " + u.Value("rejected", s(string(verdict.Rejected))) + ")"
	}
	out, err := t.updateItem(ctx, key, &u, cond, types.ReturnValueAllNew)
	if err != nil {
		return nil, err
	}
	got := parseRecord(out.Attributes)
	if rec.Status == StatusInProgress {
		t.log.Info("took over an expired claim", "command_id", c.CommandID, "digest", c.Digest,
			"previous_owner", rec.Owner, "claimed_until", rec.ClaimedUntil, "attempts", got.Attempts)
	} else {
		t.log.Info("claimed a "+string(rec.Verdict)+" command again", "command_id", c.CommandID, "digest", c.Digest,
			"shard", c.Shard, "sequence", c.Sequence, "attempts", got.Attempts)
	}
	return &claimState{key: key, token: tok, attempts: got.Attempts, first: got.FirstAttempt, last: now}, nil
}

// Extend renews this worker's claim for one more attempt (counted), for
// ClaimTimeout from now. ErrClaimedElsewhere means the claim expired and was
// taken over: stop, the new owner decides the outcome.
func (t *Table) Extend(ctx context.Context, id Identity) error {
	key, tok, ok := t.token(id)
	if !ok {
		return fmt.Errorf("outcomes: extend %s: %w", id.CommandID, ErrNotClaimed)
	}
	now := t.now()
	var u ddbtable.Update
	u.Set(attrClaimedUntil, millis(now.Add(t.cfg.ClaimTimeout)))
	u.SetExpr(attrAttempts, "if_not_exists(%s, %s) + %s", u.Name(attrAttempts), u.Value("zero", n(0)), u.Value("one", n(1)))
	u.Set(attrLastAttempt, s(formatTime(now)))
	u.Set(AttrExpiresAt, n(now.Add(t.cfg.Retention).Unix()))
	out, err := t.updateItem(ctx, key, &u, t.fence(&u, tok), types.ReturnValueAllNew)
	if isConditionFailed(err) {
		t.drop(id, tok)
		return ErrClaimedElsewhere
	}
	if err != nil {
		return fmt.Errorf("outcomes table %q: extend %s: %w", t.cfg.TableName, key, err)
	}
	got := parseRecord(out.Attributes)
	t.mu.Lock()
	if st, ok := t.held[id]; ok && st.token == tok {
		st.attempts = got.Attempts
		st.last = now
	}
	t.mu.Unlock()
	return nil
}

// Finish records the command's outcome and ends this worker's claim. It is
// fenced on the claim: ErrClaimedElsewhere means the claim was taken over
// and the outcome was not written. A Finish called again after an earlier
// one of the claim landed but lost its answer returns nil: the item, done
// under this claim's token, is read to tell the two apart
// (finishedBefore). A transient error leaves the claim held, so Finish may
// be called again (or Release).
func (t *Table) Finish(ctx context.Context, id Identity, f Final) error {
	if !final(f.Verdict) {
		return fmt.Errorf("outcomes: finish %s: unknown verdict %q", id.CommandID, f.Verdict)
	}
	t.mu.Lock()
	st, ok := t.held[id]
	var held claimState
	if ok && !st.pendingClaim {
		held = *st
	}
	t.mu.Unlock()
	if !ok || held.token == "" {
		return fmt.Errorf("outcomes: finish %s: %w", id.CommandID, ErrNotClaimed)
	}
	now := t.now()
	attempts := max(held.attempts, f.Attempts)
	first := earliest(held.first, f.FirstAttempt)
	last := latest(held.last, f.LastAttempt)

	var u ddbtable.Update
	u.Set(attrStatus, s(StatusDone))
	u.Set(attrVerdict, s(string(f.Verdict)))
	u.SetOrRemove(attrReason, f.Reason)
	u.Set(attrAttempts, n(int64(attempts)))
	if !first.IsZero() {
		u.Set(attrFirstAttempt, s(formatTime(first)))
	}
	switch {
	case !first.IsZero() && sameMilli(first, last):
		// As RecordDone leaves it: read back as the first attempt.
		u.Remove(attrLastAttempt)
	case !last.IsZero():
		u.Set(attrLastAttempt, s(formatTime(last)))
	}
	u.Set(AttrExpiresAt, n(now.Add(t.cfg.Retention).Unix()))
	u.Remove(attrClaimedUntil)
	_, err := t.updateItem(ctx, held.key, &u, t.fence(&u, held.token), types.ReturnValueNone)
	if isConditionFailed(err) {
		err = t.finishedBefore(ctx, id, held)
	} else if err != nil {
		return fmt.Errorf("outcomes table %q: finish %s: %w", t.cfg.TableName, held.key, err)
	}
	if err == nil || errors.Is(err, ErrClaimedElsewhere) {
		t.drop(id, held.token)
	}
	return err
}

// finishedBefore tells, after Finish's fenced write found the item no
// longer held by this claim, whether an earlier Finish of the same claim
// landed though its answer was lost (a timeout, a dropped connection):
// the item is then done and still carries this claim's token, which only
// this claim writes and Finish leaves in place, while a takeover writes
// its own. That is success, not a claim taken over: the caller must not
// have the command and its key's next one run again for it. It returns
// ErrClaimedElsewhere when another claim holds or finished the item (or
// it expired by TTL), and a read error as a transient one, keeping the
// claim, so that Finish may be called again.
func (t *Table) finishedBefore(ctx context.Context, id Identity, held claimState) error {
	item, err := t.getItem(ctx, held.key)
	if err != nil {
		return fmt.Errorf("outcomes table %q: finish %s: read after the claim's fence failed: %w", t.cfg.TableName, held.key, err)
	}
	if len(item) == 0 {
		return ErrClaimedElsewhere
	}
	rec := parseRecord(item)
	tok, _ := str(item, attrToken)
	if rec.Status != StatusDone || tok != held.token || rec.Digest != "" && rec.Digest != id.Digest {
		return ErrClaimedElsewhere
	}
	t.log.Info("the outcome of a claimed command was recorded by an earlier try whose answer was lost",
		"command_id", id.CommandID, "digest", id.Digest, "verdict", rec.Verdict)
	return nil
}

// final reports whether v is a verdict an item records (Final.Verdict).
func final(v verdict.Outcome) bool {
	switch v {
	case verdict.Executed, verdict.Failed, verdict.DeadLettered, verdict.Rejected:
		return true
	}
	return false
}

// Release gives up this worker's claim without an outcome (shutdown, lost
// shard lease), so that the next delivery is claimed at once instead of after
// ClaimTimeout. The attempt count is kept. The local claim is forgotten even
// when the write fails; the claim then simply expires. A claim already taken
// over is not an error.
func (t *Table) Release(ctx context.Context, id Identity) error {
	key, tok, ok := t.token(id)
	if !ok {
		return nil
	}
	defer t.drop(id, tok)
	var u ddbtable.Update
	u.Set(attrClaimedUntil, millis(t.now()))
	_, err := t.updateItem(ctx, key, &u, t.fence(&u, tok), types.ReturnValueNone)
	if err == nil || isConditionFailed(err) {
		return nil
	}
	return fmt.Errorf("outcomes table %q: release %s: %w", t.cfg.TableName, key, err)
}

// Lookup reads (consistently) every command recorded under commandID: the
// first one, then those that reused its id, in the order of their first
// attempt. ErrNotFound when there is none.
func (t *Table) Lookup(ctx context.Context, commandID string) ([]*Record, error) {
	first, err := t.Get(ctx, commandID)
	if err != nil {
		return nil, err
	}
	recs := []*Record{first}
	var others []*Record
	for _, d := range first.Conflicts {
		key := conflictKey(Identity{CommandID: commandID, Digest: d})
		item, err := t.getItem(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("outcomes table %q: get %s: %w", t.cfg.TableName, key, err)
		}
		// Absent: listed by a claim that stopped before creating it.
		if len(item) > 0 {
			others = append(others, parseRecord(item))
		}
	}
	slices.SortStableFunc(others, func(a, b *Record) int { return a.FirstAttempt.Compare(b.FirstAttempt) })
	return append(recs, others...), nil
}

// Get reads the item of the first command recorded under commandID
// (consistently); Lookup reads every command under the id. ErrNotFound when
// there is none.
func (t *Table) Get(ctx context.Context, commandID string) (*Record, error) {
	item, err := t.getItem(ctx, commandID)
	if err != nil {
		return nil, fmt.Errorf("outcomes table %q: get %s: %w", t.cfg.TableName, commandID, err)
	}
	if len(item) == 0 {
		return nil, fmt.Errorf("outcomes table %q: %s: %w", t.cfg.TableName, commandID, ErrNotFound)
	}
	return parseRecord(item), nil
}

// fence is the condition of every write by the claim holder.
func (t *Table) fence(u *ddbtable.Update, tok string) string {
	return u.Name(attrToken) + " = " + u.Value("token", s(tok)) +
		" AND " + u.Name(attrStatus) + " = " + u.Value("inProgress", s(StatusInProgress))
}

// token returns the item key and token of the claim held for id.
func (t *Table) token(id Identity) (string, string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.held[id]
	if !ok || st.pendingClaim {
		return "", "", false
	}
	return st.key, st.token, true
}

// drop forgets the claim if it is still the one with tok.
func (t *Table) drop(id Identity, tok string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st, ok := t.held[id]; ok && !st.pendingClaim && st.token == tok {
		delete(t.held, id)
	}
}

// callCtx bounds one DynamoDB call within the caller's context.
func (t *Table) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, t.cfg.CallTimeout)
}

func (t *Table) getItem(ctx context.Context, key string) (map[string]types.AttributeValue, error) {
	ctx, cancel := t.callCtx(ctx)
	defer cancel()
	return ddbtable.GetItem(ctx, t.db, t.cfg.TableName, AttrCommandID, key)
}

func (t *Table) updateItem(ctx context.Context, key string, u *ddbtable.Update, cond string, rv types.ReturnValue) (*dynamodb.UpdateItemOutput, error) {
	ctx, cancel := t.callCtx(ctx)
	defer cancel()
	return t.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 aws.String(t.cfg.TableName),
		Key:                       map[string]types.AttributeValue{AttrCommandID: s(key)},
		UpdateExpression:          aws.String(u.Expression()),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeNames:  u.Names,
		ExpressionAttributeValues: u.Values,
		ReturnValues:              rv,
	})
}

func parseRecord(item map[string]types.AttributeValue) *Record {
	r := &Record{}
	r.CommandID, _ = str(item, AttrCommandID)
	r.Digest, _ = str(item, attrDigest)
	r.Schema, _ = str(item, attrSchema)
	if r.Digest != "" {
		r.CommandID, r.Conflict = strings.CutSuffix(r.CommandID, "#"+r.Digest)
	}
	if v, ok := item[attrConflicts].(*types.AttributeValueMemberSS); ok {
		r.Conflicts = slices.Sorted(slices.Values(v.Value))
	}
	r.Observer, _ = str(item, attrObserver)
	if r.Observer == "" {
		day, _ := str(item, AttrSearchDay)
		r.Observer = observerOf(day)
	}
	r.Shard, _ = str(item, attrShard)
	r.Sequence, _ = str(item, attrSequence)
	r.Responder, _ = str(item, attrResponder)
	r.Status, _ = str(item, attrStatus)
	v, _ := str(item, attrVerdict)
	r.Verdict = verdict.Outcome(v)
	r.Reason, _ = str(item, attrReason)
	r.Owner, _ = str(item, attrOwner)
	if v, ok := num(item, attrAttempts); ok {
		r.Attempts = int(v)
	}
	r.FirstAttempt = parseTime(item, attrFirstAttempt)
	r.LastAttempt = parseTime(item, attrLastAttempt)
	if _, ok := item[attrLastAttempt]; !ok {
		// Left out where it equals the first attempt; items of older
		// versions always have both or neither.
		r.LastAttempt = r.FirstAttempt
	}
	if v, ok := num(item, attrClaimedUntil); ok {
		r.ClaimedUntil = time.UnixMilli(v).UTC()
	}
	if v, ok := num(item, AttrExpiresAt); ok {
		r.ExpiresAt = time.Unix(v, 0).UTC()
	}
	return r
}

// observerOf is the observer id in a searchDay value ("<observer>#<day>"),
// "" when day is not one.
func observerOf(day string) string {
	const dayLen = len(time.DateOnly)
	i := len(day) - dayLen - 1
	if i < 0 || day[i] != '#' {
		return ""
	}
	if _, err := time.Parse(time.DateOnly, day[i+1:]); err != nil {
		return ""
	}
	return day[:i]
}

func parseTime(item map[string]types.AttributeValue, name string) time.Time {
	v, ok := str(item, name)
	if !ok {
		return time.Time{}
	}
	ts, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}
	}
	return ts.UTC()
}

// Short names for the attribute helpers that every request here uses.
var (
	s                 = ddbtable.S
	n                 = ddbtable.N
	str               = ddbtable.Str
	num               = ddbtable.Num
	isConditionFailed = ddbtable.IsConditionFailed
)

func millis(ts time.Time) types.AttributeValue { return n(ts.UnixMilli()) }

// formatTime keeps milliseconds, the precision of claimedUntil, so that the
// times shown side by side agree.
func formatTime(ts time.Time) string { return ts.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// sameMilli reports whether a and b are stored as the same time: formatTime
// keeps milliseconds, truncated.
func sameMilli(a, b time.Time) bool {
	return a.Truncate(time.Millisecond).Equal(b.Truncate(time.Millisecond))
}

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

func latest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.After(b):
		return a
	}
	return b
}

// claimToken is the token of this Table's claims of one record at key: the
// same for every try, so that a claim write that landed though its answer
// was lost (a timeout, a dropped connection) is recognised as ours when the
// claim is tried again, instead of being waited out as another worker's.
// Another process (another nonce), another record or another key gets
// another token; within this process reserve keeps one record from being
// claimed twice at once.
func (t *Table) claimToken(key string, c Claim) string {
	h := sha256.New()
	h.Write(t.nonce[:])
	for _, part := range []string{key, c.Shard, c.Sequence} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
