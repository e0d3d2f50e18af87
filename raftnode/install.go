package raftnode

import (
	"bytes"
	"fmt"

	"github.com/cxkv/cxkv/kv"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// persistReady makes a Ready's state durable before anything acts on it: a
// received snapshot (state and log), then the entries and HardState in one
// batch, one fsync for every proposal the Ready carries. It reports whether
// anything was written.
func persistReady(ls *logStore, sm StateMachine, rd raft.Ready) (bool, error) {
	if s := rd.Snapshot; s != nil && !raft.IsEmptySnap(s) {
		meta := s.GetMetadata()
		if err := sm.Restore(bytes.NewReader(s.GetData())); err != nil {
			return false, fmt.Errorf("restore snapshot at %d: %w", meta.GetIndex(), err)
		}
		if err := ls.reset(proto.Clone(meta).(*pb.SnapshotMetadata)); err != nil {
			return false, err
		}
	}
	wrote, err := ls.persist(rd.Entries, rd.HardState, rd.MustSync)
	if err != nil {
		return false, fmt.Errorf("persist ready: %w", err)
	}
	return wrote, nil
}

// openStorage opens the member's log and reads the state machine's applied
// index, and the configuration stored with it.
func openStorage(store *kv.Store, sm StateMachine) (*logStore, uint64, error) {
	applied, cs, err := sm.Applied()
	if err != nil {
		return nil, 0, err
	}
	ls, err := openLogStore(store.RaftLog(), cs)
	return ls, applied, err
}
