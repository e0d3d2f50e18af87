package chaos

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
)

// The members' peer traffic goes through the harness, without a server flag
// for it: each member runs with HTTPS_PROXY pointing at its own proxy here,
// and gRPC sends every peer connection to that proxy as an HTTP CONNECT
// naming the peer's address. So the proxy knows both ends of every
// connection (the member it belongs to, and the peer from the CONNECT) and
// can cut one direction of one pair. Clients dial the members directly.
//
// gRPC skips the proxy for "localhost" and loopback IP literals, so members
// are addressed by a host name that resolves to this machine (the machine's
// own name, by default); see Config.Host.

// proxies is the set of per-member CONNECT proxies and the partition they
// enforce.
type proxies struct {
	mu      sync.Mutex
	blocked map[[2]uint64]bool // {from, to}: from's connections to to are refused
	conns   map[[2]uint64]map[net.Conn]struct{}
	member  map[string]uint64 // peer address (as in --cluster) -> member id
	lis     map[uint64]net.Listener
	relayed int // connections relayed
	cut     int // connections cut by a partition
	wg      sync.WaitGroup
	logf    func(format string, args ...any)
}

func newProxies(members map[uint64]string, logf func(string, ...any)) (*proxies, error) {
	p := &proxies{
		blocked: map[[2]uint64]bool{},
		conns:   map[[2]uint64]map[net.Conn]struct{}{},
		member:  map[string]uint64{},
		lis:     map[uint64]net.Listener{},
		logf:    logf,
	}
	for id, addr := range members {
		p.member[addr] = id
	}
	for id := range members {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			p.close()
			return nil, err
		}
		p.lis[id] = lis
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.serve(id, lis) }()
	}
	return p, nil
}

// url is the HTTPS_PROXY value for member id.
func (p *proxies) url(id uint64) string { return "http://" + p.lis[id].Addr().String() }

func (p *proxies) serve(from uint64, lis net.Listener) {
	for {
		c, err := lis.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.handle(from, c) }()
	}
}

func (p *proxies) handle(from uint64, c net.Conn) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		c.Close()
		return
	}
	to, ok := p.member[req.Host]
	if !ok {
		fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\n\r\n")
		c.Close()
		p.logf("proxy of m%d: CONNECT to unknown address %q refused", from, req.Host)
		return
	}
	pair := [2]uint64{from, to}
	if p.isBlocked(pair) {
		c.Close()
		return
	}
	up, err := net.Dial("tcp", req.Host)
	if err != nil {
		fmt.Fprintf(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		c.Close()
		return
	}
	if !p.track(pair, c, up) { // blocked while dialling
		c.Close()
		up.Close()
		return
	}
	defer p.untrack(pair, c, up)
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, br); up.Close(); done <- struct{}{} }()
	go func() { io.Copy(c, up); c.Close(); done <- struct{}{} }()
	<-done
	<-done
}

func (p *proxies) isBlocked(pair [2]uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blocked[pair]
}

func (p *proxies) track(pair [2]uint64, cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.blocked[pair] {
		return false
	}
	if p.conns[pair] == nil {
		p.conns[pair] = map[net.Conn]struct{}{}
	}
	for _, c := range cs {
		p.conns[pair][c] = struct{}{}
	}
	p.relayed++
	return true
}

func (p *proxies) untrack(pair [2]uint64, cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns[pair], c)
	}
}

// block cuts every connection from -> to and refuses new ones until heal:
// from's messages no longer reach to. The other direction is untouched
// (each member sends on connections it dialled itself).
func (p *proxies) block(from, to uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pair := [2]uint64{from, to}
	p.blocked[pair] = true
	for c := range p.conns[pair] {
		c.Close()
		p.cut++
	}
}

// heal lets every pair through again.
func (p *proxies) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocked = map[[2]uint64]bool{}
}

func (p *proxies) close() {
	p.mu.Lock()
	for _, l := range p.lis {
		l.Close()
	}
	for _, set := range p.conns {
		for c := range set {
			c.Close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
}
