package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/internal/certgen"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

func TestServerTLSFlags(t *testing.T) {
	for _, tc := range []struct {
		flags      serverTLSFlags
		peerPort   bool
		bad        string
		client, pe bool
	}{
		{flags: serverTLSFlags{}},
		{flags: serverTLSFlags{cert: "c", key: "k"}, peerPort: true, client: true},
		{flags: serverTLSFlags{cert: "c", key: "k", ca: "ca", clientCertAuth: true, peerCert: "pc", peerKey: "pk", peerCA: "pca"}, peerPort: true, client: true, pe: true},
		{flags: serverTLSFlags{cert: "c"}, peerPort: true, bad: "--key-file"},
		{flags: serverTLSFlags{cert: "c", key: "k", clientCertAuth: true}, peerPort: true, bad: "--trusted-ca-file"},
		{flags: serverTLSFlags{cert: "c", key: "k"}, bad: "--peer-addr"},
		{flags: serverTLSFlags{peerCert: "pc", peerKey: "pk"}, peerPort: true, bad: "--peer-trusted-ca-file"},
		{flags: serverTLSFlags{peerCert: "pc", peerKey: "pk", peerCA: "pca"}, bad: "--peer-addr"},
	} {
		client, peer, err := tc.flags.resolve(tc.peerPort)
		if tc.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("%+v: err %v, want one naming %s", tc.flags, err, tc.bad)
			}
			continue
		}
		if err != nil || (client != nil) != tc.client || (peer != nil) != tc.pe {
			t.Errorf("%+v: client %v peer %v err %v", tc.flags, client, peer, err)
		}
	}
}

// Three processes with mutual TLS on both ports: the CLI with --cacert,
// --cert and --key (or their variables) writes and reads; without them,
// or with a certificate of another CA, it is refused; a server given TLS
// files that do not exist refuses to start, naming the file.
func TestServerMutualTLS(t *testing.T) {
	bin, err := cxkvBinary()
	if err != nil {
		t.Fatal(err)
	}
	pki := raftnodetest.NewPKI(t)
	addrs := freeAddrs(t, 6)
	clientAddrs, peerAddrs := addrs[:3], addrs[3:]
	var spec []string
	for i, a := range peerAddrs {
		spec = append(spec, fmt.Sprintf("%d=%s", i+1, a))
	}
	pc := &procCluster{t: t, bin: bin, addrs: clientAddrs}
	dir := t.TempDir()
	for i := range clientAddrs {
		cl, pe := pki.MemberFiles(uint64(i + 1))
		pc.procs = append(pc.procs, &proc{args: []string{"server", "--id", fmt.Sprint(i + 1), "--addr", clientAddrs[i], "--peer-addr", peerAddrs[i],
			"--data-dir", filepath.Join(dir, fmt.Sprint(i+1)), "--cluster", strings.Join(spec, ","), "--tick", "20ms",
			"--cert-file", cl.CertFile, "--key-file", cl.KeyFile, "--trusted-ca-file", cl.TrustedCAFile, "--client-cert-auth",
			"--peer-cert-file", pe.CertFile, "--peer-key-file", pe.KeyFile, "--peer-trusted-ca-file", pe.TrustedCAFile}})
		pc.start(i)
	}
	t.Cleanup(func() {
		for _, p := range pc.procs {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	var clients []cxkvrpc.KVClient
	creds := credentials.NewTLS(pki.ClientTLS("test"))
	for i := range clientAddrs {
		conn, err := grpc.NewClient(clientAddrs[i], grpc.WithTransportCredentials(creds))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		clients = append(clients, cxkvrpc.NewKVClient(conn))
	}
	pc.leader(clients)

	cert, key := pki.Write(pki.ClientCA, "cli", certgen.Cert{CommonName: "cli"})
	tlsArgs := []string{"--cacert", pki.ClientCAFile, "--cert", cert, "--key", key}
	if code, out, errOut := runWith(clientAddrs, append(tlsArgs, "put", "k", "v", "--index", "0")...); code != 0 {
		t.Fatalf("put with TLS flags: exit %d\n%s%s", code, out, errOut)
	}
	var stdout, stderr strings.Builder
	env := map[string]string{"CXKV_ENDPOINTS": clientAddrs[2], "CXKV_CACERT": pki.ClientCAFile, "CXKV_CERT": cert, "CXKV_KEY": key}
	code := run(t.Context(), []string{"get", "k"}, envFrom(env, &stdout, &stderr))
	if code != 0 || !strings.Contains(stdout.String(), "v") {
		t.Fatalf("get with TLS from the environment: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if code, out, errOut := runWith(clientAddrs, append(tlsArgs, "endpoint", "health")...); code != 0 {
		t.Fatalf("endpoint health with TLS flags: exit %d\n%s%s", code, out, errOut)
	}

	if code, out, errOut := runWith(clientAddrs, "--timeout", "2s", "get", "k"); code != exitUnavailable {
		t.Errorf("get without TLS: exit %d, want %d (refused)\n%s%s", code, exitUnavailable, out, errOut)
	}
	other, err := certgen.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	otherCert, otherKey := pki.Write(other, "stranger", certgen.Cert{CommonName: "cli"})
	if code, out, errOut := runWith(clientAddrs, "--timeout", "2s", "--cacert", pki.ClientCAFile, "--cert", otherCert, "--key", otherKey, "get", "k"); code != exitUnavailable {
		t.Errorf("get with a certificate of another CA: exit %d, want %d (refused)\n%s%s", code, exitUnavailable, out, errOut)
	}
	if code, _, errOut := runWith(clientAddrs, "--cacert", filepath.Join(dir, "missing.crt"), "get", "k"); code != 2 || !strings.Contains(errOut, "missing.crt") {
		t.Errorf("get with a missing --cacert: exit %d, %q; want a usage error naming the file", code, errOut)
	}

	// A member whose certificate file is missing does not start.
	code, _, errOut := runQuiet("server", "--addr", freeAddrs(t, 1)[0], "--peer-addr", freeAddrs(t, 1)[0], "--data-dir", t.TempDir(),
		"--cert-file", filepath.Join(dir, "nope.crt"), "--key-file", filepath.Join(dir, "nope.key"))
	if code == 0 || !strings.Contains(errOut, "nope.crt") {
		t.Errorf("server with a missing certificate: exit %d, %q; want an error naming the file", code, errOut)
	}
}

func envFrom(vars map[string]string, stdout, stderr *strings.Builder) env {
	return env{stdin: strings.NewReader(""), stdout: stdout, stderr: stderr, getenv: func(k string) string { return vars[k] }}
}
