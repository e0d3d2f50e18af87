// Package raftnodetest starts in-process cxkv clusters on loopback for tests
// of other packages. It lives outside raftnode so the library carries no
// test harness.
package raftnodetest

import (
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/internal/loopback"
	"github.com/cxkv/cxkv/raftnode"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Cluster is n members with fast ticks.
type Cluster struct {
	t       testing.TB
	Members []*raftnode.Node // nil while stopped
	cfgs    []raftnode.Config
	connMu  sync.Mutex
	conns   []*grpc.ClientConn
	creds   credentials.TransportCredentials // Client's; plaintext if nil
}

// Option adjusts every member's config.
type Option func(*raftnode.Config)

// Start starts n members and waits for a leader; everything stops at the end
// of the test.
func Start(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	dir := t.TempDir()
	lis := make([]net.Listener, n)
	peers := map[uint64]string{}
	for i := range lis {
		// Members stop and start again on these ports: keep them out of
		// the range outgoing connections take theirs from.
		l, err := loopback.Listen()
		if err != nil {
			t.Fatal(err)
		}
		lis[i] = l
		peers[uint64(i+1)] = l.Addr().String()
	}
	c := &Cluster{t: t, Members: make([]*raftnode.Node, n), conns: make([]*grpc.ClientConn, n)}
	for i := range lis {
		cfg := raftnode.Config{
			ID: uint64(i + 1), Addr: peers[uint64(i+1)], Listener: lis[i],
			DataDir: filepath.Join(dir, fmt.Sprint(i+1)), Peers: peers,
			TickInterval: 10 * time.Millisecond, ElectionTicks: 10, HeartbeatTicks: 1,
			// bcrypt's least cost: a test hashing at the default cost
			// spends seconds per password under -race.
			PasswordCost: 4,
		}
		for _, o := range opts {
			o(&cfg)
		}
		if cfg.PeerAddr == peerPortAny {
			l, err := loopback.Listen()
			if err != nil {
				t.Fatal(err)
			}
			cfg.PeerListener, cfg.PeerAddr = l, l.Addr().String()
			peers[cfg.ID] = cfg.PeerAddr // the map every member shares
		}
		c.cfgs = append(c.cfgs, cfg)
	}
	// Together, as a cluster's processes start: a bootstrapping member
	// asks its peers whether it ran before, and waits for each one that
	// listens until it answers.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range c.cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Members[i], errs[i] = raftnode.Start(c.cfgs[i])
			c.cfgs[i].Listener, c.cfgs[i].PeerListener = nil, nil
		}()
	}
	wg.Wait()
	t.Cleanup(c.Close)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("start member %d: %v", i+1, err)
		}
	}
	c.WaitLeader()
	return c
}

func (c *Cluster) start(i int) {
	c.t.Helper()
	node, err := raftnode.Start(c.cfgs[i])
	if err != nil {
		c.t.Fatalf("start member %d: %v", i+1, err)
	}
	c.Members[i] = node
	// A restart listens on the same addresses again.
	c.cfgs[i].Listener, c.cfgs[i].PeerListener = nil, nil
}

const peerPortAny = "127.0.0.1:0"

// PeerPorts gives every member a peer port of its own beside its client
// port: the Raft service is served there only.
func PeerPorts() Option { return func(c *raftnode.Config) { c.PeerAddr = peerPortAny } }

// PeerAddrs are the members' peer addresses (their client addresses when
// peers share them).
func (c *Cluster) PeerAddrs() []string {
	var out []string
	for _, cfg := range c.cfgs {
		out = append(out, cfg.Peers[cfg.ID])
	}
	return out
}

// Endpoints are the members' client addresses.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, cfg := range c.cfgs {
		out = append(out, cfg.Addr)
	}
	return out
}

