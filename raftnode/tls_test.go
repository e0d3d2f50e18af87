package raftnode_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/internal/certgen"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// startTLS starts three members with mutual TLS on both ports.
func startTLS(t *testing.T) (*raftnodetest.Cluster, *raftnodetest.PKI) {
	pki := raftnodetest.NewPKI(t)
	c := raftnodetest.Start(t, 3, pki.Option())
	c.UseClientTLS(pki.ClientTLS("app"))
	return c, pki
}

// getWith dials addr with creds and reads a key; the error is the call's.
func getWith(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = cxkvrpc.NewKVClient(conn).Get(ctx, &cxkvpb.GetRequest{Key: "k", Serializable: true})
	return err
}

func clientCreds(t *testing.T, roots *x509.CertPool, ca *certgen.CA, c certgen.Cert) credentials.TransportCredentials {
	t.Helper()
	pair, err := ca.Issue(c)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pair.TLS()
	if err != nil {
		t.Fatal(err)
	}
	return credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
}

// A cluster with mutual TLS on both ports replicates and serves a client
// with a certificate from the client CA; a plaintext client, a certificate
// from another CA, an expired one, and a client that does not trust the
// member's CA are all refused.
func TestTLSClientPortRefusesWhatItCannotVerify(t *testing.T) {
	c, pki := startTLS(t)
	lead := c.WaitLeader()
	idx := put(t, c.Client(lead), "k", "v", 0).GetRecord().GetIndex()
	other := (lead + 1) % 3
	raftnodetest.Eventually(t, 10*time.Second, "a follower applies the write over TLS", func() bool {
		return c.Members[other].Status().Applied >= idx
	})
	if got := get(t, c.Client(other), "k", true); got.GetIndex() != idx {
		t.Fatalf("follower over TLS: index %d, want %d", got.GetIndex(), idx)
	}

	addr := c.Endpoints()[other]
	if err := getWith(t, addr, clientCreds(t, pki.ClientCA.Pool(), pki.ClientCA, certgen.Cert{CommonName: "app"})); err != nil {
		t.Fatalf("a client with a good certificate: %v", err)
	}
	other2, err := certgen.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	refused := map[string]credentials.TransportCredentials{
		"plaintext":                   insecure.NewCredentials(),
		"certificate from another CA": clientCreds(t, pki.ClientCA.Pool(), other2, certgen.Cert{CommonName: "app"}),
		"expired certificate": clientCreds(t, pki.ClientCA.Pool(), pki.ClientCA, certgen.Cert{CommonName: "app",
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}),
		"no client certificate":                    credentials.NewTLS(&tls.Config{RootCAs: pki.ClientCA.Pool(), MinVersion: tls.VersionTLS12}),
		"member's certificate not trusted":         clientCreds(t, other2.Pool(), pki.ClientCA, certgen.Cert{CommonName: "app"}),
		"peer CA's certificate on the client port": clientCreds(t, pki.ClientCA.Pool(), pki.PeerCA, certgen.Cert{CommonName: "member-1", Hosts: raftnodetest.Loopback}),
	}
	for name, creds := range refused {
		if err := getWith(t, addr, creds); status.Code(err) != codes.Unavailable {
			t.Errorf("%s: %v, want the connection refused (Unavailable)", name, err)
		}
	}
}

