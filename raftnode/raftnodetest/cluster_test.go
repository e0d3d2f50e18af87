package raftnodetest

import (
	"net"
	"strconv"
	"testing"

	"github.com/cxkv/cxkv/internal/loopback"
)

// A member stopped in a test starts again on its address; a port in the
// ephemeral range could meanwhile be the local end of any outgoing
// connection on the machine, and the restart would fail with "address
// already in use" (as a nemesis schedule once did in CI).
func TestMembersListenOutsideTheEphemeralRange(t *testing.T) {
	if loopback.Ephemeral(10000) {
		t.Skip("the kernel's ephemeral range leaves no room below it")
	}
	c := Start(t, 3, PeerPorts())
	for _, addr := range append(c.Endpoints(), c.PeerAddrs()...) {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(p)
		if loopback.Ephemeral(port) {
			t.Errorf("member address %s is in the ephemeral range", addr)
		}
	}
	c.Restart(1)
	c.WaitLeader()
}
