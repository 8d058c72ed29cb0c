package command

import (
	"time"

	"github.com/sauna-io/sauna/observer/outcomes"
	"github.com/sauna-io/sauna/responders"
)

// Prepared is a record read at admission: its command decoded, routed to
// its responder and, with the ledger on, digested; or the reason it must be
// rejected. The source prepares records in bulk, off the runs' goroutines,
// so that their identities can be checked in the ledger together (Peek)
// before any of them runs. The zero Prepared is not usable: make one with
// Runner.Prepare or Runner.Rejected.
type Prepared struct {
	rec    Record
	cmd    *responders.Command
	route  responders.Route
	schema string
	digest string
	// err is set when the record is rejected without running.
	err error
	// peeked is what the ledger held under the command's identity when it
	// was checked, at peekedAt (zero: never checked).
	peeked   outcomes.Peeked
	peekedAt time.Time
}

// Prepare decodes rec, resolves its responder and computes its digest (with
// the ledger on). It does no I/O and may run concurrently with anything.
// Expired or unroutable commands are rejected here, before anything is
// claimed, as nothing would run them.
func (r *Runner) Prepare(rec Record) Prepared {
	p := Prepared{rec: rec}
	p.err = p.decode(r)
	return p
}

// Rejected is rec prepared to be rejected for err without being decoded: a
// record its source found unreadable (a KPL aggregate that could not be
// unpacked, say).
func (r *Runner) Rejected(rec Record, err error) Prepared {
	return Prepared{rec: rec, err: err}
}

func (p *Prepared) decode(r *Runner) error {
	cmd, err := responders.Decode(p.rec.Data)
	if err != nil {
		return err
	}
	p.cmd, p.schema = cmd, cmd.SchemaURI()
	if p.route, err = r.Dispatcher.Resolve(cmd); err != nil {
		return err
	}
	if r.Ledger != nil {
		// Only the ledger needs it: a commandId names a command together
		// with what it asks.
		if p.digest, err = cmd.Digest(); err != nil {
			return &responders.RejectError{Reason: responders.ReasonInvalidData, CommandID: cmd.ID, Err: err}
		}
	}
	return nil
}

// Claim is the ledger claim the command would run under; false when the
// record is rejected, or prepared without a digest (the ledger is off).
func (p *Prepared) Claim(shard string) (outcomes.Claim, bool) {
	if p.err != nil || p.cmd == nil || p.digest == "" {
		return outcomes.Claim{}, false
	}
	return outcomes.Claim{
		CommandID: p.cmd.ID, Digest: p.digest, Schema: p.schema,
		Shard: shard, Sequence: p.rec.Sequence, Responder: p.cmd.Module,
	}, true
}

// Peeked tells the record what the ledger held under its claim's identity
// (outcomes.Table.Peek), read at at (taken before the read was sent). A
// record never told takes a claim before it runs.
func (p *Prepared) Peeked(res outcomes.Peeked, at time.Time) {
	p.peeked, p.peekedAt = res, at
}

// Sequence is the record's sequence number.
func (p *Prepared) Sequence() string { return p.rec.Sequence }

// PeekFresh is how long a Peek is trusted: a run that starts later than
// this after its record was checked takes a claim, as the identity may have
// been recorded since by another process. This process's own outcomes are
// remembered for twice as long (Memory), so that a Peek it trusts never
// misses one of them.
const PeekFresh = 10 * time.Second

// fast reports whether the Peek allows running without a claim at now.
func (p *Prepared) fast(now time.Time) bool {
	return !p.peekedAt.IsZero() && p.peeked.Seen == outcomes.Unseen && now.Sub(p.peekedAt) <= PeekFresh
}
