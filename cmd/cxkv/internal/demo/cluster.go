package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/internal/loopback"
)

// ClusterConfig describes the local 3-member cluster the demo runs.
type ClusterConfig struct {
	Bin      string // the cxkv binary; default the running one
	Dir      string // parent of the members' data dirs (Dir/1, Dir/2, Dir/3)
	BasePort int    // members listen on BasePort..BasePort+2; 0 picks free ports
	Tick     time.Duration
	// Log receives the members' output, a line at a time prefixed "[m1] ";
	// nil writes each member's output to Dir/m<N>.log instead.
	Log io.Writer
	// TLS runs the members with mutual TLS on both ports, peers on ports of
	// their own (BasePort+100..), with a throwaway CA made in Dir/tls.
	TLS bool
}

const members = 3

// Cluster is three `cxkv server` child processes on 127.0.0.1.
type Cluster struct {
	cfg   ClusterConfig
	addrs []string
	peers []string // peer addresses with TLS; nil: peers share addrs
	tls   *demoTLS
	mu    sync.Mutex
	procs []*proc // index i is member i+1; nil while down
	logs  []io.Closer
}

// layout is what a data dir remembers of its cluster, so that a kept dir
// can be started again on the same ports.
type layout struct {
	Addrs     []string `json:"addrs"`
	PeerAddrs []string `json:"peer_addrs,omitempty"`
}

const layoutFile = "cluster.json"

