package raftnode

import (
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"
)

// A leader sends a follower nothing but heartbeats while the follower is
// in StateSnapshot, until raft hears what became of the snapshot (or the
// follower acknowledges it). So a snapshot report must reach raft even
// when the transport has flooded the member with others: a dropped
// failure left the follower behind for good, with the rest of the cluster
// healthy (make chaos: a follower cut off while its snapshot was sent, and
// a watch on it that never caught up).
func TestSnapshotReportSurvivesAFloodOfReports(t *testing.T) {
	mr := newMemRaft(t, 10)
	rn := mr.rn
	if err := rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	mr.drain(nil)
	step := func(m *pb.Message) {
		t.Helper()
		if err := rn.Step(m); err != nil {
			t.Fatal(err)
		}
		mr.drain(nil)
	}
	for _, typ := range []pb.MessageType{pb.MessageType_MsgPreVoteResp, pb.MessageType_MsgVoteResp} {
		term := rn.Status().GetTerm()
		if typ == pb.MessageType_MsgPreVoteResp {
			term++
		}
		step(&pb.Message{Type: typ.Enum(), From: proto.Uint64(2), To: proto.Uint64(1), Term: proto.Uint64(term)})
	}
	if st := rn.Status(); st.RaftState != raft.StateLeader {
		t.Fatalf("member 1 is %s, want leader", st.RaftState)
	}
	term := rn.Status().GetTerm()
	// Member 2 acknowledges everything, so entries commit and apply;
	// member 3 hears nothing.
	for i := 0; i < 5; i++ {
		if err := rn.Propose([]byte("x")); err != nil {
			t.Fatal(err)
		}
		mr.drain(nil)
		last, err := mr.ms.LastIndex()
		if err != nil {
			t.Fatal(err)
		}
		step(&pb.Message{Type: pb.MessageType_MsgAppResp.Enum(), From: proto.Uint64(2), To: proto.Uint64(1), Term: proto.Uint64(term), Index: proto.Uint64(last)})
	}
	st := rn.Status()
	if st.Applied < 6 {
		t.Fatalf("applied %d, want the 6 entries of the term applied", st.Applied)
	}
	// The log member 3 needs is compacted away: it can only be caught up
	// by a snapshot.
	if _, err := mr.ms.CreateSnapshot(st.Applied, &pb.ConfState{Voters: []uint64{1, 2, 3}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := mr.ms.Compact(st.Applied); err != nil {
		t.Fatal(err)
	}
	step(&pb.Message{Type: pb.MessageType_MsgAppResp.Enum(), From: proto.Uint64(3), To: proto.Uint64(1), Term: proto.Uint64(term),
		Index: proto.Uint64(1), Reject: proto.Bool(true), RejectHint: proto.Uint64(0)})
	step(&pb.Message{Type: pb.MessageType_MsgHeartbeatResp.Enum(), From: proto.Uint64(3), To: proto.Uint64(1), Term: proto.Uint64(term)})
	if s := rn.Status().Progress[3].State; s != tracker.StateSnapshot {
		t.Fatalf("member 3 is in %s, want StateSnapshot (the test did not reach the moment it is about)", s)
	}

	// The snapshot's send fails while member 2's messages fail too, each
	// reported unreachable.
	n := &Node{reports: newPeerReports()}
	for range 1000 {
		reporter{n}.ReportUnreachable(2)
	}
	reporter{n}.ReportSnapshot(3, raft.SnapshotFailure)
	takeReports(n, rn)
	if s := rn.Status().Progress[3].State; s == tracker.StateSnapshot {
		t.Fatal("member 3 is still in StateSnapshot: the snapshot's failure never reached raft, and the leader will send it nothing more")
	}
}

// takeReports is what the Ready loop does with the reports waiting for it.
func takeReports(n *Node, rn *raft.RawNode) {
	select {
	case <-n.reports.wake:
		n.reports.take(rn)
	default:
	}
}