// Replacing a member's certificate files changes the certificate its next
// connection is served with, without a restart; a certificate whose key
// has not been replaced yet is not used, the old pair is kept until both
// match.
func TestTLSRotatedCertificateUsedWithoutRestart(t *testing.T) {
	c, pki := startTLS(t)
	node := c.Members[0]
	// Rewrite member 1's files with a new pair: its next connection uses
	// it.
	files, _ := pki.MemberFiles(1)
	served := func() *x509.Certificate {
		conn, err := tls.Dial("tcp", c.Endpoints()[0], pki.ClientTLS("probe"))
		if err != nil {
			t.Fatalf("dial member 1: %v", err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0]
	}
	want := func(file string) *x509.Certificate {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(b, mustRead(t, files.KeyFile))
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf
	}
	first := want(files.CertFile)
	if got := served(); !got.Equal(first) {
		t.Fatalf("member 1 serves serial %v, its files hold %v", got.SerialNumber, first.SerialNumber)
	}

	// The certificate alone changes: it does not match the key, so the
	// member keeps serving the old pair.
	next, err := pki.ClientCA.Issue(certgen.Cert{CommonName: "member-1 rotated", Hosts: raftnodetest.Loopback})
	if err != nil {
		t.Fatal(err)
	}
	if err := certgen.WriteFile(files.CertFile, next.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := served(); !got.Equal(first) {
		t.Fatalf("with a certificate that does not match the key, member 1 serves %q, want the old pair kept", got.Subject.CommonName)
	}
	if err := certgen.WriteFile(files.KeyFile, next.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := served(); got.Subject.CommonName != "member-1 rotated" {
		t.Fatalf("after rotation member 1 serves %q, want the rotated certificate", got.Subject.CommonName)
	}
	if c.Members[0] != node || node.Err() != nil {
		t.Fatal("member 1 restarted or halted")
	}
	put(t, c.Client(0), "after-rotation", "v", 0)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Raft traffic from what is not a current member of this cluster, proven
// by a certificate from the peer CA that covers its peer address, is
// refused and counted: a valid peer certificate for another host claiming
// to be member 2, a certificate covering the members' host claiming to be
// a member that does not exist, a member's stream carrying another
// member's message, a certificate from another CA, an expired one, and
// plaintext. The cluster keeps replicating.
func TestPeerTLSRefusesNonMembersAndCountsThem(t *testing.T) {
	c, pki := startTLS(t)
	target := c.Members[0]
	peerAddr := c.PeerAddrs()[0]
	clusterID := raftnode.ClusterID("", map[uint64]string{1: c.PeerAddrs()[0], 2: c.PeerAddrs()[1], 3: c.PeerAddrs()[2]})
	refusedCount := func(reason string) float64 {
		return raftnodetest.Scrape(t, target.Handler()).Value(t, "cxkv_peer_refused_total", "reason="+reason)
	}
	another, err := certgen.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	peerRoots := pki.PeerCA.Pool()
	// send opens a Raft stream to member 1 claiming to be from, with one
	// heartbeat from msgFrom, and returns how the stream ended.
	send := func(creds credentials.TransportCredentials, from, msgFrom uint64) error {
		conn, err := grpc.NewClient(peerAddr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		s, err := cxkvrpc.NewPeerClient(conn).Send(ctx)
		if err != nil {
			return err
		}
		msg := heartbeatFrom(t, msgFrom, 1)
		if err := s.Send(&cxkvpb.RaftBatch{ClusterId: clusterID, From: from, To: 1, Messages: [][]byte{msg}}); err != nil {
			_, err = s.CloseAndRecv()
			return err
		}
		_, err = s.CloseAndRecv()
		return err
	}
	for _, tc := range []struct {
		name   string
		creds  credentials.TransportCredentials
		from   uint64
		msg    uint64 // the heartbeat's sender, if not from
		code   codes.Code
		reason string
	}{
		{"peer CA certificate for another host, claiming member 2",
			clientCreds(t, peerRoots, pki.PeerCA, certgen.Cert{CommonName: "intruder", Hosts: []string{"intruder.example"}}), 2, 0, codes.PermissionDenied, "identity"},
		{"peer CA certificate for the members' host, claiming member 9",
			clientCreds(t, peerRoots, pki.PeerCA, certgen.Cert{CommonName: "member-9", Hosts: raftnodetest.Loopback}), 9, 0, codes.PermissionDenied, "member"},
		{"member 2's stream carrying a message from member 3",
			clientCreds(t, peerRoots, pki.PeerCA, certgen.Cert{CommonName: "member-2", Hosts: raftnodetest.Loopback}), 2, 3, codes.PermissionDenied, "member"},
		{"client CA certificate", clientCreds(t, peerRoots, pki.ClientCA, certgen.Cert{CommonName: "member-2", Hosts: raftnodetest.Loopback}), 2, 0, codes.Unavailable, "handshake"},
		{"another CA", clientCreds(t, peerRoots, another, certgen.Cert{CommonName: "member-2", Hosts: raftnodetest.Loopback}), 2, 0, codes.Unavailable, "handshake"},
		{"expired peer certificate", clientCreds(t, peerRoots, pki.PeerCA, certgen.Cert{CommonName: "member-2", Hosts: raftnodetest.Loopback,
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)}), 2, 0, codes.Unavailable, "handshake"},
		{"plaintext", insecure.NewCredentials(), 2, 0, codes.Unavailable, "handshake"},
	} {
		before := refusedCount(tc.reason)
		msgFrom := tc.msg
		if msgFrom == 0 {
			msgFrom = tc.from
		}
		err := send(tc.creds, tc.from, msgFrom)
		if status.Code(err) != tc.code {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
			continue
		}
		raftnodetest.Eventually(t, 5*time.Second, tc.name+": counted as "+tc.reason, func() bool { return refusedCount(tc.reason) > before })
	}
	lead := c.WaitLeader()
	idx := put(t, c.Client(lead), "still", "replicating", 0).GetRecord().GetIndex()
	raftnodetest.Eventually(t, 10*time.Second, "every member applies a write after the intruders", func() bool {
		for _, m := range c.Members {
			if m.Status().Applied < idx {
				return false
			}
		}
		return true
	})
	if n := refusedCount("identity") + refusedCount("member"); n != 3 {
		t.Errorf("%v streams refused for identity or membership, want the 3 intruders' only (the members' own traffic is admitted)", n)
	}
}

// ClientCommonName is the verified client certificate's common name, and
// nothing for a call without one.
func TestClientCommonName(t *testing.T) {
	pki := raftnodetest.NewPKI(t)
	serverPair, err := pki.ClientCA.Issue(certgen.Cert{CommonName: "server", Hosts: raftnodetest.Loopback})
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := serverPair.TLS()
	if err != nil {
		t.Fatal(err)
	}
	type seen struct {
		name string
		ok   bool
	}
	names := make(chan seen, 1)
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		name, ok := raftnode.ClientCommonName(ctx)
		names <- seen{name, ok}
		return h(ctx, req)
	}
	serve := func(creds credentials.TransportCredentials) string {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer(grpc.Creds(creds), grpc.UnaryInterceptor(record))
		healthpb.RegisterHealthServer(srv, health.NewServer())
		go srv.Serve(lis)
		t.Cleanup(srv.Stop)
		return lis.Addr().String()
	}
	check := func(addr string, creds credentials.TransportCredentials) seen {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
		return <-names
	}
	mtls := serve(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: pki.ClientCA.Pool(), MinVersion: tls.VersionTLS12}))
	if got := check(mtls, credentials.NewTLS(pki.ClientTLS("alice"))); got != (seen{"alice", true}) {
		t.Errorf("mutual TLS as alice: %+v", got)
	}
	plain := serve(insecure.NewCredentials())
	if got := check(plain, insecure.NewCredentials()); got.ok {
		t.Errorf("plaintext: %+v, want no name", got)
	}
}

func heartbeatFrom(t *testing.T, from, to uint64) []byte {
	t.Helper()
	b, err := proto.Marshal(&raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(from), To: proto.Uint64(to), Term: proto.Uint64(1)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}
