package raftnode

import (
	"github.com/jonboulle/clockwork"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// The member's fault seams: the three things a test may put between a
// member and the world (besides Config.FS, the filesystem every byte on
// disk goes through). Each has one production implementation, the default;
// nothing else in the member knows whether it runs under test.

// Transport carries the Ready loop's raft messages to peers.
type Transport interface {
	// Send queues messages for their peers. It is called from the Ready
	// goroutine and must never block; a message it cannot deliver is
	// dropped (raft retransmits) and, if the peer looks gone, reported
	// unreachable. A wrapper may also call it from its own goroutines
	// (delayed deliveries), so implementations are safe for concurrent use.
	Send(msgs []*pb.Message)
	// Stop ends every goroutine the transport started; nothing is sent
	// after it returns.
	Stop()
}

// Reporter is how a transport tells raft what became of its messages: a
// peer it could not reach, a snapshot that was or was not delivered (raft
// waits for that report before it sends the peer anything else).
type Reporter interface {
	ReportUnreachable(peer uint64)
	ReportSnapshot(peer uint64, status raft.SnapshotStatus)
}

// Clock is every timer and time reading of the member: the Ready loop's
// ticks, the expiry queue, the cluster time stamped on proposals and watch
// progress notices. It is clockwork's interface, so the real clock is
// clockwork.NewRealClock() and a test can supply one that jumps.
type Clock = clockwork.Clock

// reporter hands reports to the Ready goroutine (reports.go): it never
// blocks and never loses one.
type reporter struct{ n *Node }

func (r reporter) ReportUnreachable(peer uint64) { r.n.reports.addUnreachable(peer) }

func (r reporter) ReportSnapshot(peer uint64, status raft.SnapshotStatus) {
	r.n.reports.addSnapshot(peer, status)
}

// newPeerTransport is the gRPC transport (kept as n.grpcPeers, for its
// counters), wrapped as the config asks.
func newPeerTransport(n *Node) Transport {
	n.grpcPeers = newTransport(n)
	var t Transport = n.grpcPeers
	if n.cfg.WrapTransport != nil {
		t = n.cfg.WrapTransport(t, reporter{n})
	}
	return t
}
