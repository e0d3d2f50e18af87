package raftnode_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// Writes that wait together in the Ready loop's queue are proposed to raft
// together, so the leader sends each follower one append for all of them,
// not one per write (raft sends an append for every proposal message it
// takes). Each follower gets far fewer appends than there were writes.
func TestConcurrentWritesShareAppends(t *testing.T) {
	c := raftnodetest.Start(t, 3, slowTicks)
	li := c.WaitLeader()
	raftnodetest.Eventually(t, 10*time.Second, "the cluster goes quiet", func() bool {
		st := c.Members[li].Status()
		return st.Applied == st.Commit && st.Commit > 0
	})
	before := map[int]float64{}
	for i := range c.Members {
		if i != li {
			before[i] = appendsTo(t, c, li, i)
		}
	}

	const writers, each = 64, 10
	kv := c.Client(li)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				put(t, kv, fmt.Sprintf("k/%d/%d", w, i), "v", 0)
			}
		})
	}
	wg.Wait()

	for i, b := range before {
		// One append per write (and one commit notice at most) without
		// batching; 64 writers keep many writes queued at each turn.
		if perWrite := (appendsTo(t, c, li, i) - b) / (writers * each); perWrite >= 0.5 {
			t.Errorf("the leader sent member %d %.2f appends per write; want far fewer than 1", i+1, perWrite)
		}
	}
}
