package loopback

import (
	"net"
	"testing"
)

func TestPortsAreBelowTheEphemeralRange(t *testing.T) {
	top, ok := below()
	if !ok {
		t.Skipf("the ephemeral range starts at %d: no room below it", top)
	}
	ports, err := FreePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p < lowest || Ephemeral(p) {
			t.Errorf("port %d is outside [%d, %d), where no outgoing connection takes it", p, lowest, top)
		}
		if seen[p] {
			t.Errorf("port %d handed out twice in one call", p)
		}
		seen[p] = true
	}
	l, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if p := l.Addr().(*net.TCPAddr).Port; Ephemeral(p) {
		t.Errorf("Listen gave ephemeral port %d", p)
	}
}
