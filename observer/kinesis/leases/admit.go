package leases

import (
	"fmt"
	"strings"
)

// The admitted mark. An owner that runs commands without claiming each one
// first must leave a trace of what it may have started, for the worker that
// takes the shard after it: before it admits a batch of records it stores
// the batch's last sequence number in the shard's item (AdmittedTo), fenced
// on its lease as a checkpoint is. The next owner reads the mark as it takes
// the lease (the acquire write returns the item as written, so a mark
// stored after that worker's read is seen too): records up to it may have
// been started and need a claim, records after it were never admitted by
// anyone. Every other write of the item names the attributes it changes, so
// the mark survives renewals, checkpoints, claims, handoffs, releases and
// takeovers; only RemoveLeaseInfo, for a shard trimmed from the stream,
// deletes it with the item. A child shard's item starts without one.

// Admit stores seq as the highest sequence number this worker admitted on
// shardID, fenced on its lease as CheckpointSequence is: a refused write
// means another worker owns the shard, Lost(shardID) is closed and the
// error wraps ErrLeaseLost. It never lowers the stored mark: a seq not
// after the mark this lease knows stored writes nothing. Any other failure
// is returned wrapped; the write may have landed, so a later Admit stores
// at least that seq.
func (t *Table) Admit(shardID, seq string) error {
	if !isDecimal(seq) {
		return fmt.Errorf("lease table %q: shard %s: admit up to %q: not a sequence number", t.cfg.TableName, shardID, seq)
	}
	sl := t.slot(shardID)
	sl.op.Lock()
	defer sl.op.Unlock()
	l := t.current(sl)
	if l == nil {
		return t.lostErr(shardID, "admit without a lease")
	}
	if l.ended() {
		return t.lostErr(shardID, "admit after the lease ended")
	}
	if !Later(seq, l.admitted) {
		return nil
	}
	if Later(l.admitTry, seq) {
		seq = l.admitTry
	}
	err := t.fenced(l, fmt.Sprintf("admit shard %s up to %s", shardID, seq), func(e *expr) string {
		return "SET " + e.name(attrAdmitted) + " = " + e.value("admitted", seq)
	})
	if err != nil {
		l.admitTry = seq
		return err
	}
	l.admitted, l.admitTry = seq, ""
	return nil
}

// Admitted is the mark stored when this worker took its current lease of
// shardID ("" when there was none, or no lease is held): records up to it
// may have been started by an earlier lease. What this lease admits since
// does not change it.
func (t *Table) Admitted(shardID string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if sl := t.slots[shardID]; sl != nil && sl.cur != nil {
		return sl.cur.inherited
	}
	return ""
}

// Later reports whether sequence number a comes after b. Sequence numbers
// are decimal strings of any length (56 digits on AWS, small integers on
// some emulators), compared as numbers. "" comes before every sequence
// number; a string that is not one comes after none and has none after it,
// so a mark that cannot be read lets no record pass it.
func Later(a, b string) bool {
	switch {
	case !isDecimal(a):
		return false
	case b == "":
		return true
	case !isDecimal(b):
		return false
	}
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return len(a) > len(b)
	}
	return a > b
}

// isDecimal reports whether v is a non-empty string of ASCII digits.
func isDecimal(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}
