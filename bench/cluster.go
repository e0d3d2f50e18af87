package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/internal/loopback"
	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Cluster is three member processes this harness started. Stop ends exactly
// those processes, by the pids it holds.
type Cluster struct {
	Name      string
	Endpoints []string
	// MetricsURLs are the members' /metrics, when the harness asked for
	// them (CxkvOptions.TraceWrites).
	MetricsURLs []string
	// TLS is what a client needs to speak to the members, nil for
	// plaintext.
	TLS   *tls.Config
	procs []*proc
}

type proc struct {
	name string
	bin  string
	args []string
	// slow is the disk the member runs on (nil: the machine's own); a
	// restart runs on the same.
	slow *SlowSync
	// cmd's process is the member's, under slow as well: the shim it
	// starts as execs the member in the same process.
	cmd *exec.Cmd
	log string
	// done closes when cmd has exited, and under slow its supervisor has
	// ended.
	done <-chan struct{}
}

func (c *Cluster) start(name, dir, bin string, args ...string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	p, err := spawn(name, filepath.Join(dir, name+".log"), bin, args, SlowDisk)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	return nil
}

// spawn starts bin with args on slow's disk (nil: the machine's own), its
// output appended to logPath.
func spawn(name, logPath, bin string, args []string, slow *SlowSync) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group: a Ctrl-C at the terminal reaches the harness only,
	// which then stops the members in order; the parent-death signal ends
	// them if the harness itself is killed.
	cmd.SysProcAttr = childAttr()
	done, err := slow.start(cmd)
	if err != nil {
		if slow == nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		return nil, fmt.Errorf("start %s on the slowed disk: %w; log tail:\n%s", name, err, tail(logPath, 15))
	}
	return &proc{name: name, bin: bin, args: args, slow: slow, cmd: cmd, log: logPath, done: done}, nil
}

// Kill ends member i with SIGKILL, as a crash would, and waits for it to be
// gone.
func (c *Cluster) Kill(i int) error {
	p := c.procs[i]
	if err := p.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill %s: %w", p.name, err)
	}
	<-p.done
	return nil
}

// Pause stops member i with SIGSTOP: it neither runs nor answers, keeps
// its sockets and state, and goes on where it was at Resume, as a process
// stalled by the machine or a debugger would.
func (c *Cluster) Pause(i int) error {
	return c.procs[i].cmd.Process.Signal(syscall.SIGSTOP)
}

// Resume continues member i after Pause (SIGCONT).
func (c *Cluster) Resume(i int) error {
	return c.procs[i].cmd.Process.Signal(syscall.SIGCONT)
}

// Restart starts member i again as it was first started (same data dir and
// addresses), its output appended to the same log.
func (c *Cluster) Restart(i int) error {
	old := c.procs[i]
	p, err := spawn(old.name, old.log, old.bin, old.args, old.slow)
	if err != nil {
		return err
	}
	c.procs[i] = p
	return nil
}

