package raftnodetest

import (
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

type recorder struct {
	mu    sync.Mutex
	sent  []*pb.Message
	snaps map[uint64]raft.SnapshotStatus
}

func (r *recorder) Send(ms []*pb.Message)    { r.mu.Lock(); r.sent = append(r.sent, ms...); r.mu.Unlock() }
func (r *recorder) Stop()                    {}
func (r *recorder) ReportUnreachable(uint64) {}
func (r *recorder) ReportSnapshot(id uint64, s raft.SnapshotStatus) {
	r.mu.Lock()
	r.snaps[id] = s
	r.mu.Unlock()
}
func (r *recorder) count() int { r.mu.Lock(); defer r.mu.Unlock(); return len(r.sent) }

func msg(from, to uint64, typ pb.MessageType) *pb.Message {
	return &pb.Message{From: &from, To: &to, Type: &typ}
}

func TestNetCutsOneWayAndReportsCutSnapshots(t *testing.T) {
	n := NewNet(1)
	r := &recorder{snaps: map[uint64]raft.SnapshotStatus{}}
	tr := n.Wrap(1)(r, r)
	n.Cut(1, 2)
	tr.Send([]*pb.Message{msg(1, 2, pb.MsgApp), msg(1, 3, pb.MsgApp), msg(1, 2, pb.MsgSnap)})
	if got := r.count(); got != 1 {
		t.Fatalf("with 1->2 cut, %d of the messages went through, want only the one to 3", got)
	}
	if s, ok := r.snaps[2]; !ok || s != raft.SnapshotFailure {
		t.Fatalf("a cut snapshot must be reported failed, got %v (reported %v)", s, ok)
	}
	n.Heal()
	n.SetLoss(Loss{Duplicate: 1})
	tr.Send([]*pb.Message{msg(1, 2, pb.MsgApp)})
	if got := r.count(); got != 3 {
		t.Fatalf("duplication of every message: %d sent in all, want 3", got)
	}
	n.SetLoss(Loss{Delay: 20 * time.Millisecond})
	tr.Send([]*pb.Message{msg(1, 2, pb.MsgApp)})
	if got := r.count(); got != 3 {
		t.Fatal("a delayed message went out at once")
	}
	Eventually(t, 5*time.Second, "the delayed message arrives", func() bool { return r.count() == 4 })
	n.SetLoss(Loss{Drop: 1})
	tr.Send([]*pb.Message{msg(1, 2, pb.MsgApp)})
	tr.Stop()
	if got, c := r.count(), n.Counts(); got != 4 || c.Dropped != 1 || c.Cut != 2 {
		t.Fatalf("after a drop: %d sent, counts %+v", got, c)
	}
}
