package raftnode

import (
	"fmt"
	"net"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// A member serves two audiences: clients (KV, health) on Addr, and the other
// members (the Raft service) on PeerAddr. With no PeerAddr both share the
// client server, the simple case of one port. With one, the Raft service is
// served only there, so a firewall (and, with TLS, the peer CA) can keep
// clients away from it, and the client port no longer answers Raft calls.

// memberTLS is what secures the member's ports; nil fields are plaintext.
type memberTLS struct {
	client, peer *certFiles
}

// prepareServers reads the TLS files, sets up the peer guard and opens the
// peer port, if the member has one of its own: everything that can fail
// before the servers start.
func (n *Node) prepareServers() error {
	var err error
	if f := n.cfg.ClientTLS; f != nil {
		if n.tls.client, err = loadCertFiles(*f, n.cfg.Logger.With("port", "client")); err != nil {
			return fmt.Errorf("client TLS: %w", err)
		}
	}
	if f := n.cfg.PeerTLS; f != nil {
		if n.tls.peer, err = loadCertFiles(*f, n.cfg.Logger.With("port", "peer")); err != nil {
			return fmt.Errorf("peer TLS: %w", err)
		}
	}
	n.peerGuard.init(n)
	return n.listenPeers()
}

// newClientServer is the client port's server.
func (n *Node) newClientServer() *grpc.Server {
	if n.tls.client == nil {
		return n.newServer()
	}
	return n.newServer(grpc.Creds(&fileCreds{files: n.tls.client, clientAuth: n.cfg.ClientTLS.ClientCertAuth}))
}

// newPeerServer is the peer port's server: with peer TLS it requires a
// certificate from the peer CA, and counts the handshakes it refuses.
func (n *Node) newPeerServer() *grpc.Server {
	if n.tls.peer == nil {
		return n.newServer()
	}
	return n.newServer(grpc.Creds(&fileCreds{files: n.tls.peer, clientAuth: true, refused: n.peerGuard.handshakeFailed}))
}

// peerDialCreds are what the transport dials its peers with.
func (n *Node) peerDialCreds() credentials.TransportCredentials {
	if n.tls.peer == nil {
		return insecure.NewCredentials()
	}
	return &fileCreds{files: n.tls.peer}
}

// The HTTP/2 flow-control windows of the member's servers (both ports) are
// static. With gRPC's default dynamic windows a server sends a
// bandwidth-estimation PING for the first message it receives after each
// PING's answer, so at one write in flight every request and every raft
// message cost the receiver a PING written and its answer read, and the
// sender the PING read and its answer written: half of a member's socket
// syscalls per write (BenchmarkPut/clients=1: 25 writes and 43 reads per
// put, 13.6 and 20.7 with these). A window only bounds what a sender may
// have in flight unread; these are what the dynamic windows could grow to
// (16 MiB) and hold the largest message a member accepts, so a large
// request never waits for a window update and memory is bounded as before.
// The dialling side's windows do not matter: a member's outgoing peer
// stream receives nothing until it ends.
const (
	streamWindow = cxkvpb.MaxMessageBytes
	connWindow   = cxkvpb.MaxMessageBytes
)

// newServer builds a gRPC server with the member's limits and interceptors
// (n.interceptors).
func (n *Node) newServer(opts ...grpc.ServerOption) *grpc.Server {
	opts = append(opts, grpc.UnaryInterceptor(n.unary), grpc.StreamInterceptor(n.stream))
	opts = append(opts, grpc.StaticStreamWindowSize(streamWindow), grpc.StaticConnWindowSize(connWindow))
	opts = append(opts, grpc.MaxRecvMsgSize(cxkvpb.MaxMessageBytes), grpc.MaxSendMsgSize(cxkvpb.MaxMessageBytes))
	opts = append(opts, grpc.ForceServerCodecV2(cxkvrpc.Codec{}))
	return grpc.NewServer(opts...)
}

// listenPeers opens the peer port, if the member has one of its own.
func (n *Node) listenPeers() error {
	if !n.cfg.separatePeers() {
		return nil
	}
	lis := n.cfg.PeerListener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", n.cfg.PeerAddr); err != nil {
			return fmt.Errorf("listen for peers on %s: %w", n.cfg.PeerAddr, err)
		}
	}
	n.peerListener = lis
	return nil
}

// servePeers registers the Raft service: on a server of its own when the
// member has a peer port, on the client server otherwise.
func (n *Node) servePeers() {
	if n.peerListener == nil {
		cxkvrpc.RegisterPeerServer(n.server, &peerService{n: n})
		return
	}
	n.peerServer = n.newPeerServer()
	cxkvrpc.RegisterPeerServer(n.peerServer, &peerService{n: n})
	// Members ask each other for the membership (a bootstrapping member
	// whether it ran before) on the peer port.
	cxkvrpc.RegisterClusterServer(n.peerServer, n.cluster)
	n.metrics.grpc.InitializeMetrics(n.peerServer)
	n.done.Add(1)
	go func() { defer n.done.Done(); n.peerServer.Serve(n.peerListener) }()
}

// stopPeers closes the peer server at once: its incoming peer streams end
// when the member stops, and a sender whose stream breaks retries or gives
// up (raft retransmits), so there is nothing to drain.
func (n *Node) stopPeers() {
	if n.peerServer != nil {
		n.peerServer.Stop()
	}
}

// PeerAddr is the address the member serves its peers on: its own peer
// port, or the client address when peers share it.
func (n *Node) PeerAddr() string {
	if n.peerListener != nil {
		return n.peerListener.Addr().String()
	}
	return n.Addr()
}
