package command

import (
	"context"
	"hash/maphash"
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
// the first. It lives in memory only and is bounded: an id is remembered
// for at least 2*PeekFresh after its outcome and forgotten within
// 4*PeekFresh, and flights hold only runs in progress. Safe for concurrent
// use.
type Memory struct {
	// Every run enters and leaves: ids are spread over stripes, each with
	// its own lock, so that runs on all cores do not queue on one.
	stripes [memoryStripes]stripe
	seed    maphash.Seed
	now     func() time.Time
}

const memoryStripes = 32

type stripe struct {
	mu sync.Mutex
	// flights maps the ids being run to the channel closed when that run
	// ends; nil until a second run of the id waits. Ids are kept as their
	// 64-bit hashes: two ids that collide only cost one of them a claim.
	flights map[uint64]chan struct{}
	// recent and older hold the ids whose outcome this process recorded
	// since the last rotation and during the generation before it; a
	// rotation every 2*PeekFresh keeps an id for between 2 and 4 times
	// PeekFresh, without a clock per id.
	recent, older map[uint64]struct{}
	rotated       time.Time
	_             [64]byte // keeps each stripe's lock off its neighbours' cache line
}

// NewMemory returns an empty Memory.
func NewMemory() *Memory {
	m := &Memory{seed: maphash.MakeSeed(), now: time.Now}
	now := m.now()
	for i := range m.stripes {
		m.stripes[i] = stripe{flights: map[uint64]chan struct{}{}, recent: map[uint64]struct{}{}, rotated: now}
	}
	return m
}

// key is commandId id's key in Memory: taken once per run, for its enter
// and its leave.
func (m *Memory) key(id string) uint64 { return maphash.String(m.seed, id) }

// stripe is key's stripe.
func (m *Memory) stripe(key uint64) *stripe { return &m.stripes[key%memoryStripes] }

// enter registers a run of the commandId of key, waiting while another run
// of it is in flight in this process. waited is set when it had to wait,
// recent when this process recorded an outcome under it lately (at least within
// 2*PeekFresh): either way the run must take a claim. ok is false when ctx
// ended or the lease was lost during the wait; the run is then not
// registered.
func (m *Memory) enter(ctx context.Context, lease Lease, key uint64) (waited, recent, ok bool) {
	s := m.stripe(key)
	s.mu.Lock()
	for {
		ch, busy := s.flights[key]
		if !busy {
			s.flights[key] = nil
			_, recent = s.recent[key]
			if !recent {
				_, recent = s.older[key]
			}
			s.mu.Unlock()
			return waited, recent, true
		}
		if ch == nil {
			ch = make(chan struct{})
			s.flights[key] = ch
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return waited, false, false
		case <-lease.Lost:
			return waited, false, false
		}
		waited = true
		s.mu.Lock()
	}
}

// leave ends the run of key that entered; recorded is set when its outcome
// is in the ledger.
func (m *Memory) leave(key uint64, recorded bool) {
	s := m.stripe(key)
	s.mu.Lock()
	ch := s.flights[key]
	delete(s.flights, key)
	if recorded {
		if now := m.now(); now.Sub(s.rotated) >= 2*PeekFresh {
			// Sized as the generation it follows: a steady flow of
			// commands does not grow it again.
			s.older, s.recent, s.rotated = s.recent, make(map[uint64]struct{}, len(s.recent)), now
		}
		s.recent[key] = struct{}{}
	}
	s.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// size is the number of ids in flight and remembered.
func (m *Memory) size() (flights, recent int) {
	for i := range m.stripes {
		s := &m.stripes[i]
		s.mu.Lock()
		flights += len(s.flights)
		recent += len(s.recent) + len(s.older)
		s.mu.Unlock()
	}
	return flights, recent
}
