package command

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

// recordIn runs id through m as a command whose outcome was recorded, and
// reports whether m told the run to take a claim (recent).
func recordIn(t *testing.T, m *Memory, id string) (recent bool) {
	t.Helper()
	_, recent, ok := m.enter(context.Background(), Lease{Lost: make(chan struct{})}, m.key(id))
	if !ok {
		t.Fatal("enter refused")
	}
	m.leave(m.key(id), true)
	return recent
}

// asks reports whether a run of id would take a claim, without recording it.
func asks(t *testing.T, m *Memory, id string) (recent bool) {
	t.Helper()
	_, recent, ok := m.enter(context.Background(), Lease{Lost: make(chan struct{})}, m.key(id))
	if !ok {
		t.Fatal("enter refused")
	}
	m.leave(m.key(id), false)
	return recent
}

// idIn is the first id named prefix and a number that falls in stripe s.
func idIn(m *Memory, s *stripe, prefix string) string {
	for i := 0; ; i++ {
		if id := fmt.Sprint(prefix, i); stripeOf(m, id) == s {
			return id
		}
	}
}

// remembers reports whether id is in its stripe's generations (not the
// forgotten filter).
func remembers(m *Memory, id string) bool {
	s := stripeOf(m, id)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, inRecent := s.recent[m.key(id)]
	_, inOlder := s.older[m.key(id)]
	return inRecent || inOlder
}

// A Memory never remembers more than its cap, whatever the rate; the ids it
// drops are the oldest of their stripe, and every id recorded within
// 2*PeekFresh still makes its next run take a claim (the forgotten filter):
// forgetting early never lets a run skip its claim.
func TestMemoryBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const capacity = 2 * memoryStripes * 4
		m := newMemory(capacity)
		var ids []string
		byStripe := map[*stripe][]string{}
		falseHits := 0
		for i := range 20 * capacity {
			id := fmt.Sprint("cmd-", i)
			s := stripeOf(m, id)
			s.mu.Lock()
			filtered := s.mayBeForgotten(m.key(id))
			s.mu.Unlock()
			if recordIn(t, m, id) {
				// The forgotten filter may hold a new id's two bits (its
				// hashes are seeded afresh for every Memory): that run
				// takes a claim it did not need, which is safe. Anything
				// else that calls a new id recent is not.
				if !filtered {
					t.Fatalf("%s: a new id taken for one recorded lately", id)
				}
				falseHits++
			}
			ids = append(ids, id)
			byStripe[stripeOf(m, id)] = append(byStripe[stripeOf(m, id)], id)
			if _, n := m.size(); n > capacity {
				t.Fatalf("after %d ids: %d remembered, cap %d", i+1, n, capacity)
			}
		}
		// Each stripe's filter holds at most some 150 ids in 2^17 bits
		// here: a new id hits it about once in 200,000 lookups, and 5 hits
		// among these 5,120 would be a filter that fills much faster than
		// it should.
		if falseHits >= 5 {
			t.Errorf("%d of %d new ids hit the forgotten filter", falseHits, len(ids))
		}
		// Oldest first: what a stripe remembers is its latest ids.
		for s, sids := range byStripe {
			s.mu.Lock()
			n := len(s.recent) + len(s.older)
			s.mu.Unlock()
			for i, id := range sids {
				if want := i >= len(sids)-n; remembers(m, id) != want {
					t.Errorf("%s, %d of %d in its stripe (which remembers %d): remembered %v, want %v", id, i+1, len(sids), n, !want, want)
				}
			}
		}
		// No time has passed: every id, forgotten or not, still asks for a claim.
		for _, id := range ids {
			if !asks(t, m, id) {
				t.Fatalf("%s, recorded just now, would run without a claim", id)
			}
		}
		// Once 2*PeekFresh have passed, the forgotten filter is emptied
		// at the stripe's next record: the ids it held cannot be missed by
		// a Peek any run still trusts.
		time.Sleep(2*PeekFresh + time.Second)
		for s, sids := range byStripe {
			// A fresh id of this stripe empties its filter.
			recordIn(t, m, idIn(m, s, "later-"))
			s.mu.Lock()
			empty := s.forgottenUntil.IsZero()
			s.mu.Unlock()
			if !empty {
				t.Errorf("stripe of %s: forgotten filter kept after 2*PeekFresh", sids[0])
			}
			if id := sids[0]; asks(t, m, id) {
				t.Errorf("%s, forgotten 2*PeekFresh ago, still asks for a claim", id)
			}
		}
	})
}

// The default Memory holds MemoryCap ids at most.
func TestMemoryCap(t *testing.T) {
	m := NewMemory()
	for i := range MemoryCap + MemoryCap/2 {
		id := fmt.Sprint("cmd-", i)
		m.leave(m.key(id), true)
	}
	if _, n := m.size(); n > MemoryCap {
		t.Errorf("%d ids remembered, cap %d", n, MemoryCap)
	}
}
