// Package command takes one command read by an observer to its final
// outcome: prepare the record (decode it, resolve the responder that serves
// it, digest it), settle it at once if the idempotency ledger holds it done,
// take its claim unless it may run without one, attempt it (the only place
// that waits and retries), and settle it (the ledger's outcome, a dead
// letter, metrics and the report). It knows of its source only what Runner
// holds: the observer's names, the lease its records are read under, and
// where outcomes go; admitting records, checking them in the ledger in bulk
// (Prepared.Peeked), ordering them and checkpointing are the source's
// (observer/kinesis).
//
// A command the ledger had never seen when its source checked it (fresh:
// PeekFresh) runs without a claim, fenced by the source's lease alone,
// unless this process is running a command under its id (it waits, then
// claims it) or recorded one within 2*PeekFresh (Memory); its outcome is written in bulk by the
// observer's Batcher, and it is settled only once that write has landed. A
// retryable first attempt takes a claim before the retry and goes on as a
// claimed run. Everything else is claimed first, as after a takeover.
//
// The source runs a partition key's records in order, one record at a time
// up to its command's final effect: a run tells it once the verdict is
// known and any dead letter written (Turn.Released), so that the next
// record of the key starts while this one's outcome is still being
// recorded, and records its outcome only after the previous record of the
// key ended with its own recorded (Turn.Prior) or, written by the Batcher,
// behind the previous record's outcome there (Turn.Mark): a key's waiting
// outcomes then share a write. A run stays registered in Memory until its
// outcome is recorded.
package command

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/sauna-io/sauna/observer/deadletter"
	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/observer/verdict"
	"github.com/sauna-io/sauna/responders"
)

// Record is one record as read from its source.
type Record struct {
	Sequence     string
	PartitionKey string
	Data         []byte
}

// Outcome is the final outcome of one record.
type Outcome struct {
	Observer  string
	Shard     string
	Sequence  string
	CommandID string
	// Digest identifies what the command asks (responders.Digest); set
	// when the ledger is on.
	Digest string
	// Responder is the module serving the command, when known.
	Responder string
	Verdict   verdict.Outcome
	// Reason is set for rejections.
	Reason   responders.Reason
	Err      error
	Attempts int
	// Latency is the time spent in responder calls.
	Latency time.Duration
}

// Ledger is the idempotency ledger (outcomes.Table). A command is checked
// in bulk before it runs (Peek): one the ledger has never seen runs without
// a claim and its outcome is recorded in bulk (RecordDone, through the
// Batcher); any other is claimed before it runs, its claim extended while
// it retries, and its outcome recorded (Finish), so that a command
// delivered again is not run twice.
type Ledger interface {
	Claim(ctx context.Context, c outcomes.Claim) error
	Extend(ctx context.Context, id outcomes.Identity) error
	Finish(ctx context.Context, id outcomes.Identity, f outcomes.Final) error
	Release(ctx context.Context, id outcomes.Identity) error
	Reject(ctx context.Context, r outcomes.Rejection) error
	Peek(ctx context.Context, claims []outcomes.Claim) ([]outcomes.Peeked, error)
	RecordDone(ctx context.Context, done []outcomes.Done) error
}

// DeadLetters is the dead-letter stream (deadletter.Writer).
type DeadLetters interface {
	Put(ctx context.Context, l deadletter.Letter) error
}

// Runner runs the commands of one source (a Kinesis shard). Its fields are
// everything a run depends on; they are set once, before the first Run, and
// Runs may go on concurrently. Dispatcher, Lease, Intake, Hard and Log are
// required; a nil Ledger or DeadLetters turns that step off.
type Runner struct {
	// Observer, Stream and Shard name where records come from, in outcomes
	// and dead letters.
	Observer, Stream, Shard string
	Dispatcher              *responders.Dispatcher
	// Ledger is nil when the observer keeps no outcomes table.
	Ledger Ledger
	// Memory and Batcher are the observer's, shared by all its shards;
	// without both every command takes a claim. The Batcher also records
	// the outcome of a claimed run that had to end first; without it, such
	// a run releases its claim.
	Memory  *Memory
	Batcher *Batcher
	// ClaimTimeout is how long a claim holds without an extension
	// (zero: outcomes.DefaultClaimTimeout, as the table has it).
	ClaimTimeout time.Duration
	// DeadLetters is nil when no dead-letter stream is configured;
	// DeadLetterStream names it in logs.
	DeadLetters      DeadLetters
	DeadLetterStream string
	// RetryBudget is how long a command is retried before it is
	// dead-lettered (zero: for ever).
	RetryBudget time.Duration
	// Lease is the hold on the source the records are read under.
	Lease Lease
	// Intake ends when the observer stops taking work: no retry, and no
	// wait for a claim or a lease, starts after it; a first attempt still
	// does. Hard ends when work in flight must be abandoned.
	Intake, Hard context.Context
	// HardOrLost is Hard ended also once the lease is lost
	// (Lease.Context(Hard)), one for the whole source, or nil. When set, a
	// run whose outcome would go alone in a write makes that write itself
	// under it rather than wait for the Batcher's goroutine (Batcher.add);
	// it ends as the run would stop waiting.
	HardOrLost context.Context
	Log        *slog.Logger
	// Attempted is told of every responder call, Settled of every record's
	// final outcome; both are required, and neither may block.
	Attempted func(module string, v responders.Verdict, took time.Duration)
	Settled   func(Outcome)

	// leaseFenced is Hard fenced by the lease alone: the context of every
	// attempt made without a claim, the same for all of them, so made once
	// (by the first such attempt) rather than once per attempt.
	leaseFenced atomic.Pointer[sharedContext]
}

