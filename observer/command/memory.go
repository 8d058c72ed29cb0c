package command

import (
	"context"
	"sync"
	"time"
)

// Memory is what an observer process knows of the commands its runs handle,
// across all its shards: the commands being run now (flights) and those
// whose outcome it recorded lately (recent). A run without a claim trusts
// a Peek that found no item; Memory covers what that Peek cannot see: a
// second record of the command in flight in this process at the same time,
// and an outcome this process recorded after the Peek was read. It goes by
// commandId, not by identity: a different command under the same id, run
// without a claim at the same time, would write its outcome over the
// other's item, so it waits and takes a claim too, which records it beside
// the first. It lives in memory only and is bounded: recent forgets an id
// 2*PeekFresh after its outcome, and flights hold only runs in progress.
// Safe for concurrent use.
type Memory struct {
	mu sync.Mutex
	// flights maps the identities being run to the channel closed when
	// that run ends; nil until a second run of the identity waits.
	flights map[string]chan struct{}
	// recent maps identities to when this process recorded their outcome;
	// order lists them by that time, for pruning.
	recent map[string]time.Time
	order  []remembered
	now    func() time.Time
}

type remembered struct {
	id string
	at time.Time
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	return &Memory{
		flights: map[string]chan struct{}{},
		recent:  map[string]time.Time{},
		now:     time.Now,
	}
}

// enter registers a run of commandId id, waiting while another run of id
// is in flight in this process. waited is set when it had to wait, recent
// when this process recorded an outcome under id within 2*PeekFresh:
// either way the run must take a claim. ok is false when ctx ended or the lease was lost
// during the wait; the run is then not registered.
func (m *Memory) enter(ctx context.Context, lease Lease, id string) (waited, recent, ok bool) {
	m.mu.Lock()
	for {
		ch, busy := m.flights[id]
		if !busy {
			m.flights[id] = nil
			_, recent = m.recent[id]
			m.mu.Unlock()
			return waited, recent, true
		}
		if ch == nil {
			ch = make(chan struct{})
			m.flights[id] = ch
		}
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return waited, false, false
		case <-lease.Lost:
			return waited, false, false
		}
		waited = true
		m.mu.Lock()
	}
}

// leave ends the run of id that entered; recorded is set when its outcome
// is in the ledger.
func (m *Memory) leave(id string, recorded bool) {
	m.mu.Lock()
	ch := m.flights[id]
	delete(m.flights, id)
	if recorded {
		now := m.now()
		m.recent[id] = now
		m.order = append(m.order, remembered{id: id, at: now})
		m.prune(now)
	}
	m.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// prune forgets the outcomes recorded more than 2*PeekFresh ago; m.mu is
// held.
func (m *Memory) prune(now time.Time) {
	n := 0
	for n < len(m.order) && now.Sub(m.order[n].at) > 2*PeekFresh {
		old := m.order[n]
		if m.recent[old.id].Equal(old.at) {
			delete(m.recent, old.id)
		}
		n++
	}
	if n == 0 {
		return
	}
	clear(m.order[:n])
	m.order = m.order[n:]
}

// size is the number of identities in flight and remembered.
func (m *Memory) size() (flights, recent int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.flights), len(m.recent)
}