// StartCluster starts the three members and returns once they are running
// (not necessarily once one leads: see WaitLeader). A Dir that already holds
// a cluster is restarted on its own ports.
func StartCluster(cfg ClusterConfig) (*Cluster, error) {
	if cfg.Bin == "" {
		bin, err := selfBinary()
		if err != nil {
			return nil, err
		}
		cfg.Bin = bin
	}
	if cfg.Tick == 0 {
		cfg.Tick = 50 * time.Millisecond
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, procs: make([]*proc, members)}
	if b, err := os.ReadFile(filepath.Join(cfg.Dir, layoutFile)); err == nil {
		var l layout
		if err := json.Unmarshal(b, &l); err != nil || len(l.Addrs) != members {
			return nil, fmt.Errorf("%s: not a demo cluster layout", filepath.Join(cfg.Dir, layoutFile))
		}
		if cfg.TLS != (len(l.PeerAddrs) == members) {
			return nil, fmt.Errorf("%s: a cluster made %s --tls; start it the same way", cfg.Dir, map[bool]string{true: "with", false: "without"}[len(l.PeerAddrs) == members])
		}
		c.addrs, c.peers = l.Addrs, l.PeerAddrs
	} else {
		addrs, err := clusterAddrs(cfg.BasePort)
		if err != nil {
			return nil, err
		}
		c.addrs = addrs
		if cfg.TLS {
			peerBase := 0
			if cfg.BasePort != 0 {
				peerBase = cfg.BasePort + 100
			}
			if c.peers, err = clusterAddrs(peerBase); err != nil {
				return nil, err
			}
		}
		b, _ := json.Marshal(layout{Addrs: addrs, PeerAddrs: c.peers})
		if err := os.WriteFile(filepath.Join(cfg.Dir, layoutFile), b, 0o644); err != nil {
			return nil, err
		}
	}
	if cfg.TLS {
		var err error
		if c.tls, err = makeDemoTLS(filepath.Join(cfg.Dir, "tls")); err != nil {
			return nil, fmt.Errorf("demo certificates: %w", err)
		}
	}
	for id := 1; id <= members; id++ {
		if err := c.Start(id); err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

// ClientConfig is a client configuration for the cluster: its endpoints,
// and with TLS a client certificate.
func (c *Cluster) ClientConfig() client.Config {
	cfg := client.Config{Endpoints: c.Endpoints()}
	if c.tls != nil {
		cfg.TLS = c.tls.client
	}
	return cfg
}

// clusterAddrs picks the members' addresses: base..base+2, or free ports
// below the ephemeral range, which a member killed in the demo finds free
// again when it restarts. A port in use fails here rather than as a
// member's cryptic bind error.
func clusterAddrs(base int) ([]string, error) {
	var out []string
	if base == 0 {
		ports, err := loopback.FreePorts(members)
		if err != nil {
			return nil, err
		}
		for _, p := range ports {
			out = append(out, "127.0.0.1:"+strconv.Itoa(p))
		}
		return out, nil
	}
	for i := range members {
		addr := "127.0.0.1:" + strconv.Itoa(base+i)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("port for member %d: %w (choose another --base-port)", i+1, err)
		}
		out = append(out, addr)
		l.Close()
	}
	return out, nil
}

// Endpoints are the members' client addresses.
func (c *Cluster) Endpoints() []string { return append([]string(nil), c.addrs...) }

// EndpointsFlag is Endpoints as a --endpoints value.
func (c *Cluster) EndpointsFlag() string { return strings.Join(c.addrs, ",") }

func (c *Cluster) spec() string {
	var parts []string
	addrs := c.addrs
	if c.peers != nil {
		addrs = c.peers
	}
	for i, a := range addrs {
		parts = append(parts, fmt.Sprintf("%d=%s", i+1, a))
	}
	return strings.Join(parts, ",")
}

// Start starts member id (1..3) from its data dir; it must be down.
func (c *Cluster) Start(id int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.procs[id-1] != nil && !c.procs[id-1].exited() {
		return fmt.Errorf("member %d is running", id)
	}
	args := []string{"server", "--id", strconv.Itoa(id), "--addr", c.addrs[id-1],
		"--data-dir", filepath.Join(c.cfg.Dir, strconv.Itoa(id)), "--cluster", c.spec(),
		"--tick", c.cfg.Tick.String()}
	if c.tls != nil {
		args = append(args, "--peer-addr", c.peers[id-1])
		args = append(args, c.tls.serverArgs(id)...)
	}
	out := c.cfg.Log
	if out == nil {
		f, err := os.OpenFile(filepath.Join(c.cfg.Dir, fmt.Sprintf("m%d.log", id)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		c.logs = append(c.logs, f)
		out = &lockedWriter{w: f}
	}
	p, err := startProc(fmt.Sprintf("m%d", id), c.cfg.Bin, args, out, nil)
	if err != nil {
		return err
	}
	c.procs[id-1] = p
	return nil
}

// Pid is member id's process id, 0 while it is down.
func (c *Cluster) Pid(id int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.procs[id-1]; p != nil {
		return p.pid()
	}
	return 0
}

// Kill crashes member id with SIGKILL.
func (c *Cluster) Kill(id int) {
	c.mu.Lock()
	p := c.procs[id-1]
	c.procs[id-1] = nil
	c.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// Exited returns the first member found to have exited on its own, or 0.
func (c *Cluster) Exited() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, p := range c.procs {
		if p != nil && p.exited() {
			return i + 1, p.err
		}
	}
	return 0, nil
}

// Done is closed when member id exits, or at once if it is down.
func (c *Cluster) Done(id int) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.procs[id-1]; p != nil {
		return p.done
	}
	ch := make(chan struct{})
	close(ch)
	return ch
}

// Stop shuts every member down cleanly (SIGTERM, then SIGKILL after 5s) and
// waits for all of them: nothing is left running.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	procs := c.procs
	c.procs = make([]*proc, members)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); p.stop(5 * time.Second) }()
	}
	wg.Wait()
	for _, l := range c.logs {
		l.Close()
	}
	c.logs = nil
	return nil
}

