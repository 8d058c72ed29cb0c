package main

import "testing"

// A missing or malformed SHARDS is an error, not a panic or a stream of 0
// shards.
func TestShardCount(t *testing.T) {
	if n, err := shardCount([]string{"2"}); n != 2 || err != nil {
		t.Errorf("2: got %d, %v", n, err)
	}
	for _, args := range [][]string{nil, {"x"}, {"0"}, {"-1"}, {"99999999999"}, {"2", "3"}} {
		if n, err := shardCount(args); err == nil {
			t.Errorf("%q: got %d, want an error", args, n)
		}
	}
}
