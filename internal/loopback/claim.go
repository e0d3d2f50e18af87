package loopback

import (
	"errors"
	"net"
	"runtime"
	"strconv"
	"sync"
	"syscall"
)

// A port below the ephemeral range can still be taken by an explicit bind
// of another process that draws the same number, and the moment that
// matters is while a member is stopped: its listener is closed, and its
// restart on the same address then fails with "address already in use"
// for as long as the other process keeps the port. No socket option keeps
// a port from a bind short of listening on it, and a listening socket
// would accept connections for the stopped member (whose refused
// connections raftnode reads as a dead process). So the processes that
// draw with this package claim each port under a name of their own: an
// abstract Unix socket "cxkv-loopback-port-N", which lives in the same
// network namespace as the port and goes away with the process, however it
// ends. A port, once handed out, stays claimed until the process exits,
// across every stop and start of the member on it; a drawn port another
// process claimed is passed by. Processes not using this package are not
// kept out; they never were.

// claims holds this process's claims for its life: a socket that is no
// longer referenced is closed by its finalizer, which would free the name.
var claims struct {
	sync.Mutex
	held []*net.UnixConn
}

// claim claims port for this process, reporting false if another process
// (or this one) already has. Where abstract sockets do not exist (only
// Linux has them) or cannot be made, every port counts as unclaimed.
func claim(port int) bool {
	if runtime.GOOS != "linux" {
		return true
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: "@cxkv-loopback-port-" + strconv.Itoa(port), Net: "unixgram"})
	if errors.Is(err, syscall.EADDRINUSE) {
		return false
	}
	if err != nil {
		return true
	}
	claims.Lock()
	claims.held = append(claims.held, c)
	claims.Unlock()
	return true
}
