// Package ingest is sauna's HTTP ingest endpoint: POST /v1/commands puts
// Sauna commands on a Kinesis stream for producers that have no AWS
// credentials or SDK. It is configured by an HttpIngestConfig file in the
// config directory, like observers and responders.
//
// A request carries a bearer token, checked against the SHA-256 hashes of
// the config in constant time, and one command (application/json) or up to
// 500 (application/x-ndjson). A command is either a full Sauna command or a
// bare self-describing inner command, which is wrapped in a new envelope.
// Every command is validated exactly as an observer validates a record
// (responders.Decode, then the time to live) before anything is put: one
// invalid command refuses the request with 400 and the list of errors.
//
// The answer is 202 only once Kinesis has acknowledged every record of the
// request, with each record's shard and sequence number. Records of
// concurrent requests share PutRecords calls (the Producer, after the KPL:
// a short linger, a bounded queue, only failed records resent). A request
// whose records are not all acknowledged by its put deadline is answered
// 429 (only throttling) or 503, with Retry-After, the records that are on
// the stream and the state of the others; nothing is sent after that
// answer. A record whose call went unanswered may be on the stream: a
// resubmission with the same commandId is then deduplicated by the
// observers' idempotency table.
package ingest