// Leader is the position of the member that leads, as the members say.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	switch c.Name {
	case "cxkv":
		cl, err := client.New(client.Config{Endpoints: c.Endpoints, TLS: c.TLS})
		if err != nil {
			return 0, err
		}
		defer cl.Close()
		for ctx.Err() == nil {
			st, _ := cl.Status(ctx)
			for i, s := range st {
				if s.Unreachable == nil && s.Role == "leader" {
					return i, nil
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	case "etcd":
		cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop(), TLS: c.TLS})
		if err != nil {
			return 0, err
		}
		defer cl.Close()
		for ctx.Err() == nil {
			for i, ep := range c.Endpoints {
				sctx, cancel := context.WithTimeout(ctx, time.Second)
				st, err := cl.Status(sctx, ep)
				cancel()
				if err == nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
					return i, nil
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	default:
		return 0, fmt.Errorf("%s has no leader", c.Name)
	}
	return 0, ctx.Err()
}

// Stop sends SIGTERM to each member, then SIGKILL to any still running
// after 10s.
func (c *Cluster) Stop() {
	for _, p := range c.procs {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range c.procs {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// exited names a member that is no longer running, with its log's tail.
func (c *Cluster) exited() error {
	for _, p := range c.procs {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v); log tail:\n%s", p.name, p.cmd.ProcessState, tail(p.log, 15))
		default:
		}
	}
	return nil
}

func tail(path string, lines int) string {
	b, _ := os.ReadFile(path)
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// waitReady polls ready until it succeeds, a member dies, or 30s pass.
func (c *Cluster) waitReady(ctx context.Context, ready func(context.Context) error) error {
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		if err := c.exited(); err != nil {
			return err
		}
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		last = ready(actx)
		cancel()
		if last == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within 30s: %v", c.Name, last)
}

// CxkvOptions are what the harness may ask of cxkv members beyond their
// defaults.
type CxkvOptions struct {
	// PprofPorts, if set, serve each member's profiles on its port.
	PprofPorts []int
	// TraceWrites starts the members with --trace-writes and
	// --metrics-addr, so Cluster.ScrapeStages reads where writes spend
	// their time.
	TraceWrites bool
	// TLS, if set, secures both ports with its certificates: TLS with
	// client certificates required on the client port, mutual TLS between
	// members on peer ports of their own.
	TLS *PKI
}

// StartCxkv starts a 3-member cxkv cluster of bin with data under dir, at
// default settings (fsync on) unless opts says otherwise.
func StartCxkv(ctx context.Context, bin, dir string, opts CxkvOptions) (*Cluster, error) {
	ports, err := loopback.FreePorts(3)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Name: "cxkv"}
	var peerPorts []int
	if opts.TLS != nil {
		// TLS needs peers on ports of their own (--peer-addr); --cluster
		// names them.
		if peerPorts, err = loopback.FreePorts(3); err != nil {
			return nil, err
		}
		c.TLS = opts.TLS.ClientConfig()
	}
	var spec []string
	for i, p := range ports {
		c.Endpoints = append(c.Endpoints, fmt.Sprintf("127.0.0.1:%d", p))
		if peerPorts != nil {
			p = peerPorts[i]
		}
		spec = append(spec, fmt.Sprintf("%d=127.0.0.1:%d", i+1, p))
	}
	var metricsPorts []int
	if opts.TraceWrites {
		if metricsPorts, err = loopback.FreePorts(3); err != nil {
			return nil, err
		}
	}
	for i := range ports {
		args := []string{"server", "--id", fmt.Sprint(i + 1), "--addr", c.Endpoints[i],
			"--data-dir", filepath.Join(dir, "cxkv", fmt.Sprint(i+1)), "--cluster", strings.Join(spec, ",")}
		if opts.PprofPorts != nil {
			args = append(args, "--pprof", fmt.Sprintf("127.0.0.1:%d", opts.PprofPorts[i]))
		}
		if opts.TraceWrites {
			addr := fmt.Sprintf("127.0.0.1:%d", metricsPorts[i])
			args = append(args, "--trace-writes", "--metrics-addr", addr)
			c.MetricsURLs = append(c.MetricsURLs, "http://"+addr+"/metrics")
		}
		if opts.TLS != nil {
			m, err := opts.TLS.Member(fmt.Sprintf("cxkv-%d", i+1))
			if err != nil {
				c.Stop()
				return nil, err
			}
			args = append(args, "--peer-addr", fmt.Sprintf("127.0.0.1:%d", peerPorts[i]),
				"--cert-file", m.CertFile, "--key-file", m.KeyFile, "--trusted-ca-file", opts.TLS.ClientCAFile, "--client-cert-auth",
				"--peer-cert-file", m.PeerCertFile, "--peer-key-file", m.PeerKeyFile, "--peer-trusted-ca-file", opts.TLS.PeerCAFile)
		}
		if err := c.start(fmt.Sprintf("cxkv-%d", i+1), dir, bin, args...); err != nil {
			c.Stop()
			return nil, err
		}
	}
	cl, err := client.New(client.Config{Endpoints: c.Endpoints, TLS: c.TLS})
	if err != nil {
		c.Stop()
		return nil, err
	}
	defer cl.Close()
	err = c.waitReady(ctx, func(ctx context.Context) error {
		st, err := cl.Status(ctx)
		if err != nil {
			return err
		}
		for _, s := range st {
			if s.Unreachable != nil {
				return s.Unreachable
			}
			if s.LeaderID == 0 {
				return fmt.Errorf("%s has no leader", s.Endpoint)
			}
		}
		_, err = cl.Txn(ctx, nil, []client.Op{client.PutOp("bench/ready", []byte("1"), 0)})
		return err
	})
	if err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// StartEtcd starts a 3-member etcd cluster of bin with data under dir, at
// etcd's defaults apart from addresses (fsync on, 100ms heartbeat, 1s
// election timeout).
func StartEtcd(ctx context.Context, bin, dir string) (*Cluster, error) {
	return StartEtcdTLS(ctx, bin, dir, nil)
}

// StartEtcdTLS is StartEtcd with both ports secured by pki (nil:
// plaintext) as StartCxkv secures cxkv's: TLS with client certificates
// required on the client port, mutual TLS between members.
func StartEtcdTLS(ctx context.Context, bin, dir string, pki *PKI) (*Cluster, error) {
	ports, err := loopback.FreePorts(6)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Name: "etcd"}
	scheme := "http"
	if pki != nil {
		scheme, c.TLS = "https", pki.ClientConfig()
	}
	var initial []string
	for i := range 3 {
		c.Endpoints = append(c.Endpoints, fmt.Sprintf("127.0.0.1:%d", ports[i]))
		initial = append(initial, fmt.Sprintf("e%d=%s://127.0.0.1:%d", i+1, scheme, ports[3+i]))
	}
	for i := range 3 {
		client := scheme + "://" + c.Endpoints[i]
		peer := fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[3+i])
		args := []string{"--name", fmt.Sprintf("e%d", i+1), "--data-dir", filepath.Join(dir, "etcd", fmt.Sprint(i+1)),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "cxkv-bench"}
		if pki != nil {
			m, err := pki.Member(fmt.Sprintf("etcd-%d", i+1))
			if err != nil {
				c.Stop()
				return nil, err
			}
			args = append(args, "--cert-file", m.CertFile, "--key-file", m.KeyFile, "--trusted-ca-file", pki.ClientCAFile, "--client-cert-auth",
				"--peer-cert-file", m.PeerCertFile, "--peer-key-file", m.PeerKeyFile, "--peer-trusted-ca-file", pki.PeerCAFile, "--peer-client-cert-auth")
		}
		if err := c.start(fmt.Sprintf("etcd-%d", i+1), dir, bin, args...); err != nil {
			c.Stop()
			return nil, err
		}
	}
	cl, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop(), TLS: c.TLS})
	if err != nil {
		c.Stop()
		return nil, err
	}
	defer cl.Close()
	err = c.waitReady(ctx, func(ctx context.Context) error {
		for _, ep := range c.Endpoints {
			st, err := cl.Status(ctx, ep)
			if err != nil {
				return err
			}
			if st.Leader == 0 {
				return fmt.Errorf("%s has no leader", ep)
			}
		}
		_, err := cl.Put(ctx, "bench/ready", "1")
		return err
	})
	if err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// StartRedis starts one redis-server of bin with its data under dir: an
