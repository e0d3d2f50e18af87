// Package loopback hands out loopback ports for members that tests, the
// demo and the benchmarks stop and start again on the same address.
//
// A port the kernel picks for "127.0.0.1:0" comes from its ephemeral range,
// the same range it draws the local ports of outgoing connections from. Once
// a member on such a port stops, any connection opened on the machine (by
// this process, or by another test binary running beside it) may be given
// that port as its local end, and the member's restart then fails with
// "address already in use" for as long as that connection lives. A port
// below the ephemeral range is never handed to an outgoing connection, so
// only an explicit bind to the same number, by chance, can take it; and the
// processes that draw their ports here pass by each other's (claim.go).
package loopback

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the least port handed out: below it lie the well-known and
// registered services a machine is likelier to run.
const lowest = 10000

// tries bounds the random picks before falling back to an ephemeral port.
const tries = 64

// minRoom is the fewest ports below the ephemeral range worth picking from;
// with fewer, Listen hands out ephemeral ports.
const minRoom = 1000

// pick draws a port from [lowest, top): a variable, so that a test can make
// two processes draw the same port.
var pick = func(top int) int { return lowest + rand.IntN(top-lowest) }

// Listen listens on a loopback port below the kernel's ephemeral range, or
// on an ephemeral one if that range leaves no room below it.
func Listen() (net.Listener, error) {
	if top, ok := below(); ok {
		for range tries {
			port := pick(top)
			if !claim(port) {
				continue
			}
			// A claimed port whose bind fails stays claimed: a process
			// outside this package holds it.
			if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
				return l, nil
			}
		}
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

// FreePorts returns n distinct loopback ports that were free a moment ago,
// for processes started with them on their command line.
func FreePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := Listen()
		if err != nil {
			return nil, fmt.Errorf("a free loopback port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// Ephemeral says whether the kernel may give port to an outgoing connection
// as its local end: true for every port when the range leaves no room
// below it, since Listen then hands out ephemeral ports.
func Ephemeral(port int) bool {
	top, ok := below()
	return !ok || port >= top
}

// below returns the first port of the ephemeral range, and whether the
// range leaves room (minRoom) to pick ports below it.
func below() (top int, ok bool) {
	top = ephemeralStart()
	return top, top-lowest >= minRoom
}

// ephemeralStart is the first port of the kernel's ephemeral range; where
// the range cannot be read, Linux's default (macOS starts higher).
func ephemeralStart() int {
	const linuxDefault = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return linuxDefault
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return linuxDefault
	}
	start, err := strconv.Atoi(fields[0])
	if err != nil {
		return linuxDefault
	}
	return start
}
