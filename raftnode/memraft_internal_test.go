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
		CheckQuorum: true, PreVote: true, AsyncStorageWrites: true, Logger: raftLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	return &memRaft{t: t, rn: rn, ms: ms}
}

// drain handles every Ready as the member does with AsyncStorageWrites:
// it hands each one's messages to sent first (as the loop hands them to
// prevoteHold.sent), writes the storage append to memory and steps the
// responses addressed to member 1 (the persister's and the applier's). It
// returns what went to peers, in order: the Readies' own messages and the
// storage appends' responses, which the persister sends after its write.
func (r *memRaft) drain(sent func([]*pb.Message)) (out []*pb.Message) {
	for r.rn.HasReady() {
		rd := r.rn.Ready()
		if sent != nil {
			sent(rd.Messages)
		}
		var resps []*pb.Message
		for _, m := range rd.Messages {
			switch m.GetTo() {
			case raft.LocalAppendThread:
				if s := m.GetSnapshot(); s != nil && !raft.IsEmptySnap(s) {
					if err := r.ms.ApplySnapshot(s); err != nil {
						r.t.Fatal(err)
					}
				}
				if err := r.ms.Append(m.GetEntries()); err != nil {
					r.t.Fatal(err)
				}
				if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
					r.ms.SetHardState(rd.HardState)
				}
				resps = append(resps, m.GetResponses()...)
			case raft.LocalApplyThread:
				resps = append(resps, m.GetResponses()...)
			default:
				out = append(out, m)
			}
		}
		for _, m := range resps {
			if m.GetTo() != 1 {
				out = append(out, m)
				continue
			}
			if err := r.rn.Step(m); err != nil {
				r.t.Fatalf("stepping %s: %v", m.GetType(), err)
			}
		}
	}
	return out
}
