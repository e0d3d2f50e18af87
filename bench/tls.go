package bench

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cxkv/cxkv/internal/certgen"
)

// PKI is the throwaway certificates of one bench run's TLS clusters, made
// with crypto/x509 (internal/certgen) on every run and written under Dir:
// a CA for client ports and one for peer ports, every member's certificate
// for each (both covering loopback), and the bench client's certificate.
// Both systems run with the same setup: TLS on the client port with client
// certificates required, and mutual TLS between members.
type PKI struct {
	Dir                      string
	ClientCAFile, PeerCAFile string
	clientCA, peerCA         *certgen.CA
	client                   tls.Certificate
}

// MemberTLS are one member's certificate files.
type MemberTLS struct {
	CertFile, KeyFile, PeerCertFile, PeerKeyFile string
}

var loopbackHosts = []string{"127.0.0.1", "localhost"}

// NewPKI makes the CAs and the client's certificate under dir.
func NewPKI(dir string) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := &PKI{Dir: dir, ClientCAFile: filepath.Join(dir, "client-ca.crt"), PeerCAFile: filepath.Join(dir, "peer-ca.crt")}
	var err error
	if p.clientCA, err = certgen.NewCA("cxkv bench client CA"); err != nil {
		return nil, err
	}
	if p.peerCA, err = certgen.NewCA("cxkv bench peer CA"); err != nil {
		return nil, err
	}
	for path, ca := range map[string]*certgen.CA{p.ClientCAFile: p.clientCA, p.PeerCAFile: p.peerCA} {
		if err := certgen.WriteFile(path, ca.CertPEM, 0o644); err != nil {
			return nil, err
		}
	}
	pair, err := p.clientCA.Issue(certgen.Cert{CommonName: "bench"})
	if err != nil {
		return nil, err
	}
	if p.client, err = pair.TLS(); err != nil {
		return nil, err
	}
	return p, nil
}

// Member writes the certificates of the member called name (its client
// port's and its peer port's) and returns their files.
func (p *PKI) Member(name string) (MemberTLS, error) {
	var m MemberTLS
	var err error
	if m.CertFile, m.KeyFile, err = p.issue(p.clientCA, name+"-client", name); err != nil {
		return m, err
	}
	m.PeerCertFile, m.PeerKeyFile, err = p.issue(p.peerCA, name+"-peer", name)
	return m, err
}

func (p *PKI) issue(ca *certgen.CA, file, cn string) (certFile, keyFile string, err error) {
	pair, err := ca.Issue(certgen.Cert{CommonName: cn, Hosts: loopbackHosts})
	if err != nil {
		return "", "", fmt.Errorf("certificate %s: %w", file, err)
	}
	return pair.Write(p.Dir, file)
}

// ClientConfig is the bench client's TLS configuration: it trusts the
// client CA and presents its certificate.
func (p *PKI) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: p.clientCA.Pool(), Certificates: []tls.Certificate{p.client}, MinVersion: tls.VersionTLS12}
}
