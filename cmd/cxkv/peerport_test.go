package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cxkv/cxkv/api/cxkvrpc"
)

func TestPeerAddrFlags(t *testing.T) {
	for _, tc := range []struct {
		flags                  peerAddrFlags
		listen, advertise, bad string
	}{
		{flags: peerAddrFlags{}},
		{flags: peerAddrFlags{addr: "10.0.0.1:7101"}, listen: "10.0.0.1:7101", advertise: "10.0.0.1:7101"},
		{flags: peerAddrFlags{listen: "0.0.0.0:7101", advertise: "db1:7101"}, listen: "0.0.0.0:7101", advertise: "db1:7101"},
		{flags: peerAddrFlags{listen: ":7101", addr: "db1:7101"}, listen: ":7101", advertise: "db1:7101"},
		{flags: peerAddrFlags{addr: "db1:7101", advertise: "db2:7101"}, bad: "disagree"},
		{flags: peerAddrFlags{listen: "0.0.0.0:7101"}, bad: "needs the address peers dial"},
		{flags: peerAddrFlags{addr: ":7101"}, bad: "no host"},
		{flags: peerAddrFlags{addr: "db1:7101", listen: "0.0.0.0:0"}, bad: "--peer-listen-addr"},
	} {
		listen, advertise, err := tc.flags.resolve()
		if tc.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("%+v: err %v, want one saying %q", tc.flags, err, tc.bad)
			}
			continue
		}
		if err != nil || listen != tc.listen || advertise != tc.advertise {
			t.Errorf("%+v: listen %q advertise %q err %v, want %q %q", tc.flags, listen, advertise, err, tc.listen, tc.advertise)
		}
	}
}

// Three processes with peer ports of their own and --cluster naming them,
// no --id given (each finds itself by its peer address): they elect a
// leader and serve the CLI on their client ports.
func TestServerPeerPorts(t *testing.T) {
	bin, err := cxkvBinary()
	if err != nil {
		t.Fatal(err)
	}
	addrs := freeAddrs(t, 6)
	clientAddrs, peerAddrs := addrs[:3], addrs[3:]
	var spec []string
	for i, a := range peerAddrs {
		spec = append(spec, fmt.Sprintf("%d=%s", i+1, a))
	}
	pc := &procCluster{t: t, bin: bin, addrs: clientAddrs}
	dir := t.TempDir()
	for i := range clientAddrs {
		pc.procs = append(pc.procs, &proc{args: []string{"server", "--addr", clientAddrs[i], "--peer-addr", peerAddrs[i],
			"--data-dir", filepath.Join(dir, fmt.Sprint(i+1)), "--cluster", strings.Join(spec, ","), "--tick", "20ms"}})
		pc.start(i)
	}
	t.Cleanup(func() {
		for _, p := range pc.procs {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	var clients []cxkvrpc.KVClient
	for i := range clientAddrs {
		clients = append(clients, pc.client(i))
	}
	pc.leader(clients)
	if code, out, errOut := runWith(clientAddrs, "put", "k", "v", "--index", "0"); code != 0 {
		t.Fatalf("put over the client ports: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := runWith(clientAddrs[2:], "get", "k")
	if code != 0 || !strings.Contains(out, "v") {
		t.Fatalf("get from member 3: exit %d\n%s%s", code, out, errOut)
	}
}
