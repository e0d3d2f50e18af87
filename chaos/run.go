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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/anishathalye/porcupine"
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
	KVOps        int // operations in the checked history
	KVUnknown    int // of which the outcome was unknown
	KeysChecked  int // keys read back after healing
	LockAcquired int
	LockAccesses int
	LockRefused  int // accesses by holders that had lost their lock, stopped by the fence
	HolderCrash  int
	LostLate     int           // holders whose Lost() closed after the next holder entered (within 1s)
	LostMaxLate  time.Duration // the latest of those
	PeerConns    int           // peer connections relayed by the proxies
	PeerConnsCut int           // sockets (both sides of a relay) closed by partitions
	WatchEvents  int
	WatchGaps    int // watches ended by ErrCompacted and restarted from the current index
	GapWrites    int // acknowledged writes in those gaps, whose delivery could not be checked
	Linearizable porcupine.CheckResult
	Anomalies    []string
}

// OK reports whether no anomaly was found.
func (r *Report) OK() bool { return len(r.Anomalies) == 0 }

// endKey is written once the cluster has healed: the watcher must reach it.
const endKey = "kv/zz-end"

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
	newCl := func() (*client.Client, error) {
		return client.New(client.Config{Endpoints: c.endpoints(), DialTimeout: 500 * time.Millisecond,
			RequestTimeout: time.Second, RetryTimeout: 5 * time.Second})
	}
	admin, err := newCl()
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if _, err := writeUntil(ctx, admin, "chaos/ready", 30*time.Second); err != nil {
		return nil, fmt.Errorf("chaos: the cluster did not come up: %w (logs in %s)", err, rep.Dir)
	}
	logf("cluster up: members %v", c.endpoints())

	rng := rand.New(rand.NewPCG(cfg.Seed, 0x776f726b))
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	w := newWatcher()
	var watchWG sync.WaitGroup
	watchWG.Add(1)
	go func() { defer watchWG.Done(); w.run(watchCtx, admin, "kv/") }()

	start := time.Now()
	h := newHistory(start)
	runCtx, stopRun := context.WithTimeout(ctx, cfg.Duration)
	defer stopRun()
	var wg sync.WaitGroup
	var clients []*client.Client
	defer func() {
		for _, cl := range clients {
			cl.Close()
		}
	}()
	for i := range cfg.KVWorkers {
		cl, err := newCl()
		if err != nil {
			return nil, err
		}
		clients = append(clients, cl)
		kw := &kvWorker{id: i, cl: cl, h: h, r: rand.New(rand.NewPCG(rng.Uint64(), uint64(i))),
			epoch: func() int { return int(time.Since(start) / cfg.Epoch) }, groups: 2,
			timeout: 4 * time.Second, seen: map[string]rec{}}
		wg.Add(1)
		go func() { defer wg.Done(); kw.run(runCtx) }()
	}
	res := newResource(time.Second)
	var holderIDs sync.Mutex
	nextHolder := 0
	var lws []*lockWorker
	for i := range cfg.LockWorkers {
		lw := &lockWorker{id: i, name: "locks/queued", mode: client.QueueLock, ttl: cfg.LockTTL, newCl: newCl,
			res: res, r: rand.New(rand.NewPCG(rng.Uint64(), uint64(i))), crash: make(chan struct{}, 1),
			nextID: func() int { holderIDs.Lock(); defer holderIDs.Unlock(); nextHolder++; return nextHolder }}
		if i%2 == 1 {
			lw.name, lw.mode = "locks/plain", client.PlainLock
		}
		lws = append(lws, lw)
		wg.Add(1)
		go func() { defer wg.Done(); lw.run(runCtx) }()
	}
	nem := &nemesis{c: c, cl: admin, seed: cfg.Seed, electionTimeout: 10 * cfg.Tick, logf: logf,
		crashHolder: func(pick int) bool {
			select {
			case lws[pick%len(lws)].crash <- struct{}{}:
				return true
			default:
				return false
			}
		}}
	nemErr := make(chan error, 1)
	go func() { nemErr <- nem.run(runCtx) }()
	<-runCtx.Done()
	if err := <-nemErr; err != nil {
		return nil, fmt.Errorf("chaos: healing the cluster: %w", err)
	}
	logf("faults over, healed; waiting for the clients to finish")
	wg.Wait()
	rep.Faults = nem.counts

	// After healing: every key back, then the watcher must reach a write
	// made after everything else.
	endIndex, err := writeUntil(ctx, admin, endKey, time.Minute)
	if err != nil {
		rep.Anomalies = append(rep.Anomalies, fmt.Sprintf("the healed cluster did not accept a write within a minute: %v", err))
	} else {
		rep.Anomalies = append(rep.Anomalies, finalReads(ctx, admin, h)...)
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		if err := w.waitFor(wctx, endIndex); err != nil {
			rep.Anomalies = append(rep.Anomalies, fmt.Sprintf("watch did not catch up after healing: %v", err))
		}
		cancel()
	}
	stopWatch()
	watchWG.Wait()
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
	logf("cluster stopped; checking %d operations", len(h.ops))

	rep.KVOps, rep.KVUnknown, rep.KeysChecked = len(h.ops), h.unknowns, len(h.keys)
	result, info := porcupine.CheckOperationsVerbose(kvModel, h.ops, cfg.CheckTimeout)
	rep.Linearizable = result
	switch result {
	case porcupine.Illegal:
		rep.Anomalies = append(rep.Anomalies, "key-value history is not linearizable")
	case porcupine.Unknown:
		rep.Anomalies = append(rep.Anomalies, fmt.Sprintf("linearizability check did not finish within %v", cfg.CheckTimeout))
	}
	for _, lw := range lws {
		rep.LockAcquired += lw.acquired
		rep.HolderCrash += lw.crashes
		for _, e := range lw.errs {
			rep.Anomalies = append(rep.Anomalies, "lock worker: "+e)
		}
	}
	res.wait()
	rep.LockAccesses, rep.LockRefused = res.accesses, res.refused
	rep.LostLate, rep.LostMaxLate = res.late, res.maxLate
	rep.Anomalies = append(rep.Anomalies, res.anomalies...)
	n, bad := checkWatch(w, h)
	rep.WatchEvents, rep.WatchGaps = n, len(w.gaps)
	for _, idx := range h.acked {
		if w.inGap(idx) {
			rep.GapWrites++
		}
	}
	for kd := range h.delAck {
		if w.inGap(kd[1].(uint64)) {
			rep.GapWrites++
		}
	}
	rep.Anomalies = append(rep.Anomalies, bad...)
	if rep.LockAcquired == 0 {
		rep.Anomalies = append(rep.Anomalies, "no lock was ever acquired")
	}

	if !rep.OK() {
		if err := saveHistory(rep.Dir, h, info, result); err != nil {
			return rep, err
		}
		logf("FAILED: history and logs kept in %s", rep.Dir)
	} else if !cfg.Keep {
		os.RemoveAll(rep.Dir)
		rep.Dir = ""
	}
	return rep, nil
}