// Client is a KV client connected to member i (0-based).
func (c *Cluster) Client(i int) cxkvrpc.KVClient {
	c.connMu.Lock()
	defer c.connMu.Unlock()
	if c.conns[i] == nil {
		creds := c.creds
		if creds == nil {
			creds = insecure.NewCredentials()
		}
		conn, err := grpc.NewClient(c.cfgs[i].Addr, grpc.WithTransportCredentials(creds),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cxkvpb.MaxMessageBytes), grpc.MaxCallSendMsgSize(cxkvpb.MaxMessageBytes)),
			// Members restart within the test: reconnect in milliseconds,
			// not after gRPC's default backoff of a second or more.
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 200 * time.Millisecond},
				MinConnectTimeout: time.Second,
			}))
		if err != nil {
			c.t.Fatal(err)
		}
		c.conns[i] = conn
	}
	return cxkvrpc.NewKVClient(c.conns[i])
}

// ClusterClient is a Cluster (membership) client connected to member i.
func (c *Cluster) ClusterClient(i int) cxkvrpc.ClusterClient {
	c.Client(i) // dials
	c.connMu.Lock()
	defer c.connMu.Unlock()
	return cxkvrpc.NewClusterClient(c.conns[i])
}

// Stop stops member i.
func (c *Cluster) Stop(i int) {
	if m := c.Members[i]; m != nil {
		if err := m.Stop(); err != nil {
			c.t.Errorf("stop member %d: %v", i+1, err)
		}
		c.Members[i] = nil
	}
}

// Shutdown stops member i as SIGTERM does: a leader hands off its
// leadership first.
func (c *Cluster) Shutdown(i int) {
	if m := c.Members[i]; m != nil {
		if err := m.Shutdown(time.Second); err != nil {
			c.t.Errorf("shut down member %d: %v", i+1, err)
		}
		c.Members[i] = nil
	}
}

// Crash stops member i as a power loss would leave it: whatever its Stop
// reports is ignored (its disk is being abandoned), and its next start
// (Revive) opens fs, the crashed disk's state. The caller cuts the member
// off its peers before taking fs, so nothing it persists after fs was taken
// reaches anyone.
func (c *Cluster) Crash(i int, fs vfs.FS) {
	if m := c.Members[i]; m != nil {
		m.Stop()
		c.Members[i] = nil
	}
	c.cfgs[i].FS = fs
}

// Revive starts a stopped or crashed member i again.
func (c *Cluster) Revive(i int) {
	c.t.Helper()
	if c.Members[i] == nil {
		c.start(i)
	}
}

// Restart starts member i again from its data dir, on its address.
func (c *Cluster) Restart(i int) {
	c.Stop(i)
	c.start(i)
}

// Leader waits for a leader that a majority of running members agree on and
// returns its position.
func (c *Cluster) WaitLeader() int {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		votes := map[uint64]int{}
		running := 0
		for _, m := range c.Members {
			if m == nil {
				continue
			}
			running++
			if st := m.Status(); st.Leader != 0 {
				votes[st.Leader]++
			}
		}
		for id, v := range votes {
			if v > running/2 && c.Members[id-1] != nil && c.Members[id-1].Status().Role == "leader" {
				return int(id - 1)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatal("no leader within 10s")
	return -1
}

// Close stops every member and closes client connections.
func (c *Cluster) Close() {
	for _, conn := range c.conns {
		if conn != nil {
			conn.Close()
		}
	}
	for i := range c.Members {
		c.Stop(i)
	}
}

// Eventually polls cond until it holds or the deadline passes.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Within(within, cond) {
		t.Fatalf("not within %v: %s", within, what)
	}
}

// Within polls cond until it holds (true) or d has passed (false): for a
// test that reports a miss and goes on, to show what the miss costs.
func Within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// Config is member i's config, for a test that starts it by hand.
func (c *Cluster) Config(i int) raftnode.Config { return c.cfgs[i] }

// Conn is a client of one member's KV and Cluster services.
type Conn struct {
	KV      cxkvrpc.KVClient
	Cluster cxkvrpc.ClusterClient
}

// Dial connects to the member at addr (one not started by Start); the
// connection closes at the end of the test.
func Dial(t testing.TB, addr string) Conn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(cxkvpb.MaxMessageBytes), grpc.MaxCallSendMsgSize(cxkvpb.MaxMessageBytes)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return Conn{KV: cxkvrpc.NewKVClient(conn), Cluster: cxkvrpc.NewClusterClient(conn)}
}
