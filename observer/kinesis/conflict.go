package kinesis

import "github.com/sauna-io/sauna/observer/outcomes"

// conflict reports a command whose commandId the outcomes table already
// holds for a different command (another schema or data). It runs all the
// same: Sauna never de-duplicated, so its producers may reuse ids, and
// skipping it would lose it silently, or let any producer suppress another's
// command by copying its id.
func (o *Observer) conflict(c outcomes.Conflict) {
	o.log.Warn("command id reused by a different command; running it as a separate command",
		"command_id", c.Claim.CommandID, "schema", c.Claim.Schema, "other_schema", c.Other.Schema,
		"shard", c.Claim.Shard, "seq", c.Claim.Sequence, "responder", c.Claim.Responder,
		"digest", c.Claim.Digest, "other_digest", c.Other.Digest,
		"other_shard", c.Other.Shard, "other_seq", c.Other.Sequence)
	if o.met != nil {
		o.met.Responder(c.Claim.Responder).CommandIDConflict()
	}
}
