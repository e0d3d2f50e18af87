package raftnode

import (
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// heartbeatGate lets at most one plain heartbeat response per peer and term
// reach raft between two ticks.
//
// Raft unpauses a follower it is probing on every heartbeat response and
// sends it another append of up to maxSizePerMsg. A follower that was
// paused (SIGSTOP, a long GC, a frozen VM) while the leader kept sending it
// heartbeats answers all of them at once when it resumes: 15 s of heartbeats
// made the leader read, decode and queue ~150 MiB of identical appends
// within a second, which pushed its RSS from under 100 MB to over 400 MB and
// stalled its Ready loop long enough to lose leadership. The leader sends
// one heartbeat per heartbeat tick, so one response per tick is all a live
// follower produces; the rest of a burst says nothing new. A response with a
// context acknowledges a ReadIndex and always goes through, as does one of a
// new term (it may depose this leader).
type heartbeatGate struct {
	seen map[uint64]uint64 // peer -> term of the response admitted since the last tick
}

func (g *heartbeatGate) admit(m *pb.Message) bool {
	if m.GetType() != pb.MessageType_MsgHeartbeatResp || len(m.GetContext()) > 0 {
		return true
	}
	if term, ok := g.seen[m.GetFrom()]; ok && term == m.GetTerm() {
		return false
	}
	if g.seen == nil {
		g.seen = map[uint64]uint64{}
	}
	g.seen[m.GetFrom()] = m.GetTerm()
	return true
}

// tick opens the gate again for every peer.
func (g *heartbeatGate) tick() { clear(g.seen) }

// stepReceived steps a message from a peer into raft unless the gate holds
// it back, and reports whether it stepped it.
func stepReceived(rn *raft.RawNode, g *heartbeatGate, m *pb.Message) bool {
	if !g.admit(m) {
		return false
	}
	_ = rn.Step(m) // raft's Step errors on a peer's message are drops (e.g. from an unknown member), as before
	return true
}
