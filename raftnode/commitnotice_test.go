package raftnode_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// slowTicks: heartbeats every 100 ms, so the few of them a short test sees
// do not blur the count of appends per write; elections after 1 s, as in
// production.
func slowTicks(cfg *raftnode.Config) { cfg.TickInterval = 100 * time.Millisecond }

// appendsTo is the number of Raft messages but heartbeats that member
// leader has handed to peer id's stream: all it sent less the heartbeats
// it timed (one may be in flight, unanswered, at either end of a count).
func appendsTo(t *testing.T, c *raftnodetest.Cluster, leader, id int) float64 {
	t.Helper()
	m := raftnodetest.Scrape(t, c.Members[leader].Handler())
	peer := fmt.Sprintf("peer=%d", id+1)
	return m.Value(t, "cxkv_peer_messages_sent_total", peer) - m.Value(t, "cxkv_peer_round_trip_seconds", peer)
}

// Writes one at a time cost the leader one append per follower, not two:
// raft's entry-less append telling a follower that the commit index moved
// is overtaken by the next write's append, which carries it. With no next
// write, the followers still learn the commit (here from a heartbeat, the
// notice being held for longer than the test) and apply the last write.
func TestSequentialWritesSendOneAppendPerFollower(t *testing.T) {
	t.Cleanup(raftnode.SetCommitNoticeDelay(time.Hour)) // runs after the cluster stopped
	c := raftnodetest.Start(t, 3, slowTicks)
	li := c.WaitLeader()
	leader := c.Members[li]
	raftnodetest.Eventually(t, 10*time.Second, "the cluster goes quiet", func() bool {
		st := leader.Status()
		return st.Applied == st.Commit && st.Commit > 0
	})
	before := map[int]float64{}
	for i := range c.Members {
		if i != li {
			before[i] = appendsTo(t, c, li, i)
		}
	}

	const writes = 100
	kv := c.Client(li)
	var index uint64
	for range writes {
		index = put(t, kv, "k", "v", index).GetRecord().GetIndex()
	}

	for i, b := range before {
		perWrite := (appendsTo(t, c, li, i) - b) / writes
		// Raft alone sends 2 (the append, then the commit notice); held
		// notices leave 1.
		if perWrite >= 1.5 {
			t.Errorf("the leader sent member %d %.2f appends per write; want 1", i+1, perWrite)
		}
		raftnodetest.Eventually(t, 10*time.Second, fmt.Sprintf("member %d applies the last write", i+1), func() bool {
			return c.Members[i].Status().Applied >= index
		})
	}
}

// A follower that forwards its client's writes answers each only once it
// has applied it, so it is told of every commit at once: the leader sends
// it the notice after each append, not an hour later.
func TestWritesThroughAFollowerAreNotHeldBack(t *testing.T) {
	t.Cleanup(raftnode.SetCommitNoticeDelay(time.Hour))
	c := raftnodetest.Start(t, 3, slowTicks)
	li := c.WaitLeader()
	fi := (li + 1) % 3
	raftnodetest.Eventually(t, 10*time.Second, "the cluster goes quiet", func() bool {
		st := c.Members[li].Status()
		return st.Applied == st.Commit && st.Commit > 0
	})
	before := appendsTo(t, c, li, fi)

	const writes = 20
	kv := c.Client(fi)
	var index uint64
	for range writes {
		index = put(t, kv, "k", "v", index).GetRecord().GetIndex()
	}
	// Held notices would leave 1 per write, and each write waiting for a
	// heartbeat (100 ms) to apply on the follower that answers it.
	if perWrite := (appendsTo(t, c, li, fi) - before) / writes; perWrite < 1.8 {
		t.Errorf("the leader sent the forwarding member %.2f appends per write; want the append and the notice (2)", perWrite)
	}
}
