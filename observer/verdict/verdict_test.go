package verdict

import (
	"testing"

	"github.com/sauna-io/sauna/responders"
)

// The values are wire values (metric labels, outcome table attributes, dead
// letters' reasons; docs/operations.md lists them): they never change.
func TestWireValues(t *testing.T) {
	want := []string{"executed", "rejected", "duplicate", "dead_lettered", "failed"}
	for i, o := range Outcomes {
		if string(o) != want[i] || o.Index() != i {
			t.Errorf("outcome %d = %q (index %d), want %q", i, o, o.Index(), want[i])
		}
	}
	if Outcome("EXECUTED").Index() != -1 || Outcome("").Index() != -1 {
		t.Error("a value that is no outcome has an index")
	}
	if FailedPermanently != "failed_permanently" || RetryBudgetExhausted != "retry_budget_exhausted" {
		t.Errorf("reasons %q, %q", FailedPermanently, RetryBudgetExhausted)
	}
	if got := RejectedBecause(responders.ReasonNoResponder); got != "rejected:no_responder" {
		t.Errorf("RejectedBecause = %q", got)
	}
}
