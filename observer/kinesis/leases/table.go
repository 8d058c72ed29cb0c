// Package leases is the DynamoDB lease table of a Kinesis observer: an
// implementation of the KCL's checkpoint.Checkpointer
// (github.com/vmware/vmware-go-kcl-v2) that keeps the library's item layout
// but closes the gaps of its own DynamoCheckpoint:
//
//   - Init creates the table on demand (PAY_PER_REQUEST), waits until it is
//     ACTIVE, tolerates a concurrent creator, and binds the table to one
//     stream so that a changed stream name under the same observer id is
//     refused instead of inheriting foreign checkpoints.
//   - Checkpoints are fenced on the lease (owner and exact lease timeout): a
//     worker whose lease was taken over gets ErrLeaseLost instead of silently
//     moving the checkpoint back.
//   - Renewal updates only the lease attributes, so it never overwrites a
//     checkpoint written concurrently.
//   - A child shard's lease is refused until its parent and adjacent parent
//     are finished (SHARD_END) or trimmed, which keeps per-key order across
//     splits and merges.
//   - Every AWS call has a deadline.
//   - A shard this worker released after a record stopped without an
//     outcome (Abandon) is taken back by it only after a backoff that
//     grows with each such release (retake.go).
//
// The table holds one item per shard, keyed by ShardID, with the KCL's
// attributes (AssignedTo, LeaseTimeout, Checkpoint, ParentShardId,
// ClaimRequest) and the handoff attributes HandoffTo and HandoffAt. Besides, sauna keeps items of its own, whose ShardID
// contains '#' (IsLeaseKey): the metadata item "sauna#stream" that records
// the stream and when the observer first started on it, and one census item
// per live worker (see balance.go).
package leases

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
	par "github.com/vmware/vmware-go-kcl-v2/clientlibrary/partition"

	"github.com/sauna-io/sauna/observer/ddbtable"
)

// Item attributes. The shard attributes are the KCL's own, so that its worker
// logic reads our items unchanged.
const (
	attrShardID    = checkpoint.LeaseKeyKey       // ShardID
	attrOwner      = checkpoint.LeaseOwnerKey     // AssignedTo
	attrTimeout    = checkpoint.LeaseTimeoutKey   // LeaseTimeout
	attrCheckpoint = checkpoint.SequenceNumberKey // Checkpoint
	attrParent     = checkpoint.ParentShardIdKey  // ParentShardId
	attrClaim      = checkpoint.ClaimRequestKey   // ClaimRequest
	attrStream     = "StreamName"
	attrStarted    = "StartedAt" // RFC 3339, UTC: the first start against this table

	// MetadataKey is the ShardID of the item that binds the table to its
	// stream and records the first start. Kinesis shard ids look like
	// "shardId-000000000000"; '#' never occurs in them, and every lease path
	// (scan, lease, removal) skips this key.
	MetadataKey = "sauna#stream"
)

// Defaults for the zero values of Config.
const (
	DefaultLeaseDuration     = 10 * time.Second // the KCL's FailoverTimeMillis default
	DefaultCallTimeout       = 10 * time.Second
	DefaultTableWaitTimeout  = 2 * time.Minute
	DefaultShardListTTL      = 5 * time.Second
	DefaultClaimTimeout      = 2 * time.Minute // the KCL's LeaseStealingClaimTimeoutMillis
	DefaultLeaseSyncInterval = 1 * time.Minute // the KCL's LeaseSyncingIntervalMillis
	unknownShardRefreshGap   = 1 * time.Second // ListShards again for an unknown shard at most this often
)

