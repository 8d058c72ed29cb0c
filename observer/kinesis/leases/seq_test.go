package leases

import (
	"testing"

	"github.com/vmware/vmware-go-kcl-v2/clientlibrary/checkpoint"
)

func TestLater(t *testing.T) {
	const (
		big1 = "49590338271490256608559692538361571095921575989136588898"
		big2 = "49590338271490256608559692538361571095921575989136588899"
		big3 = "49590338271490256608559692538361571095921575989136589000"
	)
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"1", "", true},
		{"0", "", true},
		{"", "", false},
		{"", "1", false},
		{"5", "5", false},
		{"6", "5", true},
		{"5", "6", false},
		{"10", "9", true},
		{"9", "10", false},
		{"100", "99", true},
		{"007", "6", true},
		{"6", "007", false},
		{"007", "7", false},
		{big2, big1, true},
		{big1, big2, false},
		{big3, big2, true},
		{big1, big1, false},
		{big1, "999999999999999999999999999999999999999999999999999999", true},
		{"999999999999999999999999999999999999999999999999999999", big1, false},
		{big1, "5", true},
		{"5", big1, false},
		{"x", "1", false},
		{"1", "x", false},
		{"-1", "", false},
		{"2", "-1", false},
		{"+2", "1", false},
		{" 2", "1", false},
		{checkpoint.ShardEnd, "1", false},
		{"1", checkpoint.ShardEnd, false},
	} {
		if got := later(tc.a, tc.b); got != tc.want {
			t.Errorf("later(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
