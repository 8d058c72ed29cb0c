package command

import (
	"context"
	"strconv"
	"testing"
)

// BenchmarkMemory is one run's way through Memory on the bulk path: enter
// and leave with its outcome recorded, every id new.
func BenchmarkMemory(b *testing.B) {
	m := NewMemory()
	lease := Lease{Lost: make(chan struct{})}
	ctx := context.Background()
	keys := make([]uint64, 1<<16)
	for i := range keys {
		keys[i] = m.key("cmd-" + strconv.Itoa(i))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		// New ids beyond the pool: the pool's keys shifted by the round.
		k := keys[i%len(keys)] + uint64(i/len(keys))*0x9e3779b97f4a7c15
		if _, _, ok := m.enter(ctx, lease, k); !ok {
			b.Fatal("enter refused")
		}
		m.leave(k, true)
	}
}
