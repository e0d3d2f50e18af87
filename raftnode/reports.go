package raftnode

import (
	"sync"

	"go.etcd.io/raft/v3"
)

// peerReports holds what the transport learned about its messages until the
// Ready goroutine, which owns the RawNode, hands it to raft.
//
// A report is never dropped, and never blocks its sender (the Ready
// goroutine itself reports from Transport.Send). Both hold because reports
// coalesce per peer: raft needs only the latest word on each peer, so the
// pending set is bounded by the membership, whatever the rate of failures.
// Dropping was wrong for snapshots: a leader sends a follower in
// StateSnapshot nothing but heartbeats until it hears the snapshot's fate,
// so a lost SnapshotFailure left that follower behind until the leader
// changed. Unreachable reports (one per message to a cut-off peer) could
// fill the queue the failure had to pass through whenever the loop fell
// behind, since it took one report per turn.
type peerReports struct {
	mu          sync.Mutex
	unreachable map[uint64]struct{}
	snapshots   map[uint64]raft.SnapshotStatus // the latest per peer
	// wake holds one pending signal that reports wait; the Ready loop
	// takes them all at once.
	wake doorbell
}

func newPeerReports() *peerReports { return &peerReports{wake: newDoorbell()} }

func (r *peerReports) addUnreachable(peer uint64) {
	r.mu.Lock()
	if r.unreachable == nil {
		r.unreachable = map[uint64]struct{}{}
	}
	r.unreachable[peer] = struct{}{}
	r.mu.Unlock()
	r.wake.ring()
}

func (r *peerReports) addSnapshot(peer uint64, status raft.SnapshotStatus) {
	r.mu.Lock()
	if r.snapshots == nil {
		r.snapshots = map[uint64]raft.SnapshotStatus{}
	}
	r.snapshots[peer] = status
	r.mu.Unlock()
	r.wake.ring()
}

// take hands raft every pending report; Ready goroutine only. Snapshot
// reports go first: an unreachable report changes nothing for a peer in
// StateSnapshot, and after a failure it moves a probing peer nowhere.
func (r *peerReports) take(rn *raft.RawNode) {
	r.mu.Lock()
	snaps, unreachable := r.snapshots, r.unreachable
	r.snapshots, r.unreachable = nil, nil
	r.mu.Unlock()
	for peer, status := range snaps {
		rn.ReportSnapshot(peer, status)
	}
	for peer := range unreachable {
		rn.ReportUnreachable(peer)
	}
}