// writeUntil puts key until one put succeeds or d passes, and returns its
// index.
func writeUntil(ctx context.Context, cl *client.Client, key string, d time.Duration) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		cur, err := cl.Get(ctx, key)
		if err == nil {
			res, err := cl.Put(ctx, key, []byte("x"), cur.Index)
			if err == nil && res.Successful {
				return res.Record.Index, nil
			}
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("no successful put of %s: %w", key, ctx.Err())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// finalReads reads back every key the workload wrote, adds the reads to the
// history (so porcupine checks them too) and reports any acknowledged write
// that is gone outright.
func finalReads(ctx context.Context, cl *client.Client, h *history) []string {
	keys := make([]string, 0, len(h.keys))
	for k := range h.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var bad []string
	for _, k := range keys {
		var r client.Record
		var err error
		call := h.now()
		for range 10 {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			r, err = cl.Get(rctx, k)
			cancel()
			if err == nil {
				break
			}
		}
		if err != nil {
			bad = append(bad, fmt.Sprintf("final read of %s failed: %v", k, err))
			continue
		}
		dir, base := filepath.Split(k)
		var key int
		fmt.Sscanf(base, "k%d", &key)
		h.add(h.newClient(), kvInput{Kind: opGet, Group: filepath.Clean(dir), Key: key}, call, kvOutput{Rec: toRec(r)})
		last := h.lastAck[k]
		switch {
		case r.Index != 0 && r.Index < last.Index:
			bad = append(bad, fmt.Sprintf("lost write: %s holds %q@%d after an acknowledged write at %d", k, r.Value, r.Index, last.Index))
		case r.Index == 0 && last.Value != "" && h.delUnk[k] == 0:
			bad = append(bad, fmt.Sprintf("lost write: %s is absent after the acknowledged put %q@%d and no delete that may have applied", k, last.Value, last.Index))
		}
	}
	return bad
}

// saveHistory writes the history as JSON and porcupine's visualisation.
func saveHistory(dir string, h *history, info porcupine.LinearizationInfo, result porcupine.CheckResult) error {
	f, err := os.Create(filepath.Join(dir, "history.json"))
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, op := range h.ops {
		enc.Encode(op)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if result == porcupine.Illegal {
		return porcupine.VisualizePath(kvModel, info, filepath.Join(dir, "history.html"))
	}
	return nil
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
	for _, a := range r.Anomalies {
		fmt.Fprintf(w, "ANOMALY: %s\n", a)
	}
	if r.Dir != "" {
		fmt.Fprintf(w, "run directory: %s\n", r.Dir)
	}
}
