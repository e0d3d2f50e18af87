package raftnode

import (
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// peerContact is when this member last heard from each peer: in its Ready
// loop's ticks (Node.ticks), by which a leader judges which voters are live
// before a membership change or a leadership hand-off; and on its clock, by
// which it tells its clients whether it is in contact with a quorum
// (Node.publishContact).
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
	heard map[uint64]heardAt // peer -> when a message from it was taken in
}

type heardAt struct {
	tick uint64 // Node.ticks
	at   time.Time
}

func (c *peerContact) heardFrom(id, tick uint64, at time.Time) {
	if c.heard == nil {
		c.heard = map[uint64]heardAt{}
	}
	c.heard[id] = heardAt{tick: tick, at: at}
}

// quorumHeard is the latest moment by which a quorum of cs's voters had
// each been heard from, self counted as heard at now; the zero time if no
// quorum ever was. A joint configuration needs a quorum of both halves.
func (c *peerContact) quorumHeard(self uint64, cs *pb.ConfState, now time.Time) time.Time {
	at := c.quorumOf(self, cs.GetVoters(), now)
	if out := cs.GetVotersOutgoing(); len(out) > 0 {
		if o := c.quorumOf(self, out, now); o.Before(at) {
			at = o
		}
	}
	return at
}

func (c *peerContact) quorumOf(self uint64, voters []uint64, now time.Time) time.Time {
	if len(voters) == 0 {
		return time.Time{}
	}
	times := make([]time.Time, len(voters))
	for i, v := range voters {
		if v == self {
			times[i] = now
		} else {
			times[i] = c.heard[v].at // the zero time if never heard
		}
	}
	slices.SortFunc(times, func(a, b time.Time) int { return b.Compare(a) })
	return times[len(voters)/2] // the newest majority's oldest
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
	h, ok := n.contact.heard[id]
	return ok && n.ticks-h.tick <= uint64(n.cfg.ElectionTicks)
}

// publishContact records, at each tick, when this member, leading, last
// had a quorum's contact (0 when it does not lead), for inQuorumContact.
// The loop, not the answer, reads the contact, so a loop blocked (waiting
// out a sync that does not end, waitOutStuckSync) stops refreshing it and
// its answers soon say so.
func (n *Node) publishContact() {
	if n.rn.BasicStatus().RaftState != raft.StateLeader {
		n.quorumContact.Store(0)
		return
	}
	at := n.contact.quorumHeard(n.cfg.ID, n.log.confState, n.cfg.Clock.Now())
	if at.IsZero() {
		n.quorumContact.Store(0)
		return
	}
	n.quorumContact.Store(at.UnixNano())
}

// inQuorumContact says whether this member leads and, as of now, heard
// from a quorum within the last election timeout (Header.quorum_contact):
// then it is working, even while its applied index stands still. The
// bound is raft's own: a leader that has not heard from a quorum for an
// election timeout steps down (check-quorum). A clock that jumped back
// past the record reads as no contact until the next ticks.
func (n *Node) inQuorumContact() bool {
	at := n.quorumContact.Load()
	if at == 0 {
		return false
	}
	age := n.cfg.Clock.Since(time.Unix(0, at))
	return age >= 0 && age <= time.Duration(n.cfg.ElectionTicks)*n.cfg.TickInterval
}
