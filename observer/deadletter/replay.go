package deadletter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
	"github.com/google/uuid"

	"github.com/sauna-io/sauna/observer/backoff"
)

// ReplayClient is the part of *kinesis.Client that Replay uses.
type ReplayClient interface {
	PutRecorder
	ListShards(ctx context.Context, in *kinesis.ListShardsInput, optFns ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *kinesis.GetShardIteratorInput, optFns ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *kinesis.GetRecordsInput, optFns ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
}

// TagReplayOf is the envelope tag that names the commandId a command given a
// new id by a replay was replayed from.
const TagReplayOf = "replayOf"

// Filter selects commands; zero fields select everything.
type Filter struct {
	Reason string            // prefix of a dead letter's reason ("rejected" selects every rejection); plain commands never match one
	Schema string            // prefix of the command schema's Iglu URI ("iglu:" optional), or the exact URI
	Tags   map[string]string // envelope tags the command must carry, with these values
	// Since and Until select by the record's arrival in the stream read
	// (ApproximateArrivalTimestamp): [Since, Until).
	Since, Until time.Time
}

// match reports whether a command passes the filter's content fields (the
// times are applied while reading).
func (f Filter) match(c candidate) bool {
	if f.Reason != "" && (!c.letter || !strings.HasPrefix(c.reason, f.Reason)) {
		return false
	}
	if f.Schema != "" {
		want := f.Schema
		if !strings.HasPrefix(want, "iglu:") {
			want = "iglu:" + want
		}
		if !strings.HasPrefix(c.schema, want) {
			return false
		}
	}
	for k, v := range f.Tags {
		if got, ok := c.tags[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Options configure a replay.
type Options struct {
	From string // the stream read: the live command stream or a dead-letter stream
	To   string // the stream the commands are put on; may be From itself
	Filter
	DryRun bool // only list the commands that would be put

	// NewIDs gives every command put a fresh commandId and records the old
	// one in the envelope tag replayOf: the outcomes table would otherwise
	// skip a command that ran as a duplicate.
	NewIDs bool
	// RefreshTTL sets whenCreated to the time of the put, so that a command
	// past its time to live runs again.
	RefreshTTL bool
	// Rate bounds puts per second; 0 means as fast as Kinesis takes them.
	Rate float64

	Out io.Writer // one JSON line per selected command (DryRun) or per put
	// Progress gets a line every ProgressEvery (default 10 s) while the
	// replay runs; nil means none.
	Progress      io.Writer
	ProgressEvery time.Duration
}

// Stats counts what Replay saw.
type Stats struct {
	Records    int // records read within the time window
	Letters    int // of them, dead letters
	Unreadable int // neither a dead letter nor a command envelope: skipped
	Selected   int // commands that passed the filter
	Replayed   int // commands put on the target stream (0 in a dry run)
	NoRecord   int // selected dead letters without the original bytes (too large to keep)
	Later      int // shards whose reading stopped at a record that arrived after the window or the replay's start

	BySchema map[string]int // selected commands by schema ("-" when unreadable)
	ByReason map[string]int // selected dead letters by reason

	// Position is, per shard, the last record handled: where an
	// interrupted replay got to.
	Position map[string]Position
}

// Position is a record of the stream read.
type Position struct {
	SequenceNumber string
	Arrival        time.Time
}

func (s Stats) String() string {
	msg := fmt.Sprintf("%d records read (%d dead letters, %d unreadable); %d selected, %d replayed, %d without original bytes",
		s.Records, s.Letters, s.Unreadable, s.Selected, s.Replayed, s.NoRecord)
	if len(s.BySchema) > 0 {
		msg += "; by schema: " + countList(s.BySchema)
	}
	if len(s.ByReason) > 0 {
		msg += "; by reason: " + countList(s.ByReason)
	}
	if s.Later > 0 {
		msg += fmt.Sprintf("; %d shards read up to the end of the window", s.Later)
	}
	return msg
}

// Resume describes how far an interrupted replay got: per shard, the last
// record handled, and the earliest of their arrival times, from which a
// new replay with --since picks up (re-putting what arrived in that same
// millisecond on other shards).
func (s Stats) Resume() string {
	if len(s.Position) == 0 {
		return "no record was handled"
	}
	var parts []string
	var earliest time.Time
	for _, sh := range slices.Sorted(maps.Keys(s.Position)) {
		p := s.Position[sh]
		parts = append(parts, fmt.Sprintf("%s at %s (arrived %s)", sh, p.SequenceNumber, formatTime(p.Arrival)))
		if earliest.IsZero() || p.Arrival.Before(earliest) {
			earliest = p.Arrival
		}
	}
	return "handled up to " + strings.Join(parts, ", ") + "; resume with --since " + formatTime(earliest)
}

func countList(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

type replayer struct {
	kin         ReplayClient
	opts        Options
	start       time.Time
	cutoff      time.Time // records that arrived at or after this end the shard
	callTimeout time.Duration
	// pollGap paces GetRecords on one shard: Kinesis allows 5 calls per
	// second per shard, shared with every other reader of the stream.
	pollGap      time.Duration
	backoff      backoff.Policy
	putAttempts  int
	nextPut      time.Time
	lastProgress time.Time
	stats        Stats
}

// Replay reads every shard of opts.From, closed parents included, and puts
// each command that passes the filter onto opts.To under its original
// partition key: a dead letter's original record, or a plain command as it
// is (rewritten for NewIDs and RefreshTTL). Shards are read one after
// another in shard id order, which puts a parent's records before its
// children's, so per-key order survives a reshard.
//
// With Since every shard starts at that time (an AT_TIMESTAMP iterator),
// else at its oldest record. Each shard ends at its first record that
// arrived at or after Until, or after the replay started (so that what the
// replay puts, or what is dead-lettered again meanwhile, is never read back
// in the same run), at the end of a closed shard, or once caught up.
// Arrival times are approximate and not strictly ordered, so records before
// Since are skipped as well.
//
// Replaying twice puts the commands twice; without NewIDs, a command that
// ran the first time is then skipped as a duplicate by the outcomes table.
// When ctx ends, Replay returns the Stats so far with ctx's error:
// Stats.Resume says how far it got.
func Replay(ctx context.Context, kin ReplayClient, opts Options) (Stats, error) {
	return newReplayer(kin, opts).run(ctx)
}

func newReplayer(kin ReplayClient, opts Options) *replayer {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 10 * time.Second
	}
	now := time.Now()
	return &replayer{
		kin: kin, opts: opts,
		start:        now,
		callTimeout:  DefaultCallTimeout,
		pollGap:      250 * time.Millisecond,
		backoff:      defaultBackoff,
		putAttempts:  8,
		lastProgress: now,
		stats: Stats{
			BySchema: map[string]int{}, ByReason: map[string]int{}, Position: map[string]Position{},
		},
	}
}

func (r *replayer) run(ctx context.Context) (Stats, error) {
	o := r.opts
	switch {
	case o.From == "":
		return r.stats, errors.New("replay: no stream to read")
	case o.To == "" && !o.DryRun:
		return r.stats, errors.New("replay: no target stream")
	case !o.Since.IsZero() && !o.Until.IsZero() && !o.Since.Before(o.Until):
		return r.stats, errors.New("replay: the window's start is not before its end")
	case !o.Since.IsZero() && o.Since.After(r.start):
		return r.stats, errors.New("replay: the window starts in the future")
	case o.Rate < 0:
		return r.stats, errors.New("replay: negative rate")
	}
	r.cutoff = r.start
	if !o.Until.IsZero() && o.Until.Before(r.cutoff) {
		r.cutoff = o.Until
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
	// No shard filter: the default lists every shard within retention,
	// closed parents included, which a window may need.
	in := &kinesis.ListShardsInput{StreamName: aws.String(r.opts.From)}
	for {
		cctx, cancel := context.WithTimeout(ctx, r.callTimeout)
		out, err := r.kin.ListShards(cctx, in)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("replay: list shards of %s: %w", r.opts.From, err)
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

func (r *replayer) iterator(ctx context.Context, shardID string) (*string, error) {
	in := &kinesis.GetShardIteratorInput{
		StreamName:        aws.String(r.opts.From),
		ShardId:           aws.String(shardID),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
	}
	if p, ok := r.stats.Position[shardID]; ok {
		// Again after an iterator expired (they live 5 minutes, which a
		// page of 1000 records at a low --rate outlasts).
		in.ShardIteratorType = types.ShardIteratorTypeAfterSequenceNumber
		in.StartingSequenceNumber = aws.String(p.SequenceNumber)
	} else if !r.opts.Since.IsZero() {
		// A time before the trim horizon starts there.
		in.ShardIteratorType = types.ShardIteratorTypeAtTimestamp
		in.Timestamp = aws.Time(r.opts.Since)
	}
	cctx, cancel := context.WithTimeout(ctx, r.callTimeout)
	defer cancel()
	it, err := r.kin.GetShardIterator(cctx, in)
	if err != nil {
		return nil, fmt.Errorf("replay: %s iterator for %s/%s: %w", in.ShardIteratorType, r.opts.From, shardID, err)
	}
	return it.ShardIterator, nil
}

func (r *replayer) shard(ctx context.Context, shardID string) error {
	iter, err := r.iterator(ctx, shardID)
	if err != nil {
		return err
	}
	for first := true; iter != nil; first = false {
		if !first {
			if err := pause(ctx, r.pollGap); err != nil {
				return err
			}
		}
		cctx, cancel := context.WithTimeout(ctx, r.callTimeout)
		out, err := r.kin.GetRecords(cctx, &kinesis.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(1000)})
		cancel()
		var expired *types.ExpiredIteratorException
		if errors.As(err, &expired) {
			if iter, err = r.iterator(ctx, shardID); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("replay: read %s/%s: %w", r.opts.From, shardID, err)
		}
		for _, rec := range out.Records {
			at := aws.ToTime(rec.ApproximateArrivalTimestamp)
			if !at.IsZero() && !at.Before(r.cutoff) {
				r.stats.Later++
				return nil
			}
			if at.IsZero() || !at.Before(r.opts.Since) {
				if err := r.record(ctx, shardID, rec); err != nil {
					return err
				}
			}
			r.stats.Position[shardID] = Position{SequenceNumber: aws.ToString(rec.SequenceNumber), Arrival: at}
		}
		r.progress(shardID)
		if len(out.Records) == 0 && aws.ToInt64(out.MillisBehindLatest) == 0 {
			return nil
		}
		iter = out.NextShardIterator // nil once a closed shard is read to its end
	}
	return nil
}

func (r *replayer) progress(shardID string) {
	if r.opts.Progress == nil || time.Since(r.lastProgress) < r.opts.ProgressEvery {
		return
	}
	r.lastProgress = time.Now()
	p := r.stats.Position[shardID]
	fmt.Fprintf(r.opts.Progress, "replay: %d records read, %d selected, %d replayed; reading %s, at %s\n",
		r.stats.Records, r.stats.Selected, r.stats.Replayed, shardID, formatTime(p.Arrival))
}

// candidate is one record read, as far as a replay needs to know it.
type candidate struct {
	letter            bool
	id, schema        string
	tags              map[string]string
	reason            string
	data              []byte // the command's bytes; nil when a letter could not keep them
	key               string
	origin            string // a dead letter's "stream/shard/sequence"
	shard, seq        string
	arrival           time.Time
	replayOf, putID   string
	toShard, toSeqNum string
}

func (r *replayer) record(ctx context.Context, shardID string, rec types.Record) error {
	r.stats.Records++
	c := candidate{shard: shardID, seq: aws.ToString(rec.SequenceNumber), arrival: aws.ToTime(rec.ApproximateArrivalTimestamp)}
	if l, err := Decode(rec.Data); err == nil {
		r.stats.Letters++
		c.letter, c.id, c.schema, c.reason, c.data, c.key = true, l.CommandID, l.CommandSchema, l.Reason, l.Record, partitionKey(l)
		c.origin = l.Stream + "/" + l.Shard + "/" + l.SequenceNumber
		if env, ok := readEnvelope(l.Record); ok {
			c.tags = env.tags
		}
	} else if env, ok := readEnvelope(rec.Data); ok {
		c.id, c.schema, c.tags, c.data, c.key = env.id, env.schema, env.tags, rec.Data, aws.ToString(rec.PartitionKey)
	} else {
		r.stats.Unreadable++
		return nil
	}
	if !r.opts.Filter.match(c) {
		return nil
	}
	r.stats.Selected++
	r.stats.BySchema[orDash(c.schema)]++
	if c.letter {
		r.stats.ByReason[c.reason]++
	}
	switch {
	case c.data == nil:
		r.stats.NoRecord++
		return r.print(c, "no original bytes: the record was too large to keep in the dead letter")
	case r.opts.DryRun:
		return r.print(c, "")
	}
	data := c.data
	c.putID = c.id
	if r.opts.NewIDs || r.opts.RefreshTTL {
		var err error
		if r.opts.NewIDs {
			c.replayOf = c.id
			c.putID = uuid.NewString()
		}
		var created time.Time
		if r.opts.RefreshTTL {
			created = time.Now()
		}
		data, err = rewrite(data, c.putID, c.replayOf, created)
		if err != nil {
			// Selected by its envelope, so readable: only a dead letter's
			// bytes can fail here (its command was rejected as unreadable).
			r.stats.Unreadable++
			return r.print(c, "not replayed: "+err.Error())
		}
	}
	if err := r.pace(ctx); err != nil {
		return err
	}
	out, err := putRetrying(ctx, r.kin, putRetry{
		stream: r.opts.To, key: c.key, data: data,
		log:         slog.New(slog.DiscardHandler),
		callTimeout: r.callTimeout, backoff: r.backoff,
		maxAttempts: r.putAttempts,
	})
	if err != nil {
		return fmt.Errorf("replay: put %s/%s onto %s: %w", shardID, c.seq, r.opts.To, err)
	}
	r.stats.Replayed++
	c.toShard, c.toSeqNum = aws.ToString(out.ShardId), aws.ToString(out.SequenceNumber)
	return r.print(c, "")
}

// pace holds puts to opts.Rate per second.
func (r *replayer) pace(ctx context.Context) error {
	if r.opts.Rate <= 0 {
		return nil
	}
	now := time.Now()
	if wait := r.nextPut.Sub(now); wait > 0 {
		if err := pause(ctx, wait); err != nil {
			return err
		}
		now = r.nextPut
	}
	r.nextPut = now.Add(time.Duration(float64(time.Second) / r.opts.Rate))
	return nil
}

// replayLine is one line of a replay's output.
type replayLine struct {
	CommandID      string `json:"commandId"`
	Schema         string `json:"schema"`
	Shard          string `json:"shard"`
	SequenceNumber string `json:"sequenceNumber"`
	Arrival        string `json:"arrival"`
	Reason         string `json:"reason,omitempty"`       // dead letters
	DeadLetterOf   string `json:"deadLetterOf,omitempty"` // dead letters: stream/shard/sequence of the original
	ReplayOf       string `json:"replayOf,omitempty"`     // with new ids: the id replayed
	ToShard        string `json:"toShard,omitempty"`
	ToSequence     string `json:"toSequenceNumber,omitempty"`
	Note           string `json:"note,omitempty"`
}

func (r *replayer) print(c candidate, note string) error {
	id := c.id
	if c.putID != "" {
		id = c.putID
	}
	line := replayLine{
		CommandID: id, Schema: c.schema, Shard: c.shard, SequenceNumber: c.seq, Arrival: formatTime(c.arrival),
		Reason: c.reason, ReplayOf: c.replayOf, ToShard: c.toShard, ToSequence: c.toSeqNum, Note: note,
	}
	if c.letter {
		line.DeadLetterOf = c.origin
	}
	b, err := json.Marshal(line)
	if err != nil {
		return err
	}
	_, err = r.opts.Out.Write(append(b, '\n'))
	return err
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

// commandHead is what a replay reads of a command: enough to select it.
type commandHead struct {
	id, schema string
	tags       map[string]string
}

// readEnvelope reads a command's id, schema and tags without validating
// it: a replay selects commands, the observer validates them.
func readEnvelope(data []byte) (commandHead, bool) {
	var cmd struct {
		Data struct {
			Envelope struct {
				Data struct {
					CommandID string            `json:"commandId"`
					Tags      map[string]string `json:"tags"`
				} `json:"data"`
			} `json:"envelope"`
			Command struct {
				Schema string `json:"schema"`
			} `json:"command"`
		} `json:"data"`
	}
	if len(data) == 0 || json.Unmarshal(data, &cmd) != nil || cmd.Data.Envelope.Data.CommandID == "" {
		return commandHead{}, false
	}
	return commandHead{id: cmd.Data.Envelope.Data.CommandID, schema: cmd.Data.Command.Schema, tags: cmd.Data.Envelope.Data.Tags}, true
}

// rewrite changes a command's envelope: a new commandId with the old one in
// the replayOf tag (when newID is set), and whenCreated (when created is
// set). Every other field is kept as it was.
func rewrite(data []byte, newID, replayOf string, created time.Time) ([]byte, error) {
	var outer, body, env, envData map[string]json.RawMessage
	steps := []struct {
		from  *map[string]json.RawMessage
		field string
		into  *map[string]json.RawMessage
	}{{nil, "", &outer}, {&outer, "data", &body}, {&body, "envelope", &env}, {&env, "data", &envData}}
	for _, st := range steps {
		raw := data
		if st.from != nil {
			raw = (*st.from)[st.field]
		}
		if err := json.Unmarshal(raw, st.into); err != nil || *st.into == nil {
			return nil, fmt.Errorf("command envelope unreadable at %q", st.field)
		}
	}
	if newID != "" {
		var tags map[string]string
		if raw, ok := envData["tags"]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &tags); err != nil {
				return nil, fmt.Errorf("envelope tags: %w", err)
			}
		}
		if tags == nil {
			tags = map[string]string{}
		}
		tags[TagReplayOf] = replayOf
		envData["commandId"] = mustJSON(newID)
		envData["tags"] = mustJSON(tags)
	}
	if !created.IsZero() {
		envData["whenCreated"] = mustJSON(created.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	}
	env["data"] = mustJSON(envData)
	body["envelope"] = mustJSON(env)
	outer["data"] = mustJSON(body)
	return json.Marshal(outer)
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // strings and maps of strings always marshal
	}
	return b
}
