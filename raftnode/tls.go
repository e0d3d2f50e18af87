package raftnode

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"google.golang.org/grpc/credentials"
	grpcpeer "google.golang.org/grpc/peer"
)

// TLSFiles names the PEM files one of a member's ports is secured with,
// as etcd's --cert-file, --key-file, --trusted-ca-file and
// --client-cert-auth (and their --peer- twins) do.
type TLSFiles struct {
	// CertFile and KeyFile are the member's certificate and its key. On
	// the peer port the member presents the same certificate when it dials
	// its peers, so it must allow both server and client authentication
	// and cover the host of the member's peer address.
	CertFile, KeyFile string
	// TrustedCAFile holds the CAs whose certificates the other side may
	// present: clients' with ClientCertAuth, peers' always.
	TrustedCAFile string
	// ClientCertAuth requires every client to present a certificate signed
	// by TrustedCAFile (client port; the peer port always requires one).
	ClientCertAuth bool
}

func (f *TLSFiles) check(port string, requireCA bool) error {
	if f.CertFile == "" || f.KeyFile == "" {
		return fmt.Errorf("raftnode: TLS on the %s port needs a certificate and its key", port)
	}
	if (requireCA || f.ClientCertAuth) && f.TrustedCAFile == "" {
		return fmt.Errorf("raftnode: TLS on the %s port verifies the other side's certificates: it needs a trusted CA file", port)
	}
	return nil
}

// certFiles holds one port's certificate, key and trusted CAs, re-read when
// their files change: every TLS handshake reads the three files (a few KB;
// connections are long-lived, so handshakes are rare) and parses them again
// only when their bytes differ from the last good load. A change that does
// not parse (the certificate rewritten but not yet its key) keeps the last
// good pair and is logged; the next handshake tries again. So a rotated
// certificate is used by the next connection without a restart, and the
// connections already open keep the one they were made with.
//
// No library was taken for this: grpc's certprovider/pemfile polls on a
// timer goroutine, insists the certificate and key share a directory, and
// logs both files' contents (the private key included) when they fail to
// parse; etcd's client/pkg transport would bring zap into the module and
// re-parses the key pair on every handshake without reloading the CA.
type certFiles struct {
	files TLSFiles
	log   *slog.Logger

	mu              sync.Mutex
	certPEM, keyPEM []byte
	caPEM           []byte
	cert            *tls.Certificate
	roots           *x509.CertPool
	lastErr         string // the last reload failure logged, to log it once
}

// loadCertFiles reads the files once; a file that is missing or does not
// parse is an error naming it.
func loadCertFiles(f TLSFiles, log *slog.Logger) (*certFiles, error) {
	c := &certFiles{files: f, log: log}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// reload re-reads the files, keeping what did not change or does not parse.
func (c *certFiles) reload() error {
	certPEM, err := os.ReadFile(c.files.CertFile)
	if err != nil {
		return fmt.Errorf("certificate file: %w", err)
	}
	keyPEM, err := os.ReadFile(c.files.KeyFile)
	if err != nil {
		return fmt.Errorf("key file: %w", err)
	}
	var errs []error
	if !bytes.Equal(certPEM, c.certPEM) || !bytes.Equal(keyPEM, c.keyPEM) {
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err == nil {
			cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0])
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("certificate %s with key %s: %w", c.files.CertFile, c.files.KeyFile, err))
		} else {
			c.certPEM, c.keyPEM, c.cert = certPEM, keyPEM, &cert
		}
	}
	if c.files.TrustedCAFile != "" {
		caPEM, err := os.ReadFile(c.files.TrustedCAFile)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("trusted CA file: %w", err))
		case bytes.Equal(caPEM, c.caPEM):
		default:
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(caPEM) {
				errs = append(errs, fmt.Errorf("trusted CA file %s: no PEM certificate in it", c.files.TrustedCAFile))
			} else {
				c.caPEM, c.roots = caPEM, pool
			}
		}
	}
	return errors.Join(errs...)
}

// current returns the certificate and trusted CAs to use now.
func (c *certFiles) current() (*tls.Certificate, *x509.CertPool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.reload(); err != nil {
		if msg := err.Error(); msg != c.lastErr {
			c.log.Warn("TLS files changed but cannot be used; keeping the last good ones", "err", err)
			c.lastErr = msg
		}
	} else {
		c.lastErr = ""
	}
	return c.cert, c.roots
}

// config is a fresh tls.Config from the files as they are now. A server
// requires and verifies the client's certificate when clientAuth is set.
func (c *certFiles) config(server, clientAuth bool) *tls.Config {
	cert, roots := c.current()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if server {
		cfg.Certificates = []tls.Certificate{*cert}
		if clientAuth {
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
			cfg.ClientCAs = roots
		}
		return cfg
	}
	cfg.RootCAs = roots
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	return cfg
}

// fileCreds are gRPC transport credentials that build each handshake's TLS
// configuration from certFiles as they are at that moment, both for serving
// and for dialing: what rotation needs on both ends, since a tls.Config's
// RootCAs cannot change once handed to gRPC. refused, if set, hears of each
// failed server handshake (plaintext, an unknown CA, an expired
// certificate).
type fileCreds struct {
	files      *certFiles
	clientAuth bool
	refused    func(error)
}

func (c *fileCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(c.files.config(false, false)).ClientHandshake(ctx, authority, raw)
}

func (c *fileCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := credentials.NewTLS(c.files.config(true, c.clientAuth)).ServerHandshake(raw)
	if err != nil && c.refused != nil {
		c.refused(err)
	}
	return conn, info, err
}

func (c *fileCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (c *fileCreds) Clone() credentials.TransportCredentials {
	cp := *c
	return &cp
}

// OverrideServerName is deprecated in gRPC and unused here.
func (c *fileCreds) OverrideServerName(string) error { return nil }

// ClientCommonName is the common name of the verified client certificate
// the call in ctx came with: a client's identity on a port with
// ClientCertAuth. ok is false when the call has none (plaintext, or TLS
// without client certificates).
func ClientCommonName(ctx context.Context) (name string, ok bool) {
	leaf := verifiedLeaf(ctx)
	if leaf == nil {
		return "", false
	}
	return leaf.Subject.CommonName, true
}

// verifiedLeaf is the verified certificate the other end of the call in ctx
// presented, or nil.
func verifiedLeaf(ctx context.Context) *x509.Certificate {
	p, ok := grpcpeer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}
