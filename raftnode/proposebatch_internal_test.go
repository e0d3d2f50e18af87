package raftnode

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// leaderlessNode is a Node with just what taking and proposing writes
// needs: a follower of a three-voter configuration that knows no leader,
// so raft drops every proposal message.
func leaderlessNode(t *testing.T) *Node {
	t.Helper()
	ms := raft.NewMemoryStorage()
	if err := ms.ApplySnapshot(&pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: proto.Uint64(1), Term: proto.Uint64(1), ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}}}}); err != nil {
		t.Fatal(err)
	}
	rn, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: ms, Applied: 1, MaxSizePerMsg: maxSizePerMsg, MaxInflightMsgs: 256, Logger: raftLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	return nodeOver(rn)
}

// nodeOver is a Node over rn with just what taking and proposing writes
// needs.
func nodeOver(rn *raft.RawNode) *Node {
	n := &Node{rn: rn, cfg: Config{ID: 1}}
	n.metrics.proposalsFailed = prometheus.NewCounter(prometheus.CounterOpts{Name: "failed"})
	n.metrics.proposalSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "seconds"})
	n.waits.init(&n.metrics)
	return n
}

func takeWrite(n *Node, id uint64, size int) *proposal {
	p := &proposal{id: id, data: make([]byte, size), done: make(chan proposalResult, 1)}
	n.waits.add(p)
	n.take(p)
	return p
}

// answered returns p's result if it has one.
func answered(p *proposal) (proposalResult, bool) {
	select {
	case r := <-p.done:
		return r, true
	default:
		return proposalResult{}, false
	}
}

// The writes a turn takes are proposed together when the turn's queues are
// drained, and raft takes or drops them together: dropped, each is refused
// as not applied (no leader), none is left waiting.
func TestTakenWritesAreProposedTogetherAndRefusedTogether(t *testing.T) {
	n := leaderlessNode(t)
	var props []*proposal
	for id := uint64(1); id <= 5; id++ {
		props = append(props, takeWrite(n, id, 100))
	}
	for _, p := range props {
		if _, ok := answered(p); ok {
			t.Fatalf("write %d answered before the turn proposed what it took", p.id)
		}
	}
	n.proposeTaken()
	for _, p := range props {
		r, ok := answered(p)
		if !ok {
			t.Fatalf("write %d left waiting after raft dropped its batch", p.id)
		}
		var we *writeError
		if !errors.Is(r.err, errNoLeader) || !errors.As(r.err, &we) || we.outcome != notProposed {
			t.Errorf("write %d: %v; want refused as not applied for want of a leader", p.id, r.err)
		}
	}
	if len(n.taken.props) != 0 || n.taken.bytes != 0 {
		t.Fatalf("still holding %d writes (%d bytes) after proposing them", len(n.taken.props), n.taken.bytes)
	}
}

// A batch is closed before it would pass one append's worth of bytes
// (raft's MaxSizePerMsg), so one proposal message never fills the
// uncommitted tail alone: the write that would pass it waits for the next
// batch, and the ones before it are proposed at once.
func TestATakenBatchClosesAtOneAppendOfBytes(t *testing.T) {
	n := leaderlessNode(t)
	first := takeWrite(n, 1, maxSizePerMsg/2)
	second := takeWrite(n, 2, maxSizePerMsg/2)
	if _, ok := answered(first); ok {
		t.Fatal("a batch of exactly MaxSizePerMsg was proposed before the turn ended")
	}
	third := takeWrite(n, 3, 1)
	if _, ok := answered(first); !ok {
		t.Fatal("the batch was not proposed when the next write would take it past MaxSizePerMsg")
	}
	if _, ok := answered(second); !ok {
		t.Fatal("the second write of the full batch was not proposed with it")
	}
	if _, ok := answered(third); ok {
		t.Fatal("the write that would have passed the limit went with the full batch")
	}
	n.proposeTaken()
	if _, ok := answered(third); !ok {
		t.Fatal("the last write was not proposed at the end of the turn")
	}
}

// A leader handing its leadership over (MoveLeader) takes no proposal:
// the writes of the batch raft drops are refused as not applied because
// the leadership is moving, not as a full log (which tells a client to
// back off, not to find the new leader).
func TestWritesTakenDuringALeadershipTransferAreRefusedAsMoving(t *testing.T) {
	ms := raft.NewMemoryStorage()
	if err := ms.ApplySnapshot(&pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: proto.Uint64(1), Term: proto.Uint64(1), ConfState: &pb.ConfState{Voters: []uint64{1, 2}}}}); err != nil {
		t.Fatal(err)
	}
	rn, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: ms, Applied: 1, MaxSizePerMsg: maxSizePerMsg, MaxInflightMsgs: 256, Logger: raftLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	// persist writes what a Ready asks to the storage, as a member does
	// before raft counts its own vote or entries.
	persist := func() {
		for rn.HasReady() {
			rd := rn.Ready()
			if rd.HardState != nil {
				if err := ms.SetHardState(rd.HardState); err != nil {
					t.Fatal(err)
				}
			}
			if err := ms.Append(rd.Entries); err != nil {
				t.Fatal(err)
			}
			rn.Advance(rd)
		}
	}
	if err := rn.Campaign(); err != nil {
		t.Fatal(err)
	}
	persist()
	term := rn.BasicStatus().Term
	if err := rn.Step(&pb.Message{Type: pb.MsgVoteResp.Enum(), From: new(uint64(2)), To: new(uint64(1)), Term: term}); err != nil {
		t.Fatal(err)
	}
	persist()
	if st := rn.BasicStatus(); st.RaftState != raft.StateLeader {
		t.Fatalf("member 1 is %v, not the leader", st.RaftState)
	}
	rn.TransferLeader(2)
	if st := rn.BasicStatus(); st.LeadTransferee != 2 {
		t.Fatalf("no transfer to member 2 under way: %+v", st)
	}
	n := nodeOver(rn)
	p := takeWrite(n, 1, 100)
	n.proposeTaken()
	r, ok := answered(p)
	if !ok {
		t.Fatal("the write was left waiting")
	}
	var we *writeError
	if !errors.Is(r.err, errNoLeader) || !errors.As(r.err, &we) || we.outcome != notProposed || !strings.Contains(r.err.Error(), "moving to member 2") {
		t.Fatalf("a write during the transfer: %v; want it refused as not applied, the leadership moving to member 2", r.err)
	}
}
