package raftnode

import (
	"fmt"
	"sync"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Snapshots. The member keeps one current snapshot: raft metadata (index,
// term, conf state) and the state machine's view of the state at exactly
// that applied index, taken in the Ready goroutine between two applies.
// raft's Storage.Snapshot returns the metadata; when raft sends it (MsgSnap),
// the transport streams the matching view, so the data a follower restores
// is always the state at the index the metadata names.

type heldSnapshot struct {
	index uint64
	state StateSnapshot
	refs  int
}

type snapshotHolder struct {
	mu  sync.Mutex
	cur *heldSnapshot
}

// init takes a snapshot at the applied index when the member opens, so a
// restarted leader can serve snapshots at once.
func (h *snapshotHolder) init(n *Node) error { return h.take(n) }

// take captures the state now, at the applied index, and makes it current.
func (h *snapshotHolder) take(n *Node) error {
	if n.applied.get() == 0 {
		return nil
	}
	ss, err := n.sm.Snapshot()
	if err != nil {
		return err
	}
	applied := ss.Index()
	term, err := n.log.Term(applied)
	if err != nil {
		ss.Close()
		return fmt.Errorf("term of applied index %d: %w", applied, err)
	}
	cs := &pb.ConfState{}
	if err := proto.Unmarshal(ss.ConfState(), cs); err != nil {
		ss.Close()
		return err
	}
	if err := n.log.setSnapshot(&pb.SnapshotMetadata{Index: &applied, Term: &term, ConfState: cs}); err != nil {
		ss.Close()
		return err
	}
	h.mu.Lock()
	old := h.cur
	h.cur = &heldSnapshot{index: applied, state: ss, refs: 1}
	h.mu.Unlock()
	h.release(old)
	return nil
}

// acquire returns the held snapshot at index, if it is still the current
// one; the caller releases it when done streaming.
func (h *snapshotHolder) acquire(index uint64) *heldSnapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur == nil || h.cur.index != index {
		return nil
	}
	h.cur.refs++
	return h.cur
}

func (h *snapshotHolder) release(s *heldSnapshot) {
	if s == nil {
		return
	}
	h.mu.Lock()
	s.refs--
	last := s.refs == 0
	h.mu.Unlock()
	if last {
		s.state.Close()
	}
}

func (h *snapshotHolder) close() {
	h.mu.Lock()
	cur := h.cur
	h.cur = nil
	h.mu.Unlock()
	h.release(cur)
}

// snapshotDue reports whether SnapshotEntries were applied since the
// current snapshot.
func (n *Node) snapshotDue() bool {
	n.snaps.mu.Lock()
	var at uint64
	if n.snaps.cur != nil {
		at = n.snaps.cur.index
	}
	n.snaps.mu.Unlock()
	return n.applied.get() >= at+n.cfg.SnapshotEntries
}

// maybeSnapshot takes a new snapshot every SnapshotEntries applied entries
// and compacts the log behind it, keeping CatchUpEntries. The history has
// its own retention (retention.go).
func (n *Node) maybeSnapshot() error {
	if !n.snapshotDue() {
		return nil
	}
	applied := n.applied.get()
	if err := n.snaps.take(n); err != nil {
		return err
	}
	if applied <= n.cfg.CatchUpEntries {
		return nil
	}
	upTo := applied - n.cfg.CatchUpEntries
	term, err := n.log.Term(upTo)
	if err != nil {
		return nil // already compacted past it
	}
	return n.log.truncate(upTo, term)
}
