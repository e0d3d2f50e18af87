package raftnode

import (
	"testing"
	"time"
)

// TestClusterClockRule pins the stamping rule of clock.go: a member's
// cluster time moves by its monotonic clock only, jumps forward to an applied
// time ahead of it, and never back.
func TestClusterClockRule(t *testing.T) {
	var mono time.Duration
	c := newClusterClock(func() time.Duration { return mono })
	if got := c.now(); got != 0 {
		t.Fatalf("a new clock reads %d, want 0", got)
	}
	mono += 1500 * time.Millisecond
	if got := c.now(); got != 1500 {
		t.Fatalf("after 1.5s of monotonic time: %d, want 1500", got)
	}
	c.observe(10_000) // another member's stamp, applied: ahead of ours
	if got := c.now(); got != 10_000 {
		t.Fatalf("after applying 10000: %d", got)
	}
	mono += time.Second
	c.observe(4_000) // a stamp behind ours changes nothing
	if got := c.now(); got != 11_000 {
		t.Fatalf("after a stamp behind ours and 1s: %d, want 11000", got)
	}
}
