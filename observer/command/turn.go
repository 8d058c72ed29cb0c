package command

// Turn is a record's place among the records of its partition key, which
// its source runs in order (Execute). The command of the next record of the
// key may start once this one's effect is final (Released); the outcomes of
// a key's records are recorded in order (Prior), so that a redelivery after
// a crash never runs an earlier command of a key again after a later one
// of the key was recorded. The zero Turn is a record with nothing to tell
// and nothing to wait for.
type Turn struct {
	// Released, when set, is called once the command's effect is final:
	// its verdict is known and any dead letter written (or it is a
	// duplicate), before its outcome is recorded. The source may then start
	// the next record of the key; this one stays unfinished until it
	// returns. It may block, as back-pressure on the source, and is called
	// at most once: not at all by a run that stops before.
	Released func()
	// Prior is the end of the previous record of the key, when that one
	// is still unfinished (nil: none is). This run records its outcome only
	// once Prior ended with its own recorded; if Prior ended without one,
	// this run ends unfinished too.
	Prior *Mark
}

// Mark is the end of one record's run, as the next record of its key waits
// for it.
type Mark struct {
	done chan struct{}
	// recorded is set before done is closed.
	recorded bool
}

// NewMark returns the mark of a run that has not ended.
func NewMark() *Mark { return &Mark{done: make(chan struct{})} }

// End marks the run ended; recorded tells whether it ended with its outcome
// final and recorded (Execute returned true). Call it once.
func (m *Mark) End(recorded bool) {
	m.recorded = recorded
	close(m.done)
}

// conclude is reached once the command's effect is final. It tells the
// source (Turn.Released), which may start the next record of the key,
// then waits for the previous record of the key to end. It returns false
// when that record ended without its outcome recorded, or this run had to
// stop first (a hard stop, a lost lease): this run then records nothing
// either, and its record is read again after the earlier one. A run
// without a claim is uncounted in the Batcher while it waits, so that no
// write lingers for it.
func (c *run) conclude() bool {
	if c.turn.Released != nil {
		c.turn.Released()
		c.turn.Released = nil
	}
	prior := c.turn.Prior
	if prior == nil {
		return true
	}
	select {
	case <-prior.done:
	default:
		c.uncount()
		select {
		case <-prior.done:
		case <-c.Hard.Done():
			return false
		case <-c.Lease.Lost:
			return false
		}
	}
	if !prior.recorded {
		c.Log.Info("an earlier command of the partition key has no recorded outcome; leaving the record to be read again after it",
			"seq", c.out.Sequence, "command_id", c.out.CommandID)
	}
	return prior.recorded
}
