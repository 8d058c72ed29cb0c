package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// dgCheckNoRerun asserts the first guarantee of idempotency on the
// receiver's side: a command read as done in the outcome table (rows, a
// reading of it; what says when) reaches the receiver no more after that
// reading, whoever reads its record again (a restarted worker, the new owner
// of a shard, a worker that was frozen). Its one execution was received
// before its outcome was written, so any request that arrives after the
// item was read is a second one. It returns how many commands it checked.
func dgCheckNoRerun(t *testing.T, what string, rows map[string]dgOutcome, hits map[string][]dgHit) int {
	t.Helper()
	checked, bad := 0, 0
	for id, o := range rows {
		if o.status != "done" {
			continue
		}
		checked++
		var late []string
		for _, h := range hits[id] {
			if h.at.After(o.read) {
				late = append(late, fmt.Sprintf("%s@+%s", strings.TrimPrefix(h.path, "/"), h.at.Sub(o.read).Round(time.Millisecond)))
			}
		}
		if len(late) == 0 {
			continue
		}
		bad++
		if bad <= 5 {
			slices.Sort(late)
			t.Errorf("command %s, recorded done (%s, %d attempts) %s, reached the receiver again after that reading: %s",
				id, o.verdict, o.attempts, what, strings.Join(late, ", "))
		}
	}
	if bad > 0 {
		t.Errorf("%d commands recorded done %s were sent again", bad, what)
	}
	return checked
}
