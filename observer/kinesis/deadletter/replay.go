package deadletter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

// ReplayClient is the part of *kinesis.Client that Replay uses.
type ReplayClient interface {
	PutRecorder
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, optFns ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
}

// Filter selects dead letters; zero fields select everything.
type Filter struct {
	Reason string    // prefix of the reason: "rejected" selects every rejection
	Schema string    // prefix of the command schema's Iglu URI ("iglu:" optional), or the exact URI
	Since  time.Time // deadLetteredAt at or after
	Until  time.Time // deadLetteredAt before
}

// Match reports whether l passes the filter.
func (f Filter) Match(l Letter) bool {
	if f.Reason != "" && !strings.HasPrefix(l.Reason, f.Reason) {
		return false
	}
	if f.Schema != "" {
		want := f.Schema
		if !strings.HasPrefix(want, "iglu:") {
			want = "iglu:" + want
		}
		if !strings.HasPrefix(l.CommandSchema, want) {
			return false
		}
	}
	if !f.Since.IsZero() && l.DeadLetteredAt.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !l.DeadLetteredAt.Before(f.Until) {
		return false
	}
	return true
}

// Stats counts what Replay saw.
type Stats struct {
	Records    int // records read from the dead-letter stream
	Letters    int // records that are dead letters
	NotLetters int // records that are not (reported and skipped)
	Matched    int // dead letters that passed the filter
	Replayed   int // original records put on the target stream (0 in a dry run)
	NoRecord   int // matched letters without the original bytes (too large to keep)
	Later      int // shards whose reading stopped at a record newer than the replay
}

func (s Stats) String() string {
	msg := fmt.Sprintf("%d records read: %d dead letters, %d not dead letters; %d matched, %d replayed, %d without original bytes",
		s.Records, s.Letters, s.NotLetters, s.Matched, s.Replayed, s.NoRecord)
	if s.Later > 0 {
		msg += fmt.Sprintf("; %d shards hold records newer than this replay, left for the next one", s.Later)
	}
	return msg
}

type replayer struct {
	kin         ReplayClient
	from, to    string
	filter      Filter
	dryRun      bool
	out         io.Writer
	start       time.Time
	callTimeout time.Duration
	// pollGap paces GetRecords on one shard: Kinesis allows 5 calls per
	// second per shard, shared with every other reader of the stream.
	pollGap                time.Duration
	minBackoff, maxBackoff time.Duration
	putAttempts            int
	stats                  Stats
}

// Replay reads every shard of the dead-letter stream from, oldest record
// first, until it is caught up (or closed), and puts the original bytes of
// each dead letter that passes f back onto the stream to, under the original
// partition key. Shards are read one after another in shard id order, which
// puts a parent's letters before its children's, so per-key order survives
// a reshard of the dead-letter stream. Records that arrived after the replay
// started are left alone: a replayed command that fails again is
// dead-lettered again, and must not be replayed again in the same run.
//
// One tab-separated line per dead letter goes to out (and per record that is
// not a dead letter). With dryRun nothing is put. Replaying twice puts the
// records twice; with idempotency on, a command that ran the first time is
// then skipped as a duplicate.
func Replay(ctx context.Context, kin ReplayClient, from, to string, f Filter, dryRun bool, out io.Writer) (Stats, error) {
	return newReplayer(kin, from, to, f, dryRun, out).run(ctx)
}

func newReplayer(kin ReplayClient, from, to string, f Filter, dryRun bool, out io.Writer) *replayer {
	return &replayer{
		kin: kin, from: from, to: to, filter: f, dryRun: dryRun, out: out,
		start:       time.Now(),
		callTimeout: DefaultCallTimeout,
		pollGap:     250 * time.Millisecond,
		minBackoff:  defaultMinBackoff, maxBackoff: defaultMaxBackoff,
		putAttempts: 8,
	}
}

func (r *replayer) run(ctx context.Context) (Stats, error) {
	switch {
	case r.from == "":
		return r.stats, errors.New("replay: no dead-letter stream")
	case r.to == "" && !r.dryRun:
		return r.stats, errors.New("replay: no target stream")
	case r.from == r.to:
		return r.stats, fmt.Errorf("replay: source and target are both %q", r.from)
	}
	shards, err := r.listShards(ctx)
	if err != nil {
		return r.stats, err
	}
	for _, sh := range shards {
		if err := r.shard(ctx, sh); err != nil {
			return r.stats, err
		}
	}
	return r.stats, nil
}

