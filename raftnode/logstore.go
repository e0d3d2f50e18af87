package raftnode

import (
	"fmt"
	"sync"

	"github.com/cxkv/cxkv/kv"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// logStore is raft.Storage on the member's kv.RaftLog. The log holds entries
// [truncIndex+1, last]; the entry at truncIndex is kept only for its term.
// logStore caches the bounds, HardState, conf state and snapshot metadata
// that raft asks for on every step, and the newest entries (entryCache).
//
// Two goroutines write it, never at once: the persister (persist, each
// Ready's entries and HardState) and the Ready loop, which writes (an
// inline Ready's persist and install), truncates and sets the snapshot
// and the conf state only with the persister idle (handleReady waits for
// it first). Raft reads on the loop while the persister writes, the
// transport reads entries for snapshots and Status reads indexes, hence
// the mutex on the cache. Raft reads from Storage only indexes it knows
// are written, below the entries of a write under way.
type logStore struct {
	log *kv.RaftLog

	mu         sync.Mutex
	hs         *pb.HardState
	truncIndex uint64
	truncTerm  uint64
	last       uint64
	lastTerm   uint64
	snap       *pb.Snapshot // metadata only; nil until the first snapshot
	confState  *pb.ConfState
	recent     entryCache
}

func openLogStore(log *kv.RaftLog, confState []byte) (*logStore, error) {
	st, err := log.Load()
	if err != nil {
		return nil, err
	}
	ls := &logStore{
		log: log, hs: st.HardState, confState: &pb.ConfState{},
		truncIndex: st.TruncIndex, truncTerm: st.TruncTerm, last: st.LastIndex, lastTerm: st.LastTerm,
		recent: entryCache{budget: entryCacheBytes},
	}
	if st.Snapshot != nil {
		ls.snap = &pb.Snapshot{Metadata: st.Snapshot}
	}
	if len(confState) > 0 {
		if err := proto.Unmarshal(confState, ls.confState); err != nil {
			return nil, fmt.Errorf("raftnode: stored conf state: %w", err)
		}
	}
	return ls, nil
}

func (ls *logStore) InitialState() (*pb.HardState, *pb.ConfState, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return proto.Clone(ls.hs).(*pb.HardState), proto.Clone(ls.confState).(*pb.ConfState), nil
}

func (ls *logStore) Entries(lo, hi, maxSize uint64) ([]*pb.Entry, error) {
	ls.mu.Lock()
	first, last := ls.truncIndex+1, ls.last
	cached, ok := ls.recent.get(lo, hi, maxSize)
	ls.mu.Unlock()
	if lo >= first && ok {
		return cached, nil
	}
	if lo < first {
		return nil, raft.ErrCompacted
	}
	if hi > last+1 {
		return nil, fmt.Errorf("raftnode: entries [%d, %d) asked beyond the last index %d", lo, hi, last)
	}
	out, err := ls.log.Entries(lo, hi, maxSize)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 || out[0].GetIndex() != lo {
		return nil, raft.ErrUnavailable
	}
	return out, nil
}

func (ls *logStore) Term(i uint64) (uint64, error) {
	ls.mu.Lock()
	truncIndex, truncTerm, last, lastTerm := ls.truncIndex, ls.truncTerm, ls.last, ls.lastTerm
	ls.mu.Unlock()
	switch {
	case i == truncIndex:
		return truncTerm, nil
	case i < truncIndex:
		return 0, raft.ErrCompacted
	case i > last:
		return 0, raft.ErrUnavailable
	case i == last:
		return lastTerm, nil
	}
	ls.mu.Lock()
	term, ok := ls.recent.term(i)
	ls.mu.Unlock()
	if ok {
		return term, nil
	}
	term, ok, err := ls.log.Term(i)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, raft.ErrUnavailable
	}
	return term, nil
}

func (ls *logStore) LastIndex() (uint64, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.last, nil
}

func (ls *logStore) FirstIndex() (uint64, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.truncIndex + 1, nil
}

