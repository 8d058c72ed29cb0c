package kinesis

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	kds "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/aws/smithy-go/middleware"
	"github.com/awslabs/kinesis-aggregation/go/v2/deaggregator"
)

// kplMagic starts every KPL aggregate record.
var kplMagic = []byte{0xf3, 0x89, 0x9a, 0xc2}

// defusedMagic replaces kplMagic in an aggregate that cannot be decoded,
// and oversizedMagic in one that carries more than MaxAggregateRecords, so
// that the record passes the KCL as a plain one.
var (
	defusedMagic   = []byte{0x00, 0x89, 0x9a, 0xc2}
	oversizedMagic = []byte{0x01, 0x89, 0x9a, 0xc2}
)

// MaxAggregateRecords bounds the user records of one KPL aggregate. A
// Kinesis record carries at most 1 MiB, and every sauna command holds at
// least its two fixed schema URIs (66 and 67 bytes) and a commandId (36), so
// no aggregate of commands holds more than 1 MiB / 169 B = 6,204 of them
// (the KPL's own AggregationMaxCount is unbounded). A larger one is not an
// aggregate of commands, and de-aggregating it would cost a record and a
// rejection per entry (about 174,000 for 1 MiB of empty entries): it is
// rejected whole instead.
const MaxAggregateRecords = maxKinesisRecord / minCommandBytes

const (
	maxKinesisRecord = 1 << 20
	minCommandBytes  = 169
)

// IsDefusedAggregate reports whether data is a KPL aggregate that the
// aggregate guard let through as a plain record, and returns its original
// bytes and why it was not de-aggregated.
func IsDefusedAggregate(data []byte) (orig []byte, why string, ok bool) {
	switch {
	case bytes.HasPrefix(data, defusedMagic):
		why = "KPL aggregate record with a valid checksum and an undecodable body"
	case bytes.HasPrefix(data, oversizedMagic):
		n, _ := countUserRecords(data[len(kplMagic) : len(data)-md5.Size])
		why = fmt.Sprintf("KPL aggregate record of %d user records, more than the %d an aggregate of commands can hold", n, MaxAggregateRecords)
	default:
		return nil, "", false
	}
	orig = bytes.Clone(data)
	copy(orig, kplMagic)
	return orig, why, true
}

// aggregateGuard inspects every GetRecords answer before the KCL sees it.
// The KCL de-aggregates a whole batch at once and, when one aggregate has a
// valid checksum but an undecodable body, drops every record of the batch
// (or panics on a bad partition-key index) while the iterator moves on:
// silent loss. An aggregate of more than MaxAggregateRecords entries would
// cost memory, a rejection and a log line per entry. The guard reports such
// an aggregate in one line with its shard and sequence range and defuses it,
// so it reaches the processor as one plain record that is rejected, and
// dead-lettered, with its original bytes; its checkpoint passes only after
// that verdict, like any record's.
//
// Knowing the shard of every read, it also keeps the shards' read budget
// (readBudget) up to date, when it has one.
type aggregateGuard struct {
	log     *slog.Logger
	onError func(shard, first, last string)
	budget  *readBudget

	mu sync.Mutex
	// shards maps live shard iterators to their shard, since GetRecords
	// itself does not name the shard.
	shards map[string]string
}

const maxTrackedIterators = 4096

func newAggregateGuard(log *slog.Logger, onError func(shard, first, last string)) *aggregateGuard {
	return &aggregateGuard{log: log, onError: onError, shards: map[string]string{}}
}

// apply installs the guard on a Kinesis client's middleware stack.
func (g *aggregateGuard) apply(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("SaunaAggregateGuard",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			if req, ok := in.Parameters.(*kds.GetRecordsInput); ok && g.budget != nil {
				// The KCL calls GetRecords right after its budget check
				// passed, which charged the previous read.
				g.budget.reading(g.shardOf(aws.ToString(req.ShardIterator)), time.Now())
			}
			out, md, err := next.HandleInitialize(ctx, in)
			if err != nil {
				return out, md, err
			}
			switch res := out.Result.(type) {
			case *kds.GetShardIteratorOutput:
				if req, ok := in.Parameters.(*kds.GetShardIteratorInput); ok {
					g.track(aws.ToString(res.ShardIterator), aws.ToString(req.ShardId), "")
					// Only a KCL consumer starting on the shard asks this
					// client for an iterator: its budget starts full.
					g.budget.started(aws.ToString(req.ShardId))
				}
			case *kds.GetRecordsOutput:
				if req, ok := in.Parameters.(*kds.GetRecordsInput); ok {
					shard := g.track(aws.ToString(res.NextShardIterator), "", aws.ToString(req.ShardIterator))
					g.inspect(shard, res.Records)
					// After inspect: the KCL counts the bytes it is handed,
					// and a defused aggregate keeps its length.
					g.budget.answered(shard, res.Records, time.Now())
				}
			}
			return out, md, err
		}), middleware.After)
}

