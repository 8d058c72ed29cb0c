// Package verdict names what became of a command read by an observer: its
// final outcome, and why a command that did not run was given up. It is the
// one vocabulary the metrics (observer/metrics), the outcomes table
// (observer/outcomes), the dead-letter stream (observer/deadletter) and the
// command runs (observer/command) share; every value here is also a wire
// value (a metric label, a table attribute, a dead letter's reason), so none
// may change.
package verdict

import "github.com/sauna-io/sauna/responders"

// Outcome is the final outcome of one record. Its value is its name in
// sauna_commands_total's outcome label, in CloudWatch's Outcome dimension
// and in the outcomes table's verdict attribute.
type Outcome string

// Outcomes. Each record ends with exactly one of them.
const (
	// Executed: the responder did it.
	Executed Outcome = "executed"
	// Rejected: the record can never run as sent (invalid, unknown schema,
	// expired, no responder); a responders.Reason says why. A rejected
	// record that is also dead-lettered is still Rejected.
	Rejected Outcome = "rejected"
	// Duplicate: a redelivered command (its id and digest) that already
	// ran; skipped. The outcomes table never records it: the command's own
	// outcome stays.
	Duplicate Outcome = "duplicate"
	// DeadLettered: failed permanently or ran out of retry budget, and went
	// to the dead-letter stream.
	DeadLettered Outcome = "dead_lettered"
	// Failed: failed permanently with no dead-letter stream configured; the
	// outcomes table and the log keep it.
	Failed Outcome = "failed"
)

// Outcomes lists every outcome, in the order metrics index them.
var Outcomes = [...]Outcome{Executed, Rejected, Duplicate, DeadLettered, Failed}

// Index is o's position in Outcomes, or -1 for a value that is none of them.
func (o Outcome) Index() int {
	switch o {
	case Executed:
		return 0
	case Rejected:
		return 1
	case Duplicate:
		return 2
	case DeadLettered:
		return 3
	case Failed:
		return 4
	}
	return -1
}

// Why a command was given up: a dead letter's reason, and the start of the
// reason its outcome records. A rejected record's is RejectedPrefix followed
// by the rejection's responders.Reason (see RejectedBecause); filters match
// reasons by prefix.
const (
	RejectedPrefix       = "rejected:"
	FailedPermanently    = "failed_permanently"
	RetryBudgetExhausted = "retry_budget_exhausted"
)

// RejectedBecause is the give-up reason of a record rejected for r.
func RejectedBecause(r responders.Reason) string { return RejectedPrefix + string(r) }