// Config configures a Table.
type Config struct {
	TableName     string        // the observer id, already validated as a DynamoDB table name
	StreamName    string        // the stream this table belongs to
	WorkerID      string        // must equal the KCL's WorkerID
	LeaseDuration time.Duration // the KCL's FailoverTimeMillis; 0 means DefaultLeaseDuration
	CallTimeout   time.Duration // deadline of every DynamoDB and Kinesis call; 0 means DefaultCallTimeout
	Logger        *slog.Logger  // nil means slog.Default()

	// OnAvailable, if set, is called when a shard this worker does not hold
	// may be taken: FetchCheckpoint found it unowned or its lease expired,
	// or this worker released it. It must not block.
	OnAvailable func()
	// OnAcquired, if set, is called after this worker acquired a lease,
	// before GetLease returns. The KCL takes one lease per shard-sync pass;
	// the observer uses this to start the next pass without waiting. It must
	// not block.
	OnAcquired func()

	// Optional tuning; zero values take the defaults above.
	TableWaitTimeout  time.Duration // how long Init waits for the table to become ACTIVE
	ShardListTTL      time.Duration // how stale the cached ListShards result may get
	ClaimTimeout      time.Duration // lease stealing: age past lease expiry at which a claim lapses
	LeaseSyncInterval time.Duration // lease stealing: minimum period between table scans

	// Scale-out (see balance.go).
	Balance         bool          // ask overloaded peers for leases, and take no more than this worker's share
	MaxLeases       int           // most leases this worker holds; 0: no cap
	TakesPerPass    int           // most handoffs asked for per balance pass; 0 means DefaultTakesPerPass
	BalanceInterval time.Duration // period of the census scan while anything changes; 0 means DefaultBalanceInterval
	// BalanceMaxInterval is the longest period of the census scan, reached
	// by doubling while scans find nothing changed; 0 means
	// DefaultBalanceMaxInterval.
	BalanceMaxInterval time.Duration
	HandoffTimeout     time.Duration // an unanswered request is withdrawn after this; 0 means DefaultHandoffTimeout
	// OnHandoff, if set, is told of every lease this worker hands over
	// ("graceful") or takes over expired from a live-looking owner
	// ("expired"). It must not block.
	OnHandoff func(kind string)

	// Retake backoff (see retake.go): the first wait before this worker
	// takes back a shard it released after a record stopped without an
	// outcome (Abandon), doubled with each further release up to the max.
	// Zero values take DefaultRetakeBackoff and DefaultRetakeBackoffMax;
	// a max below the first wait is raised to it.
	RetakeBackoff, RetakeBackoffMax time.Duration
}

// ShardLister is the part of *kinesis.Client the table uses.
type ShardLister interface {
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
}

// Table is a checkpoint.Checkpointer over one DynamoDB table. It is safe for
// concurrent use by the KCL worker's event loop and its shard consumers.
type Table struct {
	db  ddbtable.Client
	kin ShardLister
	cfg Config
	log *slog.Logger
	now func() time.Time

	// Poll delays of Init's wait for ACTIVE; zero means ddbtable's defaults.
	waitMinDelay, waitMaxDelay time.Duration

	mu            sync.Mutex
	started       time.Time
	initialized   bool // Init succeeded once
	slots         map[string]*slot
	lastLeaseSync time.Time
	view          View               // the last census scan
	leaving       bool               // Leave was called: released leases go to peers
	given         map[string]int     // leases reserved for each peer while leaving
	scans         scanPace           // when the balancer scans next (balance.go)
	retakes       map[string]*retake // shards released by Abandon, by id (retake.go)

	shards shardCache
}

var _ checkpoint.Checkpointer = (*Table)(nil)

// New returns a Table; nothing is called until Init.
func New(db ddbtable.Client, kin ShardLister, cfg Config) *Table {
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	if cfg.TableWaitTimeout <= 0 {
		cfg.TableWaitTimeout = DefaultTableWaitTimeout
	}
	if cfg.ShardListTTL <= 0 {
		cfg.ShardListTTL = DefaultShardListTTL
	}
	if cfg.ClaimTimeout <= 0 {
		cfg.ClaimTimeout = DefaultClaimTimeout
	}
	if cfg.LeaseSyncInterval <= 0 {
		cfg.LeaseSyncInterval = DefaultLeaseSyncInterval
	}
	if cfg.TakesPerPass <= 0 {
		cfg.TakesPerPass = DefaultTakesPerPass
	}
	if cfg.BalanceInterval <= 0 {
		cfg.BalanceInterval = DefaultBalanceInterval
	}
	if cfg.BalanceMaxInterval < cfg.BalanceInterval {
		cfg.BalanceMaxInterval = max(DefaultBalanceMaxInterval, cfg.BalanceInterval)
	}
	if cfg.HandoffTimeout <= 0 {
		cfg.HandoffTimeout = DefaultHandoffTimeout
	}
	if cfg.RetakeBackoff <= 0 {
		cfg.RetakeBackoff = DefaultRetakeBackoff
	}
	if cfg.RetakeBackoffMax <= 0 {
		cfg.RetakeBackoffMax = DefaultRetakeBackoffMax
	}
	cfg.RetakeBackoffMax = max(cfg.RetakeBackoffMax, cfg.RetakeBackoff)
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Table{
		db:    db,
		kin:   kin,
		cfg:   cfg,
		log:   log.With("table", cfg.TableName),
		now:   time.Now,
		slots: make(map[string]*slot),
		scans: scanPace{kick: make(chan struct{}, 1)},
	}
}

