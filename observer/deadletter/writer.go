package deadletter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/smithy-go"

	"github.com/sauna-io/sauna/observer/backoff"
)

// PutRecorder is the part of *kinesis.Client the Writer uses.
type PutRecorder interface {
	PutRecord(ctx context.Context, in *kinesis.PutRecordInput, optFns ...func(*kinesis.Options)) (*kinesis.PutRecordOutput, error)
}

// Defaults of a Writer.
const (
	DefaultCallTimeout = 10 * time.Second
	// maxRecordBytes is Kinesis's default limit on a record's data plus its
	// partition key (streams can be raised to 10 MiB; the default is assumed).
	maxRecordBytes = 1 << 20
	maxKeyLen      = 256
)

// Writer puts dead letters on one stream. It is safe for concurrent use.
type Writer struct {
	kin    PutRecorder
	stream string
	log    *slog.Logger
	now    func() time.Time

	callTimeout    time.Duration
	backoff        backoff.Policy
	maxRecordBytes int
}

// defaultBackoff spaces the retries of a put, jittered so that the workers
// of a fleet that lost the stream together do not retry in lockstep: up to
// 100 ms at first, doubling to 10 s, never less than 50 ms.
var defaultBackoff = backoff.Policy{First: 100 * time.Millisecond, Floor: 50 * time.Millisecond, Max: 10 * time.Second}

// NewWriter returns a Writer for stream; log nil means slog.Default().
func NewWriter(kin PutRecorder, stream string, log *slog.Logger) *Writer {
	if log == nil {
		log = slog.Default()
	}
	return &Writer{
		kin:            kin,
		stream:         stream,
		log:            log.With("dead_letter_stream", stream),
		now:            time.Now,
		callTimeout:    DefaultCallTimeout,
		backoff:        defaultBackoff,
		maxRecordBytes: maxRecordBytes,
	}
}

// Stream is the dead-letter stream's name.
func (w *Writer) Stream() string { return w.stream }

// Put writes one dead letter, partitioned by the original partition key so
// that a key's dead letters stay in order. It retries with capped backoff
// until it succeeds or ctx ends: losing a dead letter loses the command, so
// an unreachable, missing or forbidden stream holds the caller (and says so
// in the log) rather than dropping it. Only a request Kinesis can never
// accept returns at once. A zero DeadLetteredAt is set to now.
//
// A letter that would exceed the record size limit is written without the
// original bytes (record null, recordSize kept): the shard and sequence
// number still locate the original on the source stream while it is
// retained.
func (w *Writer) Put(ctx context.Context, l Letter) error {
	if l.DeadLetteredAt.IsZero() {
		l.DeadLetteredAt = w.now()
	}
	key := partitionKey(l)
	data, err := Encode(l)
	if err != nil {
		return err
	}
	if len(data)+len(key) > w.maxRecordBytes && l.Record != nil {
		w.log.Warn("dead letter too large: writing it without the original record",
			"observer", l.Observer, "stream", l.Stream, "shard", l.Shard, "sequence_number", l.SequenceNumber,
			"command_id", l.CommandID, "record_size", len(l.Record))
		l.RecordSize, l.Record = len(l.Record), nil
		if data, err = Encode(l); err != nil {
			return err
		}
	}
	log := w.log.With("observer", l.Observer, "stream", l.Stream, "shard", l.Shard,
		"sequence_number", l.SequenceNumber, "command_id", l.CommandID, "reason", l.Reason)
	out, err := putRetrying(ctx, w.kin, putRetry{
		stream: w.stream, key: key, data: data, log: log,
		callTimeout: w.callTimeout, backoff: w.backoff,
	})
	if err != nil {
		return fmt.Errorf("dead letter for %s/%s to stream %s: %w", l.Shard, l.SequenceNumber, w.stream, err)
	}
	log.Debug("dead letter written", "dead_letter_shard", aws.ToString(out.ShardId), "dead_letter_sequence_number", aws.ToString(out.SequenceNumber))
	return nil
}

// partitionKey falls back on other stable keys for a letter without one
// (Kinesis requires 1 to 256 characters).
func partitionKey(l Letter) string {
	for _, k := range []string{l.PartitionKey, l.CommandID, l.Shard + "/" + l.SequenceNumber} {
		if k != "" && k != "/" {
			r := []rune(k)
			if len(r) > maxKeyLen {
				return string(r[:maxKeyLen])
			}
			return k
		}
	}
	return "dead-letter"
}

type putRetry struct {
	stream, key string
	data        []byte
	log         *slog.Logger
	callTimeout time.Duration
	backoff     backoff.Policy
	maxAttempts int // 0: until ctx ends
}

// putRetrying puts one record, retrying every error that may go away. Each
// call has its own deadline inside ctx.
func putRetrying(ctx context.Context, kin PutRecorder, p putRetry) (*kinesis.PutRecordOutput, error) {
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, p.callTimeout)
		out, err := kin.PutRecord(cctx, &kinesis.PutRecordInput{
			StreamName:   aws.String(p.stream),
			PartitionKey: aws.String(p.key),
			Data:         p.data,
		})
		cancel()
		if err == nil {
			if attempt > 1 {
				p.log.Info("put succeeded after retries", "attempts", attempt)
			}
			return out, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("gave up after %d attempts: %w (last error: %v)", attempt, ctx.Err(), err)
		}
		if permanent(err) {
			return nil, err
		}
		if p.maxAttempts > 0 && attempt >= p.maxAttempts {
			return nil, fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		wait := p.backoff.Delay(attempt)
		p.log.Warn("put failed; retrying", "attempt", attempt, "retry_in", wait, "err", err)
		if !backoff.Sleep(ctx, wait) {
			return nil, fmt.Errorf("gave up after %d attempts: %w (last error: %v)", attempt, ctx.Err(), err)
		}
	}
}

// permanent recognises requests that Kinesis can never accept as sent.
// Everything else (throttling, outages, a stream not created yet, missing
// permissions, KMS trouble) can be fixed while the caller waits.
func permanent(err error) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.ErrorCode() {
	case "ValidationException", "InvalidArgumentException", "SerializationException":
		return true
	}
	return false
}
