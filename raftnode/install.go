package raftnode

import (
	"fmt"

	"github.com/cxkv/cxkv/kv"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// persistReady makes a Ready's state durable before anything acts on it: a
// received snapshot (state and log; its Data names what the receiver
// staged, see snapshotstream.go), then the entries and HardState in one
// batch, one fsync for every proposal the Ready carries. It reports whether
// anything was written.
//
// Installing a snapshot touches the state machine's storage and the log, so
// it cannot be one write for every state machine. It is three, each durable,
// ordered so that a crash after any of them leaves something openStorage
// can finish or undo:
//
//  1. the log records that an install of the snapshot began;
//  2. the state machine replaces its state by the snapshot the receiver
//     staged (atomically, by its contract; kv ingests one sstable);
//  3. one batch resets the log to the snapshot's point, stores its metadata,
//     the Ready's HardState and entries, and clears the record of step 1.
func persistReady(ls *logStore, sm StateMachine, rd raft.Ready) (bool, error) {
	s := rd.Snapshot
	if s == nil || raft.IsEmptySnap(s) {
		wrote, err := ls.persist(rd.Entries, rd.HardState, rd.MustSync)
		if err != nil {
			return false, fmt.Errorf("persist ready: %w", err)
		}
		return wrote, nil
	}
	meta := proto.Clone(s.GetMetadata()).(*pb.SnapshotMetadata)
	if err := ls.log.BeginInstall(meta); err != nil {
		return false, fmt.Errorf("install snapshot at %d: %w", meta.GetIndex(), err)
	}
	if err := sm.Restore(string(s.GetData())); err != nil {
		return false, fmt.Errorf("restore snapshot at %d: %w", meta.GetIndex(), err)
	}
	if err := ls.finishInstall(meta, rd.HardState, rd.Entries); err != nil {
		return false, fmt.Errorf("install snapshot at %d: %w", meta.GetIndex(), err)
	}
	return true, nil
}

// openStorage opens the member's log and reads the state machine's applied
// index, and the configuration stored with it. An install that a crash
// interrupted is finished if the state machine holds the snapshot, and
// forgotten if it still holds the old state: either way state and log agree
// before raft sees them.
func openStorage(store *kv.Store, sm StateMachine) (*logStore, uint64, error) {
	applied, cs, err := sm.Applied()
	if err != nil {
		return nil, 0, err
	}
	log := store.RaftLog()
	st, err := log.Load()
	if err != nil {
		return nil, 0, err
	}
	if meta := st.Installing; meta != nil {
		if applied >= meta.GetIndex() {
			// The snapshot's index was committed (the leader sent it), so
			// recording it as committed is what the interrupted Ready would
			// have written; a higher term without a vote is only news.
			hs := st.HardState
			if hs.GetCommit() < meta.GetIndex() {
				hs.Commit = proto.Uint64(meta.GetIndex())
			}
			if hs.GetTerm() < meta.GetTerm() {
				hs.Term, hs.Vote = proto.Uint64(meta.GetTerm()), proto.Uint64(0)
			}
			err = log.FinishInstall(meta, hs, nil)
		} else {
			err = log.AbandonInstall()
		}
		if err != nil {
			return nil, 0, fmt.Errorf("recovering an interrupted snapshot install at %d: %w", meta.GetIndex(), err)
		}
	}
	ls, err := openLogStore(log, cs)
	if err != nil {
		return nil, 0, err
	}
	ls.commitApplied(applied)
	return ls, applied, nil
}
