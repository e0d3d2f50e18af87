// Package chaos runs a real 3-member cxkv cluster under faults while clients
// write and take locks, and checks what they saw: key-value operations for
// linearizability (porcupine, against the compare-exchange model), locks
// against a fenced resource, the watch stream for exactly-once delivery in
// log order, and every acknowledged write after the cluster heals.
//
// The members are `cxkv server` processes. Their peer traffic goes through
// proxies in this process (see proxy.go), so the nemesis can partition them,
// in one direction or both; it also kill -9s, restarts, SIGSTOPs and
// SIGCONTs them. The clients are goroutines here, each with its own SDK
// client, connected to the members directly. The fault schedule comes from
// a seed, printed at the start; the same seed replays the same schedule
// (kinds, timings, targets; which member leads is found at run time).
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/cxkv/cxkv/chaos/workload"
	"github.com/cxkv/cxkv/client"
)

// Config configures a run. Bin, Dir and Seed are required.
type Config struct {
	Bin      string        // the cxkv binary
	Dir      string        // where the run's directory (data, logs, failing histories) goes
	Host     string        // a name of this machine that resolves to 127.0.0.1 (default: os.Hostname)
	Seed     uint64        // drives the fault schedule and the workload
	Duration time.Duration // how long faults and clients run (default 2m)
	// Tick is the members' raft tick (default 50ms; elections after 10-20
	// ticks).
	Tick         time.Duration
	KVWorkers    int           // default 6
	LockWorkers  int           // default 6, on two locks: one queued, one plain
	LockTTL      time.Duration // default 2s
	Epoch        time.Duration // key-value workers move to fresh keys this often (default 5s)
	CheckTimeout time.Duration // porcupine's budget (default 5m)
	Keep         bool          // keep the run's directory even when it passes
	Log          io.Writer     // progress lines; nil: none
}

// Report is what a run injected, checked and found.
type Report struct {
	Seed         uint64
	Dir          string // the run's directory (removed on success unless Keep)
	Duration     time.Duration
	Faults       [numFaultKinds]int
	PeerConns    int // peer connections relayed by the proxies
	PeerConnsCut int // sockets (both sides of a relay) closed by partitions
	workload.Result
}

// OK reports whether no anomaly was found.
func (r *Report) OK() bool { return len(r.Anomalies) == 0 }

func (cfg *Config) defaults() error {
	if cfg.Bin == "" || cfg.Dir == "" {
		return errors.New("chaos: Config needs Bin and Dir")
	}
	if cfg.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return err
		}
		cfg.Host = h
	}
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&cfg.Duration, 2*time.Minute)
	set(&cfg.Tick, 50*time.Millisecond)
	set(&cfg.LockTTL, 2*time.Second)
	set(&cfg.Epoch, 5*time.Second)
	set(&cfg.CheckTimeout, 5*time.Minute)
	if cfg.KVWorkers == 0 {
		cfg.KVWorkers = 6
	}
	if cfg.LockWorkers == 0 {
		cfg.LockWorkers = 6
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	return nil
}