// sharedContext holds a context the runs share, for an atomic.Pointer.
type sharedContext struct{ ctx context.Context }

// run is one command's life; it lives on its runner's goroutine.
type run struct {
	*Runner
	turn   Turn
	out    Outcome
	letter deadletter.Letter
	cmd    *responders.Command
	route  responders.Route
	id     outcomes.Identity
	// memKey is the commandId's key in Memory, once the run entered it.
	memKey uint64
	// ctx is Hard: a call that has started is let finish even if the
	// lease is lost meanwhile, as its claim still fences the command and
	// cutting it short after the vendor acted would leave no outcome and
	// run it again. Nothing ends a run's context on its own, so the run
	// derives none (a context per command cost two allocations); whatever
	// a call derives from it, the call cancels itself.
	ctx context.Context
	// claimed is set once the ledger's claim is held; claimedAt is when it
	// was last taken or extended, read before the write: the ledger's
	// expiry is at least ClaimTimeout after it.
	claimed   bool
	claimedAt time.Time
	// fast is set while the run goes without a claim (its Peek found no
	// item); counted while the Batcher counts it as about to record an
	// outcome; recorded once the outcome is in the ledger.
	fast, counted, recorded bool
	// first is when the first attempt's call started (send), last when
	// the latest one ended.
	first, last time.Time
	// budgetLogged is set once the spent retry budget was logged.
	budgetLogged bool
}

// Run takes rec to its final outcome and reports it: Prepare, then
// Execute. It returns false when it had to stop first (a stop, a lost
// lease): the record is then unfinished, and the source's next owner reads
// it again.
func (r *Runner) Run(rec Record) bool {
	p := r.Prepare(rec)
	return r.Execute(&p, Turn{})
}

// Reject ends rec, which can never run as sent (err says why), without
// decoding it: a record the source found unreadable. Like Run, it returns
// false when it had to stop first.
func (r *Runner) Reject(rec Record, err error) bool {
	p := r.Rejected(rec, err)
	return r.Execute(&p, Turn{})
}

// Execute takes a prepared record to its final outcome and reports it. A
// command whose Peek found no item under its identity, fresh enough, runs
// without a claim unless this process is running a command under its id or
// recorded one lately (Memory); its first attempt is then fenced by the lease alone. A
// retryable first attempt takes a claim before the retry and goes on as a
// claimed run. t places the record among the records of its key: the next
// one may start once this command's effect is final, and this one's outcome
// is recorded only after the previous one's. Like Run, it returns false
// when it had to stop first.
func (r *Runner) Execute(p *Prepared, t Turn) bool {
	c := run{Runner: r, turn: t}
	c.begin(p.rec)
	c.load(p)
	if p.err != nil {
		return c.reject(p.err)
	}
	if r.Ledger != nil && !p.peekedAt.IsZero() && p.peeked.Seen == outcomes.SeenDone {
		return c.duplicate()
	}
	c.ctx = r.Hard
	if r.Ledger != nil {
		if r.Memory != nil {
			c.memKey = r.Memory.key(c.id.CommandID)
			waited, recent, ok := r.Memory.enter(r.Intake, r.Lease, c.memKey)
			if !ok {
				return false
			}
			defer c.leave()
			c.fast = r.Batcher != nil && !waited && !recent && p.fast(time.Now())
		}
		if !c.fast {
			switch c.claim() {
			case claimStopped:
				return false
			case claimDuplicate:
				return c.duplicate()
			}
		}
	}
	return c.attempts()
}

func (c *run) begin(rec Record) {
	c.out = Outcome{Observer: c.Observer, Shard: c.Shard, Sequence: rec.Sequence}
	c.letter = deadletter.Letter{
		Observer: c.Observer, Stream: c.Stream, Shard: c.Shard,
		SequenceNumber: rec.Sequence, PartitionKey: rec.PartitionKey, Record: rec.Data,
	}
}

// load takes what Prepare read of the command.
func (c *run) load(p *Prepared) {
	c.cmd, c.route = p.cmd, p.route
	if c.cmd == nil {
		return
	}
	c.out.CommandID, c.out.Responder, c.out.Digest = c.cmd.ID, c.cmd.Module, p.digest
	c.letter.CommandID, c.letter.CommandSchema, c.letter.Responder = c.cmd.ID, p.schema, c.cmd.Module
	c.id = outcomes.Identity{CommandID: c.cmd.ID, Digest: p.digest}
}

// leave ends a run registered in Memory.
func (c *run) leave() {
	c.uncount()
	c.Memory.leave(c.memKey, c.recorded)
}

// duplicate settles a command the ledger holds as done.
func (c *run) duplicate() bool {
	c.out.Verdict = verdict.Duplicate
	c.Log.Info("command already executed; skipped", "seq", c.out.Sequence, "command_id", c.cmd.ID, "responder", c.cmd.Module)
	if c.conclude() != priorRecorded {
		return false
	}
	c.Settled(c.out)
	return true
}

// stopping reports whether the run must not start a retry: the observer is
// stopping, the run's context ended, or the lease is lost.
func (c *run) stopping() bool {
	select {
	case <-c.ctx.Done():
		return true
	default:
		return c.Lease.Done(c.Intake)
	}
}
