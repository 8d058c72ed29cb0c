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
//
// It remembers at most MemoryCap recorded ids, so that its size does not
// follow the command rate (at 20,000 commands/s, 2-4 times PeekFresh is
// about 800,000 ids). Each stripe keeps two generations of at most
// MemoryCap/(2*memoryStripes) ids; a stripe whose current generation is
// full rotates early, forgetting its older generation: the oldest ids go
// first. An id forgotten that way before its 2*PeekFresh are over is kept
// in the stripe's forgotten filter, a fixed bitset (forgottenBits) that
// answers "perhaps" for it and, rarely, for an id never seen, until those
// 2*PeekFresh are over. Either way such a run takes a claim, as for any id
// recorded lately: one more conditional write to the outcome table, which
// finds the recorded outcome and settles the record as a duplicate. So
// forgetting early costs requests, never a second execution. Below about
// MemoryCap/(4*PeekFresh) commands/s per process (13,000 at the default)
// nothing is forgotten early.
type Memory struct {
	// Every run enters and leaves: ids are spread over stripes, each with
	// its own lock, so that runs on all cores do not queue on one.
	stripes [memoryStripes]stripe
	seed    maphash.Seed
	now     func() time.Time
	// genCap is the most ids of one generation of one stripe.
	genCap int
}

// MemoryCap is the most recorded command ids a Memory remembers by id
// (some 10 to 20 bytes each in its maps), besides a forgotten filter of forgottenBits bits
// per stripe (512 KiB in all).
const MemoryCap = 1 << 19

const (
	memoryStripes = 32
	// forgottenBits is the size of a stripe's forgotten filter; two bits
	// per id. With one early rotation's ids in it (MemoryCap/64) about
	// 1.4% of unseen ids find both their bits set and take a claim.
	forgottenBits = 1 << 17
)

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
	// forgotten holds the ids dropped by early rotations, until
	// forgottenUntil (zero: the filter is empty); allocated at the first
	// early rotation.
	forgotten      []uint64
	forgottenUntil time.Time
	_              [64]byte // keeps each stripe's lock off its neighbours' cache line
}

// NewMemory returns an empty Memory that remembers at most MemoryCap ids.
func NewMemory() *Memory { return newMemory(MemoryCap) }

func newMemory(capacity int) *Memory {
	m := &Memory{seed: maphash.MakeSeed(), now: time.Now, genCap: max(capacity/(2*memoryStripes), 1)}
	now := m.now()
	for i := range m.stripes {
		m.stripes[i] = stripe{flights: map[uint64]chan struct{}{}, recent: map[uint64]struct{}{}, rotated: now}
	}
	return m
}

// forgottenAt are key's two bits in a forgotten filter: bits of the key
// above those that chose its stripe.
func forgottenAt(key uint64) (a, b uint64) {
	return (key >> 5) % forgottenBits, (key >> 32) % forgottenBits
}

// mayBeForgotten reports whether key may be an id dropped early and not yet
// past its 2*PeekFresh.
func (s *stripe) mayBeForgotten(key uint64) bool {
	if s.forgottenUntil.IsZero() {
		return false
	}
	a, b := forgottenAt(key)
	return s.forgotten[a/64]&(1<<(a%64)) != 0 && s.forgotten[b/64]&(1<<(b%64)) != 0
}

// forget drops the older generation, keeping its ids in the forgotten
// filter when they were recorded less than 2*PeekFresh before now.
func (s *stripe) forget(now time.Time) {
	// The older generation's ids were recorded before the last rotation.
	if until := s.rotated.Add(2 * PeekFresh); len(s.older) > 0 && now.Before(until) {
		if s.forgotten == nil {
			s.forgotten = make([]uint64, forgottenBits/64)
		}
		for key := range s.older {
			a, b := forgottenAt(key)
			s.forgotten[a/64] |= 1 << (a % 64)
			s.forgotten[b/64] |= 1 << (b % 64)
		}
		if until.After(s.forgottenUntil) {
			s.forgottenUntil = until
		}
	}
	s.older = nil
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
			if !recent {
				recent = s.mayBeForgotten(key)
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
		now := m.now()
		if !s.forgottenUntil.IsZero() && !now.Before(s.forgottenUntil) {
			clear(s.forgotten)
			s.forgottenUntil = time.Time{}
		}
		if now.Sub(s.rotated) >= 2*PeekFresh || len(s.recent) >= m.genCap {
			s.forget(now)
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
