package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/internal/loopback"
)

// cluster runs the members as real `cxkv server` processes.
type cluster struct {
	bin     string
	dir     string
	tick    time.Duration
	ids     []uint64
	peer    map[uint64]string // the address in --cluster (the machine's name)
	client  map[uint64]string // the address clients dial (loopback IP)
	spec    string
	proxies *proxies

	mu      sync.Mutex
	procs   map[uint64]*exec.Cmd
	exited  map[uint64]chan struct{}
	stopped map[uint64]bool // SIGSTOPped
	logs    map[uint64]*os.File
	// died says which members exited without being told to (a member
	// whose assertion failed panics, see internal/invariants): each is an
	// anomaly, even if the harness started it again since.
	died []string
}

// checkHost makes sure host names this machine on a loopback address, so
// members listening on it are reachable at 127.0.0.1 too.
func checkHost(host string) error {
	if host == "localhost" || net.ParseIP(host) != nil {
		return fmt.Errorf("host %q: gRPC bypasses proxies for localhost and IP literals; give a name that resolves to 127.0.0.1", host)
	}
	addrs, err := net.LookupHost(host)
	if err != nil {
		return fmt.Errorf("host %q does not resolve (%v); pass -host with a name that resolves to 127.0.0.1 (e.g. add it to /etc/hosts)", host, err)
	}
	for _, a := range addrs {
		if a == "127.0.0.1" {
			return nil
		}
	}
	return fmt.Errorf("host %q resolves to %v, not 127.0.0.1; pass -host with a name that does", host, addrs)
}

func newCluster(bin, dir, host string, tick time.Duration, logf func(string, ...any)) (*cluster, error) {
	if err := checkHost(host); err != nil {
		return nil, err
	}
	ports, err := loopback.FreePorts(3)
	if err != nil {
		return nil, err
	}
	c := &cluster{
		bin: bin, dir: dir, tick: tick,
		peer: map[uint64]string{}, client: map[uint64]string{},
		procs: map[uint64]*exec.Cmd{}, exited: map[uint64]chan struct{}{},
		stopped: map[uint64]bool{}, logs: map[uint64]*os.File{},
	}
	var spec []string
	for i, port := range ports {
		id := uint64(i + 1)
		c.ids = append(c.ids, id)
		c.peer[id] = fmt.Sprintf("%s:%d", host, port)
		c.client[id] = fmt.Sprintf("127.0.0.1:%d", port)
		spec = append(spec, fmt.Sprintf("%d=%s", id, c.peer[id]))
	}
	c.spec = strings.Join(spec, ",")
	if c.proxies, err = newProxies(c.peer, logf); err != nil {
		return nil, err
	}
	for _, id := range c.ids {
		if err := c.start(id); err != nil {
			c.shutdown()
			return nil, err
		}
	}
	return c, nil
}

func (c *cluster) endpoints() []string {
	var eps []string
	for _, id := range c.ids {
		eps = append(eps, c.client[id])
	}
	return eps
}

// memberEnv is the environment of a member: ours without any proxy setting,
// plus HTTPS_PROXY to its own proxy.
func (c *cluster) memberEnv(id uint64) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(name) {
		case "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY", "GRPC_PROXY_EXP":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HTTPS_PROXY="+c.proxies.url(id))
}

func (c *cluster) start(id uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.procs[id] != nil {
		return nil
	}
	if c.logs[id] == nil {
		f, err := os.OpenFile(filepath.Join(c.dir, fmt.Sprintf("m%d.log", id)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		c.logs[id] = f
	}
	// Snapshots every 2000 entries, so a member cut off for a second or
	// more catches up by one; history for 5000, 3-4 s of the workload, so
	// a watch that loses its member mostly resumes on another with no gap
	// (more writes checked for delivery), while one cut off for longer
	// still meets ErrCompacted.
	cmd := exec.Command(c.bin, "server", "--id", fmt.Sprint(id), "--addr", c.peer[id],
		"--data-dir", filepath.Join(c.dir, fmt.Sprintf("data%d", id)), "--cluster", c.spec,
		"--tick", c.tick.String(), "--snapshot-entries", "2000", "--history-entries", "5000")
	cmd.Env = c.memberEnv(id)
	cmd.Stdout, cmd.Stderr = c.logs[id], c.logs[id]
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start m%d: %w", id, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		c.mu.Lock()
		if c.procs[id] == cmd { // neither kill nor shutdown stopped it
			c.procs[id] = nil // dead: heal starts it again
			c.died = append(c.died, fmt.Sprintf("m%d exited by itself with %v (see m%d.log)", id, cmd.ProcessState, id))
		}
		c.mu.Unlock()
		close(done)
	}()
	c.procs[id], c.exited[id], c.stopped[id] = cmd, done, false
	return nil
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *cluster) kill(id uint64) {
	c.mu.Lock()
	cmd, done := c.procs[id], c.exited[id]
	c.procs[id] = nil
	c.stopped[id] = false
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

func (c *cluster) signal(id uint64, sig syscall.Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cmd := c.procs[id]; cmd != nil {
		cmd.Process.Signal(sig)
		c.stopped[id] = sig == syscall.SIGSTOP
	}
}

// heal lifts every fault: the network, paused and dead members.
func (c *cluster) heal() error {
	c.proxies.heal()
	for _, id := range c.ids {
		c.mu.Lock()
		stopped, dead := c.stopped[id], c.procs[id] == nil
		c.mu.Unlock()
		if stopped {
			c.signal(id, syscall.SIGCONT)
		}
		if dead {
			if err := c.start(id); err != nil {
				return err
			}
		}
	}
	return nil
}

// leader asks the members who leads; 0 if none knows.
func (c *cluster) leader(ctx context.Context, cl *client.Client) uint64 {
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
	var best uint64
	for id, n := range votes {
		if n > votes[best] || n == votes[best] && id < best {
			best = id
		}
	}
	return best
}

// shutdown stops every member (SIGCONT first, then SIGTERM, SIGKILL after
// 10s) and the proxies.
func (c *cluster) shutdown() error {
	var errs []error
	ids := append([]uint64(nil), c.ids...)
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		c.mu.Lock()
		cmd, done := c.procs[id], c.exited[id]
		c.procs[id] = nil
		c.mu.Unlock()
		if cmd == nil {
			continue
		}
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
			if cmd.ProcessState != nil && !cmd.ProcessState.Success() {
				errs = append(errs, fmt.Errorf("m%d exited with %v on SIGTERM", id, cmd.ProcessState))
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			errs = append(errs, fmt.Errorf("m%d did not stop within 10s of SIGTERM", id))
		}
	}
	c.proxies.close()
	for _, f := range c.logs {
		f.Close()
	}
	c.mu.Lock()
	for _, d := range c.died {
		errs = append(errs, errors.New(d))
	}
	c.mu.Unlock()
	return errors.Join(errs...)
}