// WaitLeader polls the members until one of them leads, and returns its id.
func (c *Cluster) WaitLeader(ctx context.Context, cl *client.Client) (uint64, error) {
	for {
		if id := Leader(ctx, cl); id != 0 {
			return id, nil
		}
		if id, err := c.Exited(); id != 0 {
			return 0, fmt.Errorf("member %d exited: %v (its log: %s)", id, err, filepath.Join(c.cfg.Dir, fmt.Sprintf("m%d.log", id)))
		}
		select {
		case <-ctx.Done():
			return 0, errors.New("no leader elected: " + ctx.Err().Error())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Leader is the id of the member a majority of answering members name as
// leader, or 0 while there is none.
func Leader(ctx context.Context, cl *client.Client) uint64 {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	sts, err := cl.Status(ctx)
	if err != nil {
		return 0
	}
	votes := map[uint64]int{}
	for _, s := range sts {
		if s.Unreachable == nil && s.LeaderID != 0 {
			votes[s.LeaderID]++
		}
	}
	for id, n := range votes {
		if n >= 2 {
			return id
		}
	}
	return 0
}

// lockedWriter serialises whole lines from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// ServeConfig is one `cxkv demo cluster`.
type ServeConfig struct {
	DataDir  string // "": a temp dir, removed on exit unless Keep
	Keep     bool
	BasePort int
	Bin      string
	TLS      bool      // mutual TLS on both ports (ClusterConfig.TLS)
	Out      io.Writer // where the members' prefixed logs and the instructions go
}

// ServeCluster runs the cluster in the foreground until ctx ends (Ctrl-C),
// then stops every member and waits for them.
func ServeCluster(ctx context.Context, cfg ServeConfig) (err error) {
	dir := cfg.DataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "cxkv-demo-cluster-"); err != nil {
			return err
		}
		if !cfg.Keep {
			defer os.RemoveAll(dir)
		}
	}
	out := &lockedWriter{w: cfg.Out}
	say := func(format string, args ...any) { fmt.Fprintf(out, "[demo] "+format+"\n", args...) }
	cl, err := StartCluster(ClusterConfig{Bin: cfg.Bin, Dir: dir, BasePort: cfg.BasePort, Log: out, TLS: cfg.TLS})
	if err != nil {
		return err
	}
	defer func() {
		say("stopping the members")
		cl.Stop()
		if cfg.DataDir == "" && !cfg.Keep {
			say("removed %s", dir)
		} else {
			say("data kept in %s (start it again with --data-dir %s)", dir, dir)
		}
	}()
	c, err := client.New(cl.ClientConfig())
	if err != nil {
		return err
	}
	defer c.Close()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	leader, err := cl.WaitLeader(wctx, c)
	cancel()
	if err != nil {
		return err
	}
	ep := cl.EndpointsFlag()
	say("cluster up, leader m%d, data in %s", leader, dir)
	for id := 1; id <= members; id++ {
		if cl.peers != nil {
			say("  m%d: pid %d, %s (peers: %s)", id, cl.Pid(id), cl.addrs[id-1], cl.peers[id-1])
		} else {
			say("  m%d: pid %d, %s", id, cl.Pid(id), cl.addrs[id-1])
		}
	}
	say("in other terminals:")
	say("  export CXKV_ENDPOINTS=%s", ep)
	if cl.tls != nil {
		say("  export %s", strings.Join(cl.tls.exports(), " "))
		say("  (mutual TLS on both ports: the CLI and workers need these; without them they are refused)")
	}
	say("  cxkv demo worker --scenario interactive --id alice")
	say("  cxkv demo worker --scenario rooms --id w1 --record w1.jsonl")
	say("  cxkv demo worker --scenario bank --mode optimistic --id w2")
	say("  cxkv status")
	say("Ctrl-C stops the cluster.")
	watch := make(chan int, members)
	for id := 1; id <= members; id++ {
		go func() {
			select {
			case <-cl.Done(id):
				watch <- id
			case <-ctx.Done():
			}
		}()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case id := <-watch:
			if ctx.Err() != nil {
				return nil
			}
			// A member killed by hand comes back from its data dir, as a
			// supervisor would bring it back: the demo shows it catch up.
			say("member m%d exited; the other two keep the cluster available; restarting m%d in 2s", id, id)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(2 * time.Second):
			}
			if err := cl.Start(id); err != nil {
				say("restart m%d: %v", id, err)
				continue
			}
			say("m%d restarted from its data dir: pid %d", id, cl.Pid(id))
			go func() {
				select {
				case <-cl.Done(id):
					watch <- id
				case <-ctx.Done():
				}
			}()
		}
	}
}
