package raftnodetest

import (
	"crypto/tls"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/cxkv/cxkv/internal/certgen"
	"github.com/cxkv/cxkv/raftnode"
	"google.golang.org/grpc/credentials"
)

// PKI is a throwaway pair of CAs for a test cluster, one for the client
// port and one for the peer port, with its files in Dir.
type PKI struct {
	t                testing.TB
	Dir              string
	ClientCA, PeerCA *certgen.CA
	// ClientCAFile and PeerCAFile hold the CAs' certificates.
	ClientCAFile, PeerCAFile string
}

// NewPKI makes the CAs.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{t: t, Dir: t.TempDir()}
	var err error
	if p.ClientCA, err = certgen.NewCA("cxkv test client CA"); err != nil {
		t.Fatal(err)
	}
	if p.PeerCA, err = certgen.NewCA("cxkv test peer CA"); err != nil {
		t.Fatal(err)
	}
	p.ClientCAFile, p.PeerCAFile = filepath.Join(p.Dir, "client-ca.crt"), filepath.Join(p.Dir, "peer-ca.crt")
	p.write(p.ClientCAFile, p.ClientCA.CertPEM)
	p.write(p.PeerCAFile, p.PeerCA.CertPEM)
	return p
}

// Loopback is what a member's certificate covers: the hosts the test
// cluster listens and is dialled on.
var Loopback = []string{"127.0.0.1", "localhost"}

// MemberFiles writes member id's client-port and peer-port certificates
// (signed by the two CAs, covering Loopback) and returns their TLSFiles,
// with client certificates required on both ports.
func (p *PKI) MemberFiles(id uint64) (client, peer *raftnode.TLSFiles) {
	p.t.Helper()
	cn := fmt.Sprintf("member-%d", id)
	cc, ck := p.Write(p.ClientCA, cn+"-client", certgen.Cert{CommonName: cn, Hosts: Loopback})
	pc, pk := p.Write(p.PeerCA, cn+"-peer", certgen.Cert{CommonName: cn, Hosts: Loopback})
	return &raftnode.TLSFiles{CertFile: cc, KeyFile: ck, TrustedCAFile: p.ClientCAFile, ClientCertAuth: true},
		&raftnode.TLSFiles{CertFile: pc, KeyFile: pk, TrustedCAFile: p.PeerCAFile}
}

// Option secures every member's ports with mutual TLS, on peer ports of
// their own.
func (p *PKI) Option() Option {
	return func(c *raftnode.Config) {
		c.ClientTLS, c.PeerTLS = p.MemberFiles(c.ID)
		if c.PeerAddr == "" {
			c.PeerAddr = peerPortAny
		}
	}
}

// Write issues a certificate from ca and writes it to Dir as name.crt and
// name.key.
func (p *PKI) Write(ca *certgen.CA, name string, c certgen.Cert) (certFile, keyFile string) {
	p.t.Helper()
	pair, err := ca.Issue(c)
	if err != nil {
		p.t.Fatal(err)
	}
	certFile, keyFile, err = pair.Write(p.Dir, name)
	if err != nil {
		p.t.Fatal(err)
	}
	return certFile, keyFile
}

// ClientTLS is a client's TLS configuration: it trusts the client CA and
// presents a certificate with common name cn signed by it.
func (p *PKI) ClientTLS(cn string) *tls.Config {
	p.t.Helper()
	pair, err := p.ClientCA.Issue(certgen.Cert{CommonName: cn})
	if err != nil {
		p.t.Fatal(err)
	}
	cert, err := pair.TLS()
	if err != nil {
		p.t.Fatal(err)
	}
	return &tls.Config{RootCAs: p.ClientCA.Pool(), Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// UseClientTLS makes Client dial the members with cfg.
func (c *Cluster) UseClientTLS(cfg *tls.Config) {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	c.creds = credentials.NewTLS(cfg)
}

func (p *PKI) write(path string, data []byte) {
	if err := certgen.WriteFile(path, data, 0o644); err != nil {
		p.t.Fatal(err)
	}
}