func (ls *logStore) Snapshot() (*pb.Snapshot, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.snap == nil {
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	return proto.Clone(ls.snap).(*pb.Snapshot), nil
}

// commitApplied raises the commit index to the state's applied index.
// Committed entries already on the member's synced log are applied while
// the persister may still be writing the HardState that raised the commit
// index (the applier and the persister run side by side), so an applied
// batch can reach the disk before that HardState; raft refuses to start
// with an applied index above the commit index. Raising it tells no lie:
// raft hands out only committed entries on the synced log. A state ahead
// of the log itself is left for raft to refuse.
func (ls *logStore) commitApplied(applied uint64) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if applied <= ls.hs.GetCommit() || applied > ls.last {
		return
	}
	hs := &pb.HardState{}
	if ls.hs != nil {
		hs = proto.Clone(ls.hs).(*pb.HardState)
	}
	hs.Commit = proto.Uint64(applied)
	ls.hs = hs
}

// persist writes ents (replacing any conflicting suffix) and hs in one batch,
// synced if sync, then updates the cache. It reports whether anything was
// written.
func (ls *logStore) persist(ents []*pb.Entry, hs *pb.HardState, sync bool) (bool, error) {
	ls.mu.Lock()
	last := ls.last
	ls.mu.Unlock()
	wrote, err := ls.log.Append(ents, hs, last, sync)
	if err != nil {
		return false, err
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if n := len(ents); n > 0 {
		ls.last, ls.lastTerm = ents[n-1].GetIndex(), ents[n-1].GetTerm()
		ls.recent.append(ents)
	}
	if hs != nil && !raft.IsEmptyHardState(hs) {
		ls.hs = proto.Clone(hs).(*pb.HardState)
	}
	return wrote, nil
}

// setSnapshot records snapshot metadata as the one raft sends to members
// that are too far behind.
func (ls *logStore) setSnapshot(meta *pb.SnapshotMetadata) error {
	if err := ls.log.SetSnapshot(meta, false); err != nil {
		return err
	}
	ls.mu.Lock()
	ls.snap = &pb.Snapshot{Metadata: meta}
	ls.mu.Unlock()
	return nil
}

// truncate drops every entry up to and including index, keeping its term.
func (ls *logStore) truncate(index, term uint64) error {
	ls.mu.Lock()
	from := ls.truncIndex + 1
	ls.mu.Unlock()
	if index < from {
		return nil
	}
	if err := ls.log.Truncate(from, index, term); err != nil {
		return err
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.truncIndex, ls.truncTerm = index, term
	ls.recent.dropTo(index)
	if ls.last < index {
		ls.last, ls.lastTerm = index, term
	}
	return nil
}

func (ls *logStore) setConfState(cs *pb.ConfState) {
	ls.mu.Lock()
	ls.confState = proto.Clone(cs).(*pb.ConfState)
	ls.mu.Unlock()
}

// finishInstall resets the log to the point of an installed snapshot, makes
// it the current snapshot, and stores hs and ents in the same synced batch.
func (ls *logStore) finishInstall(meta *pb.SnapshotMetadata, hs *pb.HardState, ents []*pb.Entry) error {
	if hs != nil && raft.IsEmptyHardState(hs) {
		hs = nil
	}
	if err := ls.log.FinishInstall(meta, hs, ents); err != nil {
		return err
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.truncIndex, ls.truncTerm = meta.GetIndex(), meta.GetTerm()
	ls.last, ls.lastTerm = meta.GetIndex(), meta.GetTerm()
	ls.recent.reset()
	if n := len(ents); n > 0 {
		ls.last, ls.lastTerm = ents[n-1].GetIndex(), ents[n-1].GetTerm()
		ls.recent.append(ents)
	}
	if hs != nil {
		ls.hs = proto.Clone(hs).(*pb.HardState)
	}
	ls.snap = &pb.Snapshot{Metadata: meta}
	ls.confState = proto.Clone(meta.GetConfState()).(*pb.ConfState)
	return nil
}
