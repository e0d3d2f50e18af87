package raftnode

import (
	"context"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
)

// peerGuard decides whether Raft traffic comes from a member of this
// cluster and counts what it refuses (cxkv_peer_refused_total, by reason).
//
// The rule, checked on the first message of every peer stream (a RaftBatch
// or a snapshot's head) and on every message in it:
//   - the cluster id is this cluster's (reason "cluster");
//   - the sender it names is a current member other than this one, and
//     every Raft message in the batch is from that sender (reason
//     "member");
//   - with peer TLS, the connection's certificate, already verified against
//     the peer CA during the handshake, covers the host of that member's
//     peer address (its DNS or IP SANs, as a server certificate covers the
//     address it is dialled at) (reason "identity").
//
// A connection that fails the TLS handshake (plaintext, a certificate from
// another CA, an expired one) never reaches the service; it is counted as
// reason "handshake".
type peerGuard struct {
	n       *Node
	tls     bool
	refused *prometheus.CounterVec
}

var peerRefusalReasons = []string{"handshake", "cluster", "member", "identity"}

func (g *peerGuard) init(n *Node) {
	g.n = n
	g.tls = n.cfg.PeerTLS != nil
	g.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cxkv_peer_refused_total",
		Help: "Raft connections and streams refused, by reason: handshake (TLS failed: plaintext, unknown CA, expired), cluster (another cluster's id), member (the sender is not a current member), identity (the certificate does not name the sender).",
	}, []string{"reason"})
	for _, r := range peerRefusalReasons {
		g.refused.WithLabelValues(r)
	}
	n.metrics.reg.MustRegister(g.refused)
}

// handshakeFailed counts a peer connection whose TLS handshake failed.
// Logged at debug only: a port scan or a TCP probe looks the same.
func (g *peerGuard) handshakeFailed(err error) {
	g.refused.WithLabelValues("handshake").Inc()
	g.n.cfg.Logger.Debug("peer TLS handshake refused", "err", err)
}

// admit checks a stream's first message: its cluster id and its sender,
// against the connection ctx carries.
func (g *peerGuard) admit(ctx context.Context, clusterID, from uint64) error {
	n := g.n
	if clusterID != n.clusterID {
		return g.refuse("cluster", fmt.Errorf("member %d of cluster %x refuses messages from member %d of cluster %x", n.cfg.ID, n.clusterID, from, clusterID))
	}
	if err := n.refuseRemovedPeer(from); err != nil {
		return toStatus(err) // says MEMBER_REMOVED: the removed member stops
	}
	// The members as the replicated table has them now: one added since
	// this member started is admitted, a removed one is not.
	addr, ok := n.members.get().addrs()[from]
	if !ok || from == n.cfg.ID {
		return g.refuse("member", fmt.Errorf("member %d refuses messages from %d: not another member of cluster %x", n.cfg.ID, from, n.clusterID))
	}
	if !g.tls {
		return nil
	}
	leaf := verifiedLeaf(ctx)
	if leaf == nil {
		return g.refuse("identity", fmt.Errorf("member %d refuses messages from %d: no verified peer certificate", n.cfg.ID, from))
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if err := leaf.VerifyHostname(host); err != nil {
		return g.refuse("identity", fmt.Errorf("member %d refuses messages claiming to be from member %d: the certificate (CN %q) does not cover its peer address %s", n.cfg.ID, from, leaf.Subject.CommonName, addr))
	}
	return nil
}

// sender checks that a Raft message in an admitted stream is from the
// member the stream was admitted for.
func (g *peerGuard) sender(admitted, from uint64) error {
	if from == admitted {
		return nil
	}
	return g.refuse("member", fmt.Errorf("member %d refuses a message from %d on member %d's stream", g.n.cfg.ID, from, admitted))
}

func (g *peerGuard) refuse(reason string, err error) error {
	g.refused.WithLabelValues(reason).Inc()
	g.n.cfg.Logger.Warn("refused Raft traffic", "reason", reason, "err", err)
	return toStatus(fmt.Errorf("%w: %w", errPeerRefused, err))
}