func (r *replayer) listShards(ctx context.Context) ([]string, error) {
	var ids []string
	in := &kinesis.ListShardsInput{StreamName: aws.String(r.from)}
	for {
		cctx, cancel := context.WithTimeout(ctx, r.callTimeout)
		out, err := r.kin.ListShards(cctx, in)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("replay: list shards of %s: %w", r.from, err)
		}
		for _, s := range out.Shards {
			ids = append(ids, aws.ToString(s.ShardId))
		}
		if aws.ToString(out.NextToken) == "" {
			break
		}
		// A page token goes alone: Kinesis refuses it next to StreamName.
		in = &kinesis.ListShardsInput{NextToken: out.NextToken}
	}
	// Shard ids are numbered in creation order with a fixed width.
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

func (r *replayer) shard(ctx context.Context, shardID string) error {
	cctx, cancel := context.WithTimeout(ctx, r.callTimeout)
	it, err := r.kin.GetShardIterator(cctx, &kinesis.GetShardIteratorInput{
		StreamName:        aws.String(r.from),
		ShardId:           aws.String(shardID),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("replay: iterator for %s/%s: %w", r.from, shardID, err)
	}
	iter := it.ShardIterator
	for first := true; iter != nil; first = false {
		if !first {
			if err := pause(ctx, r.pollGap); err != nil {
				return err
			}
		}
		cctx, cancel := context.WithTimeout(ctx, r.callTimeout)
		out, err := r.kin.GetRecords(cctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(1000)})
		cancel()
		if err != nil {
			return fmt.Errorf("replay: read %s/%s: %w", r.from, shardID, err)
		}
		for _, rec := range out.Records {
			if at := rec.ApproximateArrivalTimestamp; at != nil && at.After(r.start) {
				r.stats.Later++
				return nil
			}
			if err := r.record(ctx, shardID, rec); err != nil {
				return err
			}
		}
		if len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0 {
			return nil
		}
		iter = out.NextShardIterator // nil once a closed shard is read to its end
	}
	return nil
}

func (r *replayer) record(ctx context.Context, shardID string, rec types.Record) error {
	r.stats.Records++
	dlq := shardID + "/" + aws.ToString(rec.SequenceNumber)
	l, err := Decode(rec.Data)
	if err != nil {
		r.stats.NotLetters++
		fmt.Fprintf(r.out, "not-a-letter\tdlq=%s\terror=%s\n", dlq, oneLine(truncate(err.Error(), 300)))
		return nil
	}
	r.stats.Letters++
	if !r.filter.Match(l) {
		return nil
	}
	r.stats.Matched++
	desc := fmt.Sprintf("commandId=%s\treason=%s\tschema=%s\tdeadLetteredAt=%s\tfrom=%s/%s/%s\tdlq=%s",
		orDash(l.CommandID), l.Reason, orDash(l.CommandSchema), formatTime(l.DeadLetteredAt),
		l.Stream, l.Shard, l.SequenceNumber, dlq)
	switch {
	case l.Record == nil:
		r.stats.NoRecord++
		fmt.Fprintf(r.out, "no-record\t%s\trecordSize=%d\n", desc, l.RecordSize)
		return nil
	case r.dryRun:
		fmt.Fprintf(r.out, "would-replay\t%s\n", desc)
		return nil
	}
	out, err := putRetrying(ctx, r.kin, putRetry{
		stream: r.to, key: partitionKey(l), data: l.Record,
		log:         slog.New(slog.DiscardHandler),
		callTimeout: r.callTimeout, minBackoff: r.minBackoff, maxBackoff: r.maxBackoff,
		maxAttempts: r.putAttempts,
	})
	if err != nil {
		return fmt.Errorf("replay: put %s onto %s: %w", dlq, r.to, err)
	}
	r.stats.Replayed++
	fmt.Fprintf(r.out, "replayed\t%s\tto=%s/%s\n", desc, aws.ToString(out.ShardId), aws.ToString(out.SequenceNumber))
	return nil
}

func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
