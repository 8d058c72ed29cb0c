package sink

import (
	"sync"
	"testing"
	"time"
)

func TestParseFormatRoundTrip(t *testing.T) {
	d := Delivery{Consumer: "sauna-1", Shard: "shardId-000000000001", Key: "k17", N: 42, PutNanos: 1732250000000000000, DoneNanos: 1732250000123456789}
	line := d.Format()
	got, err := Parse(line[:len(line)-1])
	if err != nil {
		t.Fatal(err)
	}
	if got != d {
		t.Fatalf("got %+v, want %+v", got, d)
	}
	for _, bad := range []string{"", "a b c d e", "a b c x 1 2", "a b c 1 2 3 4"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q): no error", bad)
		}
	}
}

// TestWriterToServer sends reports from concurrent goroutines and checks
// that each arrives once, including those flushed only by Close.
func TestWriterToServer(t *testing.T) {
	var mu sync.Mutex
	got := map[int64]int{}
	srv, err := Listen("127.0.0.1:0", func(d Delivery) {
		mu.Lock()
		got[d.N]++
		mu.Unlock()
	}, func(err error) { t.Error(err) })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	w := NewWriter(srv.Addr(), "c1")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				if err := w.Report("shardId-0", "k", int64(g*1000+i), 1); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n == 8*500 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 8*500 {
		t.Fatalf("got %d distinct reports, want %d", len(got), 8*500)
	}
	for n, c := range got {
		if c != 1 {
			t.Fatalf("report %d arrived %d times", n, c)
		}
	}
	if err := w.Report("s", "k", 1, 1); err == nil {
		t.Fatal("Report after Close: no error")
	}
}
