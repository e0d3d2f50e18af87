package raftnode

import (
	"log/slog"
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// memRaft is member 1 of voters 1, 2 and 3 as a bare RawNode on memory
// storage, with the member's raft settings, for tests that drive raft's
// ticks and messages by hand.
type memRaft struct {
	t  *testing.T
	rn *raft.RawNode
	ms *raft.MemoryStorage
}

func newMemRaft(t *testing.T, electionTicks int) *memRaft {
	ms := raft.NewMemoryStorage()
	if err := ms.ApplySnapshot(&pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: proto.Uint64(1), Term: proto.Uint64(1), ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}}}}); err != nil {
		t.Fatal(err)
	}
	rn, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: electionTicks, HeartbeatTick: 1, Storage: ms, Applied: 1, MaxSizePerMsg: maxSizePerMsg, MaxInflightMsgs: 256,
		CheckQuorum: true, PreVote: true, Logger: raftLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	return &memRaft{t: t, rn: rn, ms: ms}
}

// drain persists and advances every Ready, handing each one's messages to
// sent first.
func (r *memRaft) drain(sent func([]*pb.Message)) {
	for r.rn.HasReady() {
		rd := r.rn.Ready()
		if sent != nil {
			sent(rd.Messages)
		}
		if err := r.ms.Append(rd.Entries); err != nil {
			r.t.Fatal(err)
		}
		if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
			r.ms.SetHardState(rd.HardState)
		}
		r.rn.Advance(rd)
	}
}
