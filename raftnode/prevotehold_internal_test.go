package raftnode

import (
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// TestPreVoteIgnoredInLeaseIsAnsweredWhenTheLeaseEnds: when a leader dies,
// its two followers lose it at once, but their tick counts differ by a tick
// or two. The one whose timeout runs out first asks the other for a
// pre-vote while the other's lease on the dead leader has a tick left; raft
// ignores the request (check-quorum) and keeps nothing of it, and the
// pre-candidate asks again only after another randomised timeout, one to
// two election timeouts later. The request is answered once the lease has
// run out, as it would have been had it come a tick later, and only once.
func TestPreVoteIgnoredInLeaseIsAnsweredWhenTheLeaseEnds(t *testing.T) {
	const electionTicks = 10
	mr := newMemRaft(t, electionTicks)
	rn := mr.rn
	var hold prevoteHold
	// answers drains the Readys and returns member 1's pre-vote answers to
	// member 3.
	answers := func() (out []*pb.Message) {
		for _, m := range mr.drain(hold.sent) {
			if m.GetTo() == 3 && m.GetType() == pb.MessageType_MsgPreVoteResp {
				out = append(out, m)
			}
		}
		return out
	}
	receive := func(m *pb.Message) {
		if err := rn.Step(m); err != nil {
			t.Fatal(err)
		}
		hold.received(rn, m)
	}
	// Member 2 leads at term 2; member 1 follows it.
	receive(&pb.Message{Type: pb.MessageType_MsgHeartbeat.Enum(), From: proto.Uint64(2), To: proto.Uint64(1), Term: proto.Uint64(2), Commit: proto.Uint64(1)})
	answers()
	if st := rn.BasicStatus(); st.Lead != 2 || st.RaftState != raft.StateFollower {
		t.Fatalf("member 1 is %v with leader %d, want a follower of 2", st.RaftState, st.Lead)
	}
	// Member 2 dies. Nine ticks later (a tick short of the lease's end)
	// member 3, as up to date, asks for a pre-vote at term 3.
	for range electionTicks - 1 {
		rn.Tick()
		hold.tick(rn, electionTicks)
	}
	receive(&pb.Message{Type: pb.MessageType_MsgPreVote.Enum(), From: proto.Uint64(3), To: proto.Uint64(1), Term: proto.Uint64(3), LogTerm: proto.Uint64(1), Index: proto.Uint64(1)})
	if got := answers(); len(got) != 0 {
		t.Fatalf("answered %d pre-votes within the lease, want it ignored", len(got))
	}
	rn.Tick() // the lease runs out
	hold.tick(rn, electionTicks)
	got := answers()
	if len(got) != 1 || got[0].GetReject() || got[0].GetTerm() != 3 {
		t.Fatalf("after the lease ran out: pre-vote answers %v, want one grant at term 3", got)
	}
	for range 3 * electionTicks {
		rn.Tick()
		hold.tick(rn, electionTicks)
		if got := answers(); len(got) != 0 {
			t.Fatalf("the pre-vote was answered again: %v", got)
		}
	}
}
