package demo

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cxkv/cxkv/internal/certgen"
)

// demoTLS is `cxkv demo cluster --tls`'s throwaway PKI, made afresh on
// every start in Dir/tls: a client CA and a peer CA, each member's
// certificates for both ports (covering 127.0.0.1 and localhost), and one
// client certificate for the demo's own client and the other terminals.
type demoTLS struct {
	dir    string
	client *tls.Config
}

func (t *demoTLS) file(name string) string { return filepath.Join(t.dir, name) }

// makeDemoTLS writes the files and returns the client's configuration.
func makeDemoTLS(dir string) (*demoTLS, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	t := &demoTLS{dir: dir}
	clientCA, err := certgen.NewCA("cxkv demo client CA")
	if err != nil {
		return nil, err
	}
	peerCA, err := certgen.NewCA("cxkv demo peer CA")
	if err != nil {
		return nil, err
	}
	for name, ca := range map[string]*certgen.CA{"client-ca.crt": clientCA, "peer-ca.crt": peerCA} {
		if err := certgen.WriteFile(t.file(name), ca.CertPEM, 0o644); err != nil {
			return nil, err
		}
	}
	hosts := []string{"127.0.0.1", "localhost"}
	for id := 1; id <= members; id++ {
		for prefix, ca := range map[string]*certgen.CA{"m": clientCA, "peer": peerCA} {
			pair, err := ca.Issue(certgen.Cert{CommonName: fmt.Sprintf("member-%d", id), Hosts: hosts})
			if err != nil {
				return nil, err
			}
			if _, _, err := pair.Write(dir, fmt.Sprintf("%s%d", prefix, id)); err != nil {
				return nil, err
			}
		}
	}
	pair, err := clientCA.Issue(certgen.Cert{CommonName: "demo"})
	if err != nil {
		return nil, err
	}
	if _, _, err := pair.Write(dir, "client"); err != nil {
		return nil, err
	}
	cert, err := pair.TLS()
	if err != nil {
		return nil, err
	}
	t.client = &tls.Config{RootCAs: clientCA.Pool(), Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	return t, nil
}

// serverArgs are member id's TLS flags: mutual TLS on both ports.
func (t *demoTLS) serverArgs(id int) []string {
	return []string{
		"--cert-file", t.file(fmt.Sprintf("m%d.crt", id)), "--key-file", t.file(fmt.Sprintf("m%d.key", id)),
		"--trusted-ca-file", t.file("client-ca.crt"), "--client-cert-auth",
		"--peer-cert-file", t.file(fmt.Sprintf("peer%d.crt", id)), "--peer-key-file", t.file(fmt.Sprintf("peer%d.key", id)),
		"--peer-trusted-ca-file", t.file("peer-ca.crt"),
	}
}

// exports are the client's variables, for the other terminals.
func (t *demoTLS) exports() []string {
	return []string{"CXKV_CACERT=" + t.file("client-ca.crt"), "CXKV_CERT=" + t.file("client.crt"), "CXKV_KEY=" + t.file("client.key")}
}