// append-only file synced before every answer (appendfsync always), no RDB
// snapshots, loopback only. It is one node, not three: Redis's replication
// is asynchronous, so replicas would add no durability to an acknowledged
// write, and a single durable node is what users run for locks.
func StartRedis(ctx context.Context, bin, dir string) (*Cluster, error) {
	ports, err := loopback.FreePorts(1)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "redis")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	c := &Cluster{Name: "redis", Endpoints: []string{fmt.Sprintf("127.0.0.1:%d", ports[0])}}
	err = c.start("redis", dir, bin, "--port", fmt.Sprint(ports[0]), "--bind", "127.0.0.1", "--dir", data,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no", "--protected-mode", "no")
	if err != nil {
		return nil, err
	}
	cl := redis.NewClient(&redis.Options{Addr: c.Endpoints[0]})
	defer cl.Close()
	err = c.waitReady(ctx, func(ctx context.Context) error { return cl.Set(ctx, "bench/ready", "1", 0).Err() })
	if err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// RedisVersion is the version `redis-server --version` prints.
func RedisVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "unknown: " + err.Error()
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return v
		}
	}
	return strings.TrimSpace(string(out))
}

// EtcdVersion is the first line of `etcd --version`.
func EtcdVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "unknown: " + err.Error()
	}
	line, _, _ := bytes.Cut(out, []byte("\n"))
	return strings.TrimPrefix(string(line), "etcd Version: ")
}

// Alive reports a member that exited during the run.
func (c *Cluster) Alive() error { return c.exited() }

// LogTails returns the last lines of every member's log.
func (c *Cluster) LogTails(lines int) string {
	var b strings.Builder
	for _, p := range c.procs {
		fmt.Fprintf(&b, "--- %s\n%s\n", p.name, tail(p.log, lines))
	}
	return b.String()
}

// CPUTime is the user plus system CPU time the members have used so far.
// Read on Linux from /proc; elsewhere 0. Under SlowDisk it includes the
// kernel's handling of the member's notifications but not the supervisor's
// work, which is this harness's own CPU.
func (c *Cluster) CPUTime() time.Duration {
	var total time.Duration
	for _, p := range c.procs {
		total += procCPU(p.cmd.Process.Pid)
	}
	return total
}
