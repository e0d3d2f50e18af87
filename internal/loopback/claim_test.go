package loopback

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// drawEnv makes the test binary, run as a child, draw this port first.
const drawEnv = "LOOPBACK_TEST_DRAW"

// A member that stops closes its listener, and starts again on the same
// port a moment later. In between, another process's Listen that draws
// that port must pass it by: CI's nemesis run failed with "start member 1:
// listen on 127.0.0.1:32214: bind: address already in use" after a crash.
func TestAStoppedMembersPortIsNotHandedToAnotherProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ports are claimed with Linux's abstract sockets")
	}
	if top, ok := below(); !ok {
		t.Skipf("the ephemeral range starts at %d: no room below it", top)
	}
	l, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // the member stops
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDraw$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", drawEnv, port))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the other process: %v: %s", err, out)
	}
	first, _, _ := strings.Cut(string(out), "\n") // then the test binary's PASS
	got, err := strconv.Atoi(first)
	if err != nil {
		t.Fatalf("the other process printed %q", out)
	}
	if got == port {
		t.Errorf("another process was handed port %d, which this one gave a member that will start again on it", port)
	}
}

// TestHelperDraw is the other process of the test above: it draws the
// given port first and prints the port Listen gives it.
func TestHelperDraw(t *testing.T) {
	want := os.Getenv(drawEnv)
	if want == "" {
		t.Skip("the other process of TestAStoppedMembersPortIsNotHandedToAnotherProcess")
	}
	port, err := strconv.Atoi(want)
	if err != nil {
		t.Fatal(err)
	}
	random := pick
	first := true
	pick = func(top int) int {
		if first {
			first = false
			return port
		}
		return random(top)
	}
	l, err := Listen()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
}
