package raftnode

import (
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// prevoteHold keeps each pre-vote request that raft has not answered and
// steps it again at every tick until raft answers it, for at most an
// election timeout: a request raft ignored only because this member's lease
// on its leader had a tick or two left is answered once the lease runs out,
// as it would have been had it come then.
//
// Check-quorum makes a follower ignore a (pre-)vote while it has heard from
// its leader within an election timeout, so that a live leader is not
// deposed. When the leader dies its followers lose it at the same moment,
// but their tick counts differ by a tick or two (each member's ticks fall at
// their own phase, and a loaded member's ticker drops ticks). The follower
// whose randomised timeout runs out first may ask the other while the
// other's lease has a tick left; raft ignores the request and keeps nothing
// of it, and the pre-candidate asks again only after another randomised
// timeout, one to two election timeouts later: in the failover benchmark,
// "ignored MsgPreVote ... lease is not expired (remaining ticks: 1)" was
// followed by 0.6 to 0.8 s without a leader. An answer given late changes
// nothing in this member (a pre-vote records no vote and keeps the term),
// and the pre-candidate counts one answer per member; a request from a term
// this member has reached since is stale and dropped.
//
// It is touched by the Ready loop only.
type prevoteHold struct {
	held map[uint64]*heldPrevote // by requester
}

type heldPrevote struct {
	m     *pb.Message
	ticks int // ticks held
}

// received keeps m if it is a pre-vote request raft may leave unanswered: one
// for a term beyond this member's.
func (h *prevoteHold) received(rn *raft.RawNode, m *pb.Message) {
	if m.GetType() != pb.MessageType_MsgPreVote || m.GetTerm() <= rn.BasicStatus().GetTerm() {
		return
	}
	if h.held == nil {
		h.held = map[uint64]*heldPrevote{}
	}
	h.held[m.GetFrom()] = &heldPrevote{m: m}
}

// sent drops the requests raft answered (in a Ready's messages). With
// AsyncStorageWrites raft puts a pre-vote answer among the responses of
// the Ready's storage append (it leaves once the persister wrote what came
// before it), not among the Ready's own messages, so those are searched
// too: an answer missed here would have the request stepped, and answered,
// again at every tick for an election timeout.
func (h *prevoteHold) sent(msgs []*pb.Message) {
	if len(h.held) == 0 {
		return
	}
	for _, m := range msgs {
		if m.GetTo() == raft.LocalAppendThread {
			h.sent(m.GetResponses())
			continue
		}
		if m.GetType() != pb.MessageType_MsgPreVoteResp {
			continue
		}
		if p := h.held[m.GetTo()]; p != nil && p.m.GetTerm() == m.GetTerm() {
			delete(h.held, m.GetTo())
		}
	}
}

// tick steps each held request again, and drops those held for an election
// timeout or overtaken by this member's term.
func (h *prevoteHold) tick(rn *raft.RawNode, electionTicks int) {
	if len(h.held) == 0 {
		return
	}
	for _, p := range h.held {
		p.ticks++
	}
	h.again(rn, electionTicks)
}

// again steps each held request once more without counting a tick, and
// drops those held for an election timeout or overtaken by this member's
// term: for a lease that ended other than by a tick (deadleader.go).
func (h *prevoteHold) again(rn *raft.RawNode, electionTicks int) {
	term := rn.BasicStatus().GetTerm()
	for from, p := range h.held {
		if p.ticks > electionTicks || p.m.GetTerm() <= term {
			delete(h.held, from)
			continue
		}
		_ = rn.Step(p.m) // as stepReceived: a peer's message raft refuses is a drop
	}
}
