package raftnode

import (
	"errors"
	"log/slog"
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
