// Package observer turns a config directory into running observers and
// responders: it reads and validates each config file (Sauna's
// self-describing Avro-JSON, or plain JSON), builds the enabled responders
// into a dispatcher, runs one Kinesis observer per enabled observer config
// and one HTTP ingest endpoint (observer/ingest) per enabled
// HttpIngestConfig, keeping each file's entity independent of the others.
// Which files are configs, and how they are read, is decided by
// IsConfigFile and ReadConfigFile, for `sauna run` and `sauna validate`
// alike.
//
// Reload follows the config directory in this order. Supervisor.Run checks
// that the directory can be read, puts a watch on it (dirWatch), runs a
// first rescan, and then turns every trigger (a file event, lost events,
// a value on Options.Reload, the periodic rescan) into one rescan once the
// directory has been quiet (quietLoop). A rescan (reloader.rescan) scans:
// it lists the config files and reads each with ReadConfigFile, and stops
// there when no file's bytes or read error changed since the last one. It
// parses only what is new: a file whose bytes are those of its running
// entry is not parsed again, nor is an unusable version already parsed.
// plan, a pure function of what runs and what the scan found, then decides
// what starts, stops, is replaced or keeps running, and which versions are
// refused and why: an unreadable (missing permission, not a regular file,
// larger than MaxConfigSize) or invalid version is refused and the last
// good one runs on; an id or responder module that a running config holds
// stays with it, and between new files the first by name wins. The
// reloader reports the plan (each refusal and warning logged once per
// version, ReloadStatus updated), closes the parsed entries nothing will
// run, and Supervisor.apply carries out the changes: responders are
// swapped in the dispatcher, every observer that goes or changes stops
// before any starts, and ingest endpoints stop, update in place or start.
//
// One Kinesis record goes through the code in this order:
//
//   - observer/kinesis: the KCL's Kinesis client decodes the GetRecords
//     answer holding it (getrecords.go, recordsProtocol), and the aggregate
//     guard inspects the batch for KPL aggregates the KCL would drop and
//     follows the shard's read budget (kpl.go, readbudget.go).
//   - processor.go: the KCL hands a batch to
//     shardProcessor.ProcessRecords, which prepares its records and checks
//     them in the ledger 100 at a time, the next 100 while it admits these
//     (prepareAhead, peek); admit waits for a free slot (at most
//     maxInFlightPerShard records run at once) and queues the record
//     behind the earlier records of its partition key; start gives it to a
//     runner goroutine (run: one parked since its last record, or a new
//     one), which calls execute.
//   - execute hands the record to the shard's command.Runner
//     (observer/command, run.go, Execute; prepared at admission, or
//     rejected for a KPL aggregate that could not be decoded, kpl.go), with
//     its command.Turn: how to release its key, the end of the previous
//     record of the key, and its own.
//   - run.go, Run: decode reads and validates the command
//     (responders.Decode) and resolves its responder once
//     (responders.Dispatcher.Resolve); a record that can never run is
//     rejected (settle.go, reject).
//   - ledger.go, claim: the command's idempotency claim in the outcomes
//     table (observer/outcomes); a command already done is a duplicate and
//     is skipped.
//   - attempt.go, attempts: each attempt (send) goes to the responder through
//     responders.Dispatcher.Send under the ownership fence of
//     responders/fence; a retryable failure is waited out (observer/backoff,
//     never shorter than the responder's Retry-After) and retried within the
//     retry budget, the claim renewed before each retry (ledger.go, renew).
//     This is the only place that waits and retries a command.
//   - settle.go: giveUp dead-letters (observer/deadletter) or fails a
//     command that cannot succeed; settle, its effect now final, releases
//     the key (turn.go, conclude: processor.go's release takes a token of
//     recording, frees the slot and starts the next record of the key),
//     waits until the previous record of the key has its outcome recorded,
//     then records its own in the ledger (ledger.go, record): a Finish
//     that finds the claim taken over ends it unrecorded, as the new holder
//     runs it again, while one tried again after its answer was lost finds
//     its own outcome there and counts it (outcomes.Table.Finish). After a
//     previous record that ended unrecorded, it records nothing and
//     releases its claim: that record is read and run again, and this one
//     after it, so that the key's last effect stays its latest command's.
//     A claimed run that must end first, its lease lost or at the hard
//     stop, keeps its claim, as its command ran, and hands its Finish,
//     fenced on the claim, to the Batcher (latefinish.go), which outlives
//     the run: behind the previous record's outcome when that was not known
//     yet (its own late Finish included), it Finishes this one once that
//     one is recorded, or releases its claim where it ended unrecorded,
//     until the claim expires or the Batcher's stop deadline; a run without
//     a claim (settleDone) hands its outcome to the Batcher as soon as the
//     previous record's is queued there, behind it (batcher.go: written in
//     the same write or a later one, several of a key to a write while
//     they wait; fenced on the lease, and once it is lost written alone,
//     only where no item holds the id), and counts as recorded once it is
//     written and the previous record ended recorded. One that must end
//     first hands its outcome over too (latefinish.go, doneLate): once the
//     previous record's is recorded it is written where no item holds its
//     id, or learnt from the write it was queued in, within a claim's
//     timeout and the stop deadline, and an item found there counts as
//     unrecorded; either late outcome is told to the next record of the key
//     (turn.go, Mark.handOff), whose own late outcome follows it. The
//     outcome, named by observer/verdict, goes to the metrics
//     (observer/metrics) and Options.OnOutcome.
//   - back in processor.go: finish frees the token (or the slot), tells
//     the next record of the key how this one ended, and moves the
//     checkpoint candidate past the finished prefix; checkpoint writes it
//     at most once per checkpoint interval, and a final time at Shutdown,
//     handOver or abandon; pace then holds the shard's next read for the
//     idle interval after a short batch, or while the KCL's read budget is
//     short.
//   - a record that ends without a final outcome (Execute returned false)
//     while the lease is held and the observer runs (its claim was taken
//     over, its outcome or dead letter could not be written; the run says
//     which through command.Turn.Stopped) stops its shard: finish marks it
//     stopped (stopShort), and at the KCL's next ProcessRecords, abandon
//     drains what was admitted, writes the last checkpoint (below that
//     record) and releases the lease (leases.Table.Abandon), logging the
//     cause. The KCL's consumer ends at its next renewal, and a later
//     shard-sync pass in another process, or here once a backoff that
//     doubles with each release of the shard has passed (until a
//     checkpoint reaches that record), takes the shard and reads it again
//     from the checkpoint, the new owner's claims deciding whether the
//     command runs. The observer's other shards go on; only a release that
//     fails restarts the observer (Observer.fail).
package observer
