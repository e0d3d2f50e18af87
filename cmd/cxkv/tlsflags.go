package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/cxkv/cxkv/raftnode"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// serverTLSFlags are etcd's TLS flags, under etcd's names, so operators
// carry their habits over: the client port's certificate, key, trusted CA
// and --client-cert-auth, and the peer port's (where mutual TLS is always
// on).
type serverTLSFlags struct {
	cert, key, ca     string
	clientCertAuth    bool
	peerCert, peerKey string
	peerCA            string
}

func (f *serverTLSFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.cert, "cert-file", "", "PEM certificate of the client port (turns TLS on for clients)")
	fs.StringVar(&f.key, "key-file", "", "PEM private key of --cert-file")
	fs.StringVar(&f.ca, "trusted-ca-file", "", "PEM CA certificates that sign clients' certificates (for --client-cert-auth)")
	fs.BoolVar(&f.clientCertAuth, "client-cert-auth", false, "require every client to present a certificate signed by --trusted-ca-file (its common name is the client's identity)")
	fs.StringVar(&f.peerCert, "peer-cert-file", "", "PEM certificate of the peer port, presented to peers both ways (turns mutual TLS on between members; must cover the host of --peer-advertise-addr, for server and client authentication)")
	fs.StringVar(&f.peerKey, "peer-key-file", "", "PEM private key of --peer-cert-file")
	fs.StringVar(&f.peerCA, "peer-trusted-ca-file", "", "PEM CA certificates that sign the members' peer certificates")
}

// resolve checks the flags and returns each port's files (nil: plaintext).
// TLS needs peers on a port of their own, so each port has one
// certificate and one CA.
func (f *serverTLSFlags) resolve(peerPort bool) (client, peer *raftnode.TLSFiles, err error) {
	if f.cert != "" || f.key != "" || f.ca != "" || f.clientCertAuth {
		switch {
		case f.cert == "" || f.key == "":
			return nil, nil, fmt.Errorf("client TLS needs both --cert-file and --key-file")
		case f.clientCertAuth && f.ca == "":
			return nil, nil, fmt.Errorf("--client-cert-auth needs --trusted-ca-file, the CA that signs client certificates")
		case !peerPort:
			return nil, nil, fmt.Errorf("--cert-file needs peers on a port of their own (--peer-addr): clients and peers cannot share one port's certificate")
		}
		client = &raftnode.TLSFiles{CertFile: f.cert, KeyFile: f.key, TrustedCAFile: f.ca, ClientCertAuth: f.clientCertAuth}
	}
	if f.peerCert != "" || f.peerKey != "" || f.peerCA != "" {
		switch {
		case f.peerCert == "" || f.peerKey == "" || f.peerCA == "":
			return nil, nil, fmt.Errorf("peer TLS needs --peer-cert-file, --peer-key-file and --peer-trusted-ca-file: members verify each other both ways")
		case !peerPort:
			return nil, nil, fmt.Errorf("--peer-cert-file needs peers on a port of their own (--peer-addr)")
		}
		peer = &raftnode.TLSFiles{CertFile: f.peerCert, KeyFile: f.peerKey, TrustedCAFile: f.peerCA}
	}
	return client, peer, nil
}

// clientTLSFlags are the client commands' TLS flags, named as etcdctl's:
// --cacert (the CA that signed the members' client-port certificates),
// --cert and --key (the client's own, where members require one). Each
// defaults to its environment variable.
type clientTLSFlags struct {
	cacert, cert, key string
}

func (f *clientTLSFlags) register(fs *pflag.FlagSet, getenv func(string) string) {
	fs.StringVar(&f.cacert, "cacert", getenv("CXKV_CACERT"), "PEM CA certificate to verify the members with; turns TLS on (env CXKV_CACERT)")
	fs.StringVar(&f.cert, "cert", getenv("CXKV_CERT"), "PEM client certificate, for members with --client-cert-auth (env CXKV_CERT)")
	fs.StringVar(&f.key, "key", getenv("CXKV_KEY"), "PEM private key of --cert (env CXKV_KEY)")
}

// config is the TLS configuration the flags describe, nil for plaintext.
func (f *clientTLSFlags) config() (*tls.Config, error) {
	if f.cacert == "" && f.cert == "" && f.key == "" {
		return nil, nil
	}
	if (f.cert == "") != (f.key == "") {
		return nil, fmt.Errorf("--cert and --key go together")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.cacert != "" {
		pem, err := os.ReadFile(f.cacert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate in it", f.cacert)
		}
	}
	if f.cert != "" {
		cert, err := tls.LoadX509KeyPair(f.cert, f.key)
		if err != nil {
			return nil, fmt.Errorf("--cert %s with --key %s: %w", f.cert, f.key, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// creds are gRPC transport credentials for the flags: TLS or plaintext.
func (f *clientTLSFlags) creds() (credentials.TransportCredentials, error) {
	cfg, err := f.config()
	if err != nil || cfg == nil {
		return insecure.NewCredentials(), err
	}
	return credentials.NewTLS(cfg), nil
}