// Run runs the cluster under faults for cfg.Duration and checks the
// histories. An error means the harness itself could not run; anomalies
// are in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	rep := &Report{Seed: cfg.Seed, Duration: cfg.Duration}
	rep.Dir = filepath.Join(cfg.Dir, fmt.Sprintf("seed-%d", cfg.Seed))
	if err := os.MkdirAll(rep.Dir, 0o755); err != nil {
		return nil, err
	}
	var logMu sync.Mutex
	faultLog, err := os.Create(filepath.Join(rep.Dir, "faults.log"))
	if err != nil {
		return nil, err
	}
	defer faultLog.Close()
	t0 := time.Now()
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		line := fmt.Sprintf("%8.3fs  %s\n", time.Since(t0).Seconds(), fmt.Sprintf(format, args...))
		faultLog.WriteString(line)
		io.WriteString(cfg.Log, line)
	}
	logf("seed %d, %v, run directory %s", cfg.Seed, cfg.Duration, rep.Dir)

	c, err := newCluster(cfg.Bin, rep.Dir, cfg.Host, cfg.Tick, logf)
	if err != nil {
		return nil, err
	}
	clusterUp := true
	defer func() {
		if clusterUp {
			c.shutdown()
		}
	}()
	// A watch on a member cut off or paused leaves it after a second or
	// so (client/watchstall.go), inside the members' history window at
	// this load, so its resumes lose nothing to compaction.
	newCl := func() (*client.Client, error) {
		return client.New(client.Config{Endpoints: c.endpoints(), DialTimeout: 500 * time.Millisecond,
			RequestTimeout: time.Second, RetryTimeout: 5 * time.Second, WatchStallTimeout: 500 * time.Millisecond})
	}
	admin, err := newCl()
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if _, err := workload.WriteUntil(ctx, admin, "chaos/ready", 30*time.Second); err != nil {
		return nil, fmt.Errorf("chaos: the cluster did not come up: %w (logs in %s)", err, rep.Dir)
	}
	logf("cluster up: members %v", c.endpoints())

	wl, err := workload.Start(ctx, workload.Config{NewClient: newCl, Seed: cfg.Seed,
		KVWorkers: cfg.KVWorkers, LockWorkers: cfg.LockWorkers, LockTTL: cfg.LockTTL, Epoch: cfg.Epoch})
	if err != nil {
		return nil, err
	}
	runCtx, stopRun := context.WithTimeout(ctx, cfg.Duration)
	defer stopRun()
	nem := &nemesis{c: c, cl: admin, seed: cfg.Seed, electionTimeout: 10 * cfg.Tick, logf: logf,
		crashHolder: wl.CrashHolder}
	nemErr := make(chan error, 1)
	go func() { nemErr <- nem.run(runCtx) }()
	<-runCtx.Done()
	if err := <-nemErr; err != nil {
		return nil, fmt.Errorf("chaos: healing the cluster: %w", err)
	}
	logf("faults over, healed; stopping the clients and checking what they saw")
	rep.Faults = nem.counts
	res := wl.Finish(ctx, cfg.CheckTimeout)
	rep.Result = *res
	clusterUp = false
	c.proxies.mu.Lock()
	rep.PeerConns, rep.PeerConnsCut = c.proxies.relayed, c.proxies.cut
	c.proxies.mu.Unlock()
	if err := c.shutdown(); err != nil {
		rep.Anomalies = append(rep.Anomalies, fmt.Sprintf("shutdown: %v", err))
	}
	if rep.PeerConns == 0 {
		// Every partition would have been a no-op.
		return nil, fmt.Errorf("chaos: no peer connection went through the proxies; is HTTPS_PROXY ignored? (logs in %s)", rep.Dir)
	}

	if !rep.OK() {
		if err := res.Save(rep.Dir); err != nil {
			return rep, err
		}
		logf("FAILED: history and logs kept in %s", rep.Dir)
	} else if !cfg.Keep {
		os.RemoveAll(rep.Dir)
		rep.Dir = ""
	}
	return rep, nil
}

// Print writes the report as a table.
func (r *Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "seed\t%d\t\n", r.Seed)
	fmt.Fprintf(tw, "duration\t%v\t\n", r.Duration)
	fmt.Fprintln(tw, "\t\t")
	fmt.Fprintln(tw, "fault\tinjected\t")
	for k := range numFaultKinds {
		fmt.Fprintf(tw, "%s\t%d\t\n", k, r.Faults[k])
	}
	fmt.Fprintln(tw, "\t\t")
	fmt.Fprintln(tw, "checked\tcount\t")
	fmt.Fprintf(tw, "peer connections relayed (sockets cut)\t%d (%d)\t\n", r.PeerConns, r.PeerConnsCut)
	fmt.Fprintf(tw, "key-value operations (porcupine: %s)\t%d\t\n", r.Linearizable, r.KVOps)
	fmt.Fprintf(tw, "  of which outcome unknown\t%d\t\n", r.KVUnknown)
	fmt.Fprintf(tw, "keys read back after healing\t%d\t\n", r.KeysChecked)
	fmt.Fprintf(tw, "lock acquisitions\t%d\t\n", r.LockAcquired)
	fmt.Fprintf(tw, "fenced resource accesses\t%d\t\n", r.LockAccesses)
	fmt.Fprintf(tw, "  refused by the fence (stale token)\t%d\t\n", r.LockRefused)
	fmt.Fprintf(tw, "  Lost() closed after the next holder entered (max)\t%d (%v)\t\n", r.LostLate, r.LostMaxLate.Round(time.Millisecond))
	fmt.Fprintf(tw, "watch events\t%d\t\n", r.WatchEvents)
	fmt.Fprintf(tw, "  watch restarts after ErrCompacted (writes in gaps)\t%d (%d)\t\n", r.WatchGaps, r.GapWrites)
	fmt.Fprintf(tw, "anomalies\t%d\t\n", len(r.Anomalies))
	tw.Flush()
	for _, t := range r.WatchTrail {
		fmt.Fprintf(w, "watch restart at %s\n", t)
	}
	for _, a := range r.Anomalies {
		fmt.Fprintf(w, "ANOMALY: %s\n", a)
	}
	if r.Dir != "" {
		fmt.Fprintf(w, "run directory: %s\n", r.Dir)
	}
}
