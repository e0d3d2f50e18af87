package raftnode

import (
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// TestLiveVotersSurviveTheLeadersQuorumCheck: a leader whose followers
// answer every heartbeat must see them live at every tick, including the
// one right after its check-quorum, when raft clears every peer's
// RecentActive until the peer's next answer. A voter silent for longer
// than an election timeout is not live.
func TestLiveVotersSurviveTheLeadersQuorumCheck(t *testing.T) {
	const electionTicks = 10
	mr := newMemRaft(t, electionTicks)
	rn := mr.rn
	n := &Node{cfg: Config{ID: 1, ElectionTicks: electionTicks}}
	drain := func() { mr.drain(nil) }
	// receive is the Ready loop's taking in of a peer's message.
	receive := func(m *pb.Message) {
		n.contact.heardFrom(m.GetFrom(), n.ticks, time.Now())
		if err := rn.Step(m); err != nil {
			t.Fatal(err)
		}
		drain()
	}
	tick := func() {
		rn.Tick()
		n.ticks++
		drain()
	}
	if err := rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	drain()
	for _, typ := range []pb.MessageType{pb.MessageType_MsgPreVoteResp, pb.MessageType_MsgVoteResp} {
		term := rn.Status().GetTerm()
		if typ == pb.MessageType_MsgPreVoteResp {
			term++ // a pre-vote is answered at the term it would campaign at
		}
		receive(&pb.Message{Type: typ.Enum(), From: proto.Uint64(2), To: proto.Uint64(1), Term: proto.Uint64(term)})
	}
	if st := rn.Status(); st.RaftState != raft.StateLeader {
		t.Fatalf("member 1 is %s, want leader", st.RaftState)
	}
	term := rn.Status().GetTerm()
	answer := func(from uint64) {
		receive(&pb.Message{Type: pb.MessageType_MsgHeartbeatResp.Enum(), From: proto.Uint64(from), To: proto.Uint64(1), Term: proto.Uint64(term)})
	}
	answer(2)
	answer(3)
	checks := 0
	for i := 0; i < 3*electionTicks; i++ {
		tick()
		st := rn.Status()
		if !st.Progress[2].RecentActive {
			checks++ // raft's quorum check has just cleared it
		}
		for _, v := range []uint64{2, 3} {
			if !n.live(st, v) {
				t.Fatalf("tick %d: voter %d answered the previous heartbeat but reads as not live (RecentActive %v)", i, v, st.Progress[v].RecentActive)
			}
		}
		answer(2)
		answer(3)
	}
	if checks == 0 {
		t.Fatal("the leader never checked its quorum: the test did not reach the moment it is about")
	}
	// Voter 3 falls silent; 2 keeps the leader's quorum.
	for i := 0; i <= electionTicks; i++ {
		tick()
		answer(2)
	}
	st := rn.Status()
	if n.live(st, 3) {
		t.Fatalf("voter 3, silent for %d ticks, reads as live", electionTicks+1)
	}
	if !n.live(st, 2) || !n.live(st, 1) {
		t.Fatal("voter 2 (answering) or the leader itself reads as not live")
	}
}