// Started is when an observer first initialised this table for its stream,
// known after a successful Init. It is written once (put-if-absent) and then
// only read, so it serves as a persisted epoch that means the same on every
// restart and every worker (e.g. to turn LATEST into AT_TIMESTAMP). It is not
// the table's creation time: a table created ahead of time (infrastructure
// as code) would otherwise make LATEST replay everything written since.
func (t *Table) Started() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.started
}

// Init makes sure the table exists, is ACTIVE and belongs to the configured
// stream. Once it has succeeded, later calls return at once: the KCL calls
// it again in Worker.Start, right after the observer's own call, and the
// table and its binding cannot have changed in between in a way a second
// look would catch any better than the lease writes that follow.
func (t *Table) Init() error {
	t.mu.Lock()
	done := t.initialized
	t.mu.Unlock()
	if done {
		return nil
	}
	switch {
	case t.cfg.TableName == "":
		return errors.New("lease table: empty table name")
	case t.cfg.StreamName == "":
		return fmt.Errorf("lease table %q: empty stream name", t.cfg.TableName)
	case t.cfg.WorkerID == "":
		return fmt.Errorf("lease table %q: empty worker id", t.cfg.TableName)
	}
	desc, err := ddbtable.Ensure(context.Background(), t.db, ddbtable.Spec{
		Name:    t.cfg.TableName,
		Kind:    "lease table",
		HashKey: attrShardID,
		// e.g. a table of another KCL flavour, whose items would not fit ours.
		Refusal: "not a lease table of this kind",
		// A table created by the KCL itself has 10/10 provisioned capacity;
		// throttled renewals then lose leases (duplicates).
		ThrottleCost: "throttling can cost leases",
		CallTimeout:  t.cfg.CallTimeout,
		WaitTimeout:  t.cfg.TableWaitTimeout,
		MinDelay:     t.waitMinDelay,
		MaxDelay:     t.waitMaxDelay,
		Logger:       t.log,
	})
	if err != nil {
		return err
	}
	started, err := t.bindStream(aws.ToTime(desc.CreationDateTime))
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.started = started
	t.initialized = true
	t.mu.Unlock()
	return nil
}

// bindStream records the stream and the first start in the metadata item, or
// checks the stream already recorded and returns the recorded start.
func (t *Table) bindStream(tableCreated time.Time) (time.Time, error) {
	now := t.now().UTC()
	var e expr
	cond := "attribute_not_exists(" + e.name(attrShardID) + ")"
	ctx, cancel := t.callCtx()
	_, err := t.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: aws.String(t.cfg.TableName),
		Item: map[string]types.AttributeValue{
			attrShardID: s(MetadataKey),
			attrStream:  s(t.cfg.StreamName),
			attrStarted: s(formatTimeout(now)),
		},
		ConditionExpression:      aws.String(cond),
		ExpressionAttributeNames: e.Names,
	})
	cancel()
	if err == nil {
		t.log.Info("lease table bound to the stream", "started_at", now) // the logger names the stream
		return now, nil
	}
	if !isConditionFailed(err) {
		return time.Time{}, fmt.Errorf("lease table %q: bind to stream %q: %w", t.cfg.TableName, t.cfg.StreamName, err)
	}
	item, err := t.getItem(MetadataKey)
	if err != nil {
		return time.Time{}, fmt.Errorf("lease table %q: read stream binding: %w", t.cfg.TableName, err)
	}
	bound, _ := str(item, attrStream)
	if bound != t.cfg.StreamName {
		return time.Time{}, &StreamMismatchError{Table: t.cfg.TableName, Bound: bound, Want: t.cfg.StreamName}
	}
	if _, ok := item[attrStarted]; !ok {
		// Bound by a version that kept no start: its epoch was the table's
		// creation, so keep that rather than skip what it would have read.
		return t.recordStart(tableCreated)
	}
	return t.parseStarted(item)
}

