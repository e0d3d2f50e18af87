package raftnode

import (
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
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

// Proposals are stamped with whole seconds of cluster time, so a busy
// client's place in the exactly-once table's LRU order moves once a second,
// not on every write; an applied stamp between seconds is rounded down too.
func TestClusterStampsAreWholeSeconds(t *testing.T) {
	var mono time.Duration
	c := newClusterClock(func() time.Duration { return mono })
	n := &Node{clock: c}
	n.cfg.WallClock = time.Now
	for _, step := range []struct {
		mono    time.Duration
		observe int64
		want    int64
	}{
		{0, 0, 0},
		{999 * time.Millisecond, 0, 0},
		{1000 * time.Millisecond, 0, 1000},
		{1999 * time.Millisecond, 0, 1000},
		{2500 * time.Millisecond, 10_400, 10_000}, // another member's precise stamp
		{3100 * time.Millisecond, 0, 11_000},
	} {
		mono = step.mono
		if step.observe != 0 {
			c.observe(step.observe)
		}
		cmd := &cxkvpb.Command{}
		n.stamp(cmd)
		if got := cmd.GetClusterMs(); cmd.ClusterMs == nil || got != step.want {
			t.Fatalf("at %v (observed %d): a proposal stamped %d, want %d", step.mono, step.observe, got, step.want)
		}
	}
}