// shardOf is the shard of a live iterator ("" when unknown).
func (g *aggregateGuard) shardOf(iterator string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.shards[iterator]
}

// track records that iterator next belongs to shard (or to the shard of
// the iterator prev, which it replaces) and returns that shard.
func (g *aggregateGuard) track(next, shard, prev string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if prev != "" {
		shard = g.shards[prev]
		delete(g.shards, prev)
	}
	if next != "" && shard != "" {
		if len(g.shards) >= maxTrackedIterators {
			// Iterators of consumers that exited are never followed up;
			// forgetting them costs only the shard name in a report.
			clear(g.shards)
		}
		g.shards[next] = shard
	}
	return shard
}

func (g *aggregateGuard) inspect(shard string, recs []types.Record) {
	for i := range recs {
		r := &recs[i]
		if !looksAggregated(r.Data) {
			continue
		}
		seq := aws.ToString(r.SequenceNumber)
		first, last := aws.ToString(recs[0].SequenceNumber), aws.ToString(recs[len(recs)-1].SequenceNumber)
		// Counted before decoding: decoding an oversized one is the cost
		// the bound avoids.
		n, framed := countUserRecords(r.Data[len(kplMagic) : len(r.Data)-md5.Size])
		magic := defusedMagic
		switch {
		case framed && n > MaxAggregateRecords:
			magic = oversizedMagic
			g.log.Error("oversized KPL aggregate record: it passes as one rejected record instead of one per user record",
				"shard", shard, "seq", seq, "batch_first_seq", first, "batch_last_seq", last, "bytes", len(r.Data),
				"user_records", n, "max_user_records", MaxAggregateRecords)
		case decodes(*r):
			continue
		default:
			g.log.Error("corrupt KPL aggregate record: it passes as one rejected record instead of dropping its batch",
				"shard", shard, "seq", seq, "batch_first_seq", first, "batch_last_seq", last, "bytes", len(r.Data))
		}
		if g.onError != nil {
			g.onError(shard, first, last)
		}
		data := bytes.Clone(r.Data)
		copy(data, magic)
		r.Data = data
	}
}

// countUserRecords counts the records field (3) of an AggregatedRecord
// body from its wire framing alone, without allocating; framed is false
// when the framing is broken (the decoder then refuses the body anyway).
func countUserRecords(body []byte) (n int, framed bool) {
	const recordsField = 3
	for len(body) > 0 {
		tag, k := binary.Uvarint(body)
		if k <= 0 {
			return n, false
		}
		body = body[k:]
		var skip uint64
		switch tag & 7 {
		case 0: // varint
			_, k = binary.Uvarint(body)
			if k <= 0 {
				return n, false
			}
			skip = uint64(k)
		case 1: // 64-bit
			skip = 8
		case 2: // length-delimited
			l, k := binary.Uvarint(body)
			if k <= 0 {
				return n, false
			}
			body = body[k:]
			skip = l
		case 5: // 32-bit
			skip = 4
		default:
			return n, false
		}
		if skip > uint64(len(body)) {
			return n, false
		}
		body = body[skip:]
		if tag>>3 == recordsField && tag&7 == 2 {
			n++
		}
	}
	return n, true
}

// looksAggregated applies the KCL's own test: the magic, and an MD5 of the
// body that matches its trailer.
func looksAggregated(data []byte) bool {
	if len(data) <= len(kplMagic)+md5.Size || !bytes.HasPrefix(data, kplMagic) {
		return false
	}
	body := data[len(kplMagic) : len(data)-md5.Size]
	sum := md5.Sum(body)
	return bytes.Equal(sum[:], data[len(data)-md5.Size:])
}

// decodes reports whether the KCL's de-aggregator accepts the record; it
// panics on some malformed aggregates, which counts as not decoding.
func decodes(r types.Record) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	_, err := deaggregator.DeaggregateRecords([]types.Record{r})
	return err == nil
}