// recordStart adds the start to a metadata item that has none, unless a
// concurrent Init did so first, and returns the start that holds.
func (t *Table) recordStart(at time.Time) (time.Time, error) {
	var e expr
	_, err := t.update(&dynamodb.UpdateItemInput{
		Key:                       map[string]types.AttributeValue{attrShardID: s(MetadataKey)},
		UpdateExpression:          aws.String("SET " + e.name(attrStarted) + " = " + e.value("started", formatTimeout(at))),
		ConditionExpression:       aws.String("attribute_exists(" + e.name(attrShardID) + ") AND attribute_not_exists(" + e.name(attrStarted) + ")"),
		ExpressionAttributeNames:  e.Names,
		ExpressionAttributeValues: e.Values,
	})
	if err == nil {
		return at.UTC(), nil
	}
	if !isConditionFailed(err) {
		return time.Time{}, fmt.Errorf("lease table %q: record first start: %w", t.cfg.TableName, err)
	}
	item, err := t.getItem(MetadataKey)
	if err != nil {
		return time.Time{}, fmt.Errorf("lease table %q: read first start: %w", t.cfg.TableName, err)
	}
	return t.parseStarted(item)
}

func (t *Table) parseStarted(item map[string]types.AttributeValue) (time.Time, error) {
	v, _ := str(item, attrStarted)
	ts, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("lease table %q: item %q: attribute %s %q is not an RFC 3339 time", t.cfg.TableName, MetadataKey, attrStarted, v)
	}
	return ts, nil
}

// callCtx bounds one AWS call: the KCL passes no context, and an unbounded
// call would block a shard consumer, and with it Worker.Shutdown, for ever.
func (t *Table) callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), t.cfg.CallTimeout)
}

// getItem is a consistent read; a missing item is an empty map.
func (t *Table) getItem(shardID string) (map[string]types.AttributeValue, error) {
	ctx, cancel := t.callCtx()
	defer cancel()
	return ddbtable.GetItem(ctx, t.db, t.cfg.TableName, attrShardID, shardID)
}

func (t *Table) getRow(shardID string) (row, error) {
	item, err := t.getItem(shardID)
	if err != nil {
		return row{}, err
	}
	return parseRow(item), nil
}

func (t *Table) update(in *dynamodb.UpdateItemInput) (*dynamodb.UpdateItemOutput, error) {
	in.TableName = aws.String(t.cfg.TableName)
	ctx, cancel := t.callCtx()
	defer cancel()
	return t.db.UpdateItem(ctx, in)
}

// row is a lease item as read. Presence matters as much as value: conditions
// must name exactly the state that was read.
type row struct {
	exists                           bool
	owner, timeout, checkpoint       string
	parent, claim, handoff           string
	hasOwner, hasTimeout, hasCheckpt bool
}

func parseRow(item map[string]types.AttributeValue) row {
	r := row{exists: len(item) > 0}
	r.owner, r.hasOwner = str(item, attrOwner)
	r.timeout, r.hasTimeout = str(item, attrTimeout)
	r.checkpoint, r.hasCheckpt = str(item, attrCheckpoint)
	r.parent, _ = str(item, attrParent)
	r.claim, _ = str(item, attrClaim)
	r.handoff, _ = str(item, attrHandoffTo)
	return r
}

// leaseTimeout parses LeaseTimeout; ok is false when it is absent or
// unreadable.
func (r row) leaseTimeout() (time.Time, bool) {
	if !r.hasTimeout {
		return time.Time{}, false
	}
	ts, err := time.Parse(time.RFC3339Nano, r.timeout)
	return ts, err == nil
}

// Short names for the attribute helpers that every request here uses.
var (
	s                 = ddbtable.S
	str               = ddbtable.Str
	isConditionFailed = ddbtable.IsConditionFailed
)

// expr is a ddbtable.Expr whose values are strings, as every lease attribute
// is.
type expr struct{ ddbtable.Expr }

func (e *expr) name(attr string) string { return e.Name(attr) }

func (e *expr) value(key, v string) string { return e.Value(key, s(v)) }

func formatTimeout(ts time.Time) string { return ts.UTC().Format(time.RFC3339Nano) }

// shardLog returns the logger for one shard.
func (t *Table) shardLog(shardID string) *slog.Logger { return t.log.With("shard", shardID) }

// setShard runs f with the shard's lock held.
func setShard(shard *par.ShardStatus, f func(*par.ShardStatus)) {
	shard.Mux.Lock()
	defer shard.Mux.Unlock()
	f(shard)
}
