package raftnode_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// A follower whose disk syncs slowly writes the appends that arrived during
// a sync together, in one batch and one sync, as a loop that waited out
// the sync would have taken them in one Ready: its syncs do not queue up
// one per append behind the slow disk.
func TestASlowFollowerWritesWhatQueuedInOneSync(t *testing.T) {
	disks := []*raftnodetest.Disk{raftnodetest.NewDisk(), raftnodetest.NewDisk(), raftnodetest.NewDisk()}
	c := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) {
		cfg.FS = disks[cfg.ID-1].FS
		// An election timeout of 2 s: the follower's loop waits out a
		// sync only after 500 ms (waitOutStuckSync), longer than these.
		cfg.ElectionTicks = 200
	})
	l := c.WaitLeader()
	f := (l + 1) % len(c.Members)
	kv := c.Client(l)
	put(t, kv, "warm", "v", 0)
	raftnodetest.Eventually(t, 5*time.Second, "the follower applies the warm-up write", func() bool {
		return c.Members[f].Status().Applied >= c.Members[l].Status().Commit
	})

	const writes = 30
	disks[f].Slow(100 * time.Millisecond)
	syncs0, _ := c.Members[f].Metrics()
	// The leader and the other follower commit each write; the slow one
	// receives every append while it syncs.
	for i := range writes {
		put(t, kv, fmt.Sprintf("w%d", i), "v", 0)
	}
	commit := c.Members[l].Status().Commit
	raftnodetest.Eventually(t, 10*time.Second, "the slow follower applies every write", func() bool {
		return c.Members[f].Status().Applied >= commit
	})
	disks[f].Slow(0)
	syncs1, _ := c.Members[f].Metrics()
	if d := syncs1 - syncs0; d > writes/3 {
		t.Fatalf("the slow follower made %d syncs for %d appends; the appends queued during a sync were not written together", d, writes)
	} else {
		t.Logf("the slow follower made %d syncs for %d appends", d, writes)
	}
}
