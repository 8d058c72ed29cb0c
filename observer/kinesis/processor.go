package kinesis

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	kcl "github.com/vmware/vmware-go-kcl-v2/clientlibrary/interfaces"

	"github.com/sauna-io/sauna/observer/kinesis/leases"
	"github.com/sauna-io/sauna/responders"
)

// Outcome is the final result of one record.
type Outcome struct {
	Observer  string
	Shard     string
	Sequence  string
	CommandID string
	Responder string
	// Verdict is Done (executed) or Fail (rejected or failed permanently).
	Verdict responders.Verdict
	// Reason is set for rejections.
	Reason   responders.Reason
	Err      error
	Attempts int
}

// shardProcessor executes one shard's records in order and checkpoints only
// what has a final outcome. Once it stops short (shutdown or a lost lease)
// it drops every later batch: checkpointing past a record that did not run
// would lose it.
type shardProcessor struct {
	o       *Observer
	shardID string
	log     *slog.Logger
	lost    <-chan struct{}
	// stopped is set when a batch was not finished; nothing is processed or
	// checkpointed after that.
	stopped bool
}

var _ kcl.IRecordProcessor = (*shardProcessor)(nil)

func (p *shardProcessor) Initialize(in *kcl.InitializationInput) {
	p.shardID = in.ShardId
	p.log = p.o.log.With("shard", in.ShardId)
	p.lost = p.o.lost(in.ShardId)
	from := "initial position"
	if in.ExtendedSequenceNumber != nil && aws.ToString(in.ExtendedSequenceNumber.SequenceNumber) != "" {
		from = aws.ToString(in.ExtendedSequenceNumber.SequenceNumber)
	}
	p.log.Info("shard acquired", "from", from)
}

func (p *shardProcessor) ProcessRecords(in *kcl.ProcessRecordsInput) {
	if p.stopped || len(in.Records) == 0 {
		return
	}
	var done *string
	for i := range in.Records {
		r := &in.Records[i]
		if !p.execute(r) {
			p.stopped = true
			break
		}
		// Records of one KPL aggregate share a sequence number: a checkpoint
		// inside an aggregate would skip its remaining records on restart.
		if i+1 == len(in.Records) || aws.ToString(in.Records[i+1].SequenceNumber) != aws.ToString(r.SequenceNumber) {
			done = r.SequenceNumber
		}
	}
	if done != nil {
		p.checkpoint(in.Checkpointer, done)
	}
}

func (p *shardProcessor) Shutdown(in *kcl.ShutdownInput) {
	switch in.ShutdownReason {
	case kcl.TERMINATE:
		if p.stopped {
			p.log.Warn("shard ended but not every record ran; leaving it open so it is read again")
			return
		}
		// SHARD_END lets the child shards start; without it they wait for ever.
		if p.checkpoint(in.Checkpointer, nil) {
			p.log.Info("shard finished")
		}
	default:
		p.log.Info("shard released", "reason", aws.ToString(kcl.ShutdownReasonMessage(in.ShutdownReason)))
	}
}

// checkpoint writes seq (nil: SHARD_END), retrying until it succeeds, the
// lease is lost, or the observer stops.
func (p *shardProcessor) checkpoint(cp kcl.IRecordProcessorCheckpointer, seq *string) bool {
	for attempt := 1; ; attempt++ {
		err := cp.Checkpoint(seq)
		if err == nil {
			return true
		}
		if errors.Is(err, leases.ErrLeaseLost) {
			p.stopped = true
			p.log.Warn("lease lost; this worker stops processing the shard", "err", err)
			return false
		}
		if errors.Is(err, leases.ErrCheckpointRegression) {
			// Retrying cannot help; the records stay uncheckpointed and are
			// read again by the next owner.
			p.stopped = true
			p.log.Error("checkpoint refused as a regression; stopping the shard", "err", err)
			return false
		}
		p.log.Warn("checkpoint failed; retrying", "err", err, "attempt", attempt)
		if !p.wait(p.o.hard, backoff(attempt, 0)) {
			return false
		}
	}
}

// execute runs one record to a final outcome. It returns false when it had
// to stop before one was reached.
func (p *shardProcessor) execute(r *types.Record) bool {
	seq := aws.ToString(r.SequenceNumber)
	out := Outcome{Observer: p.o.cfg.ID, Shard: p.shardID, Sequence: seq}
	cmd, err := responders.Decode(r.Data)
	if err != nil {
		p.reject(out, err)
		return true
	}
	out.CommandID = cmd.ID
	out.Responder = cmd.Module
	ctx, cancel := p.callContext()
	defer cancel()
	for attempt := 1; ; attempt++ {
		if p.intakeStopped() {
			return false
		}
		out.Attempts = attempt
		_, err := p.o.dispatch.Dispatch(ctx, cmd)
		verdict, after := responders.Classify(err)
		switch verdict {
		case responders.Done:
			out.Verdict = responders.Done
			p.log.Debug("command executed", "seq", seq, "command_id", cmd.ID, "responder", cmd.Module, "attempts", attempt)
			p.o.report(out)
			return true
		case responders.Fail:
			var rej *responders.RejectError
			if errors.As(err, &rej) {
				p.reject(out, err)
				return true
			}
			out.Verdict, out.Err = responders.Fail, err
			p.log.Error("command failed permanently", "seq", seq, "command_id", cmd.ID, "responder", cmd.Module, "attempts", attempt, "err", err)
			p.o.report(out)
			return true
		}
		delay := backoff(attempt, after)
		p.log.Warn("command failed; retrying", "seq", seq, "command_id", cmd.ID, "responder", cmd.Module, "attempt", attempt, "retry_in", delay, "err", err)
		if !p.wait(p.o.intake, delay) {
			return false
		}
	}
}

func (p *shardProcessor) reject(out Outcome, err error) {
	var rej *responders.RejectError
	if errors.As(err, &rej) {
		out.Reason = rej.Reason
		if out.CommandID == "" {
			out.CommandID = rej.CommandID
		}
	}
	out.Verdict, out.Err = responders.Fail, err
	p.log.Warn("command rejected", "seq", out.Sequence, "command_id", out.CommandID, "reason", out.Reason, "err", err)
	p.o.report(out)
}

// callContext bounds a responder call by the observer's hard stop and by the
// loss of this shard's lease: once another worker owns the shard, our side
// effects must stop.
func (p *shardProcessor) callContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(p.o.hard)
	go func() {
		select {
		case <-p.lost:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func (p *shardProcessor) intakeStopped() bool {
	select {
	case <-p.lost:
		return true
	case <-p.o.intake.Done():
		return true
	default:
		return false
	}
}

// wait sleeps for d unless ctx ends or the lease is lost first.
func (p *shardProcessor) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-p.lost:
		return false
	}
}

// backoff is exponential with full jitter, capped at 30 s, and never shorter
// than what the responder asked for.
func backoff(attempt int, atLeast time.Duration) time.Duration {
	ceiling := min(30*time.Second, 100*time.Millisecond<<min(attempt, 10))
	d := time.Duration(rand.Int64N(int64(ceiling)) + 1)
	return max(d, atLeast)
}
