package raftnode

import "go.etcd.io/raft/v3"

// peerContact is when this member last heard from each peer, in its Ready
// loop's ticks (Node.ticks). A leader judges from it which voters are live before
// a membership change or a leadership hand-off.
//
// raft's Progress.RecentActive is not that judgement: a leader checking its
// quorum clears it for every peer once per election timeout and sets it
// again only at the peer's next message, so for the moment after each check
// every live peer reads as inactive. A check that runs then (and, retried
// an election timeout later, at the same phase again) refuses a change for
// want of live voters that answer every heartbeat.
//
// Touched only on the Ready-loop goroutine.
type peerContact struct {
	heard map[uint64]uint64 // peer -> Node.ticks when a message from it arrived
}

func (c *peerContact) heardFrom(id, now uint64) {
	if c.heard == nil {
		c.heard = map[uint64]uint64{}
	}
	c.heard[id] = now
}

// live says whether id is this member or a peer it heard from within the
// last election timeout (ticks) and that the leader's st still tracks.
func (n *Node) live(st raft.Status, id uint64) bool {
	if id == n.cfg.ID {
		return true
	}
	if _, ok := st.Progress[id]; !ok {
		return false
	}
	at, ok := n.contact.heard[id]
	return ok && n.ticks-at <= uint64(n.cfg.ElectionTicks)
}
