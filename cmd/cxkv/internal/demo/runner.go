package demo

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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
)

// RunConfig is one `cxkv demo run`.
type RunConfig struct {
	Scenario string // rooms or bank
	Mode     string // bank: lock or optimistic
	Workers  int
	Duration time.Duration
	Chaos    bool
	LockTTL  time.Duration
	LockMode lock.Mode
	BasePort int    // 0: free ports
	DataDir  string // "": a temp dir, removed at the end unless Keep
	Keep     bool
	Bin      string // the cxkv binary; default the running one
	Rooms    RoomsConfig
	Bank     BankConfig
	Out      io.Writer
	// Live rewrites the progress line in place (a terminal); otherwise a
	// progress line is printed every few seconds.
	Live bool
}

// ErrInvariantBroken is returned by Run when the verdict found a problem.
var ErrInvariantBroken = errors.New("an invariant broke")

// runner is the state of one Run.
type runner struct {
	cfg     RunConfig
	dir     string
	bin     string
	cluster *Cluster
	c       *client.Client

	mu       sync.Mutex
	workers  map[string]*proc
	stats    map[string]statsLine
	next     int // workers started so far
	killedW  []string
	killedM  int
	restarts int
}

// Run starts the cluster and the workers, shows progress, optionally
// injects faults, and prints the table and the verdict. It returns
// ErrInvariantBroken if the verdict failed.
func Run(ctx context.Context, cfg RunConfig) (err error) {
	if cfg.Scenario != ScenarioRooms && cfg.Scenario != ScenarioBank {
		return fmt.Errorf("--scenario %q: want rooms or bank", cfg.Scenario)
	}
	if cfg.Scenario == ScenarioBank && cfg.Mode == "" {
		cfg.Mode = ModeLock
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 20 * time.Second
	}
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = 2 * time.Second
	}
	r := &runner{cfg: cfg, workers: map[string]*proc{}, stats: map[string]statsLine{}}
	if r.bin = cfg.Bin; r.bin == "" {
		if r.bin, err = selfBinary(); err != nil {
			return err
		}
	}
	if r.dir = cfg.DataDir; r.dir == "" {
		if r.dir, err = os.MkdirTemp("", "cxkv-demo-"); err != nil {
			return err
		}
		if !cfg.Keep {
			defer os.RemoveAll(r.dir)
		}
	}
	defer func() {
		if cfg.Keep || cfg.DataDir != "" {
			r.say("data, records and logs kept in %s", r.dir)
		}
	}()

	r.say("starting a 3-member cluster (data in %s)", r.dir)
	r.cluster, err = StartCluster(ClusterConfig{Bin: r.bin, Dir: filepath.Join(r.dir, "cluster"), BasePort: cfg.BasePort})
	if err != nil {
		return err
	}
	defer r.cluster.Stop()
	if r.c, err = client.New(client.Config{Endpoints: r.cluster.Endpoints()}); err != nil {
		return err
	}
	defer r.c.Close()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	leader, err := r.cluster.WaitLeader(wctx, r.c)
	cancel()
	if err != nil {
		return err
	}
	r.say("cluster up: --endpoints %s (leader m%d)", r.cluster.EndpointsFlag(), leader)
	what := cfg.Scenario
	if cfg.Scenario == ScenarioBank {
		what += ", mode " + cfg.Mode
	}
	r.say("%d workers, scenario %s, %s%s", cfg.Workers, what, cfg.Duration, map[bool]string{true: ", with chaos"}[cfg.Chaos])

	for range cfg.Workers {
		if err := r.startWorker(); err != nil {
			r.stopWorkers()
			return err
		}
	}
	start := time.Now()
	runCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	var bg sync.WaitGroup
	if cfg.Chaos {
		bg.Add(2)
		go func() { defer bg.Done(); r.chaosMembers(runCtx) }()
		go func() { defer bg.Done(); r.chaosWorker(runCtx) }()
	}
	r.progress(runCtx, start)
	stop()
	bg.Wait()
	r.stopWorkers()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		r.say("interrupted; checking what was done so far")
	}

	// Everything is back up before the verdict reads the store.
	for id := 1; id <= members; id++ {
		select {
		case <-r.cluster.Done(id):
			r.cluster.Start(id)
		default:
		}
	}
	vctx, vcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer vcancel()
	if _, err := r.cluster.WaitLeader(vctx, r.c); err != nil {
		return err
	}
	st, err := ReadStore(vctx, r.c)
	if err != nil {
		return fmt.Errorf("reading the store for the verdict: %w", err)
	}
	entries, err := ReadRecords(filepath.Join(r.dir, "records"))
	if err != nil {
		return fmt.Errorf("reading the workers' records: %w", err)
	}
	r.table(entries, elapsed)
	v := Check(cfg.Scenario, entries, st)
	v.CheckLiveness(entries, max(8*time.Second, 4*cfg.LockTTL))
	return r.verdict(v)
}

func (r *runner) say(format string, args ...any) {
	fmt.Fprintf(r.cfg.Out, "%s\n", fmt.Sprintf(format, args...))
}

// startWorker starts worker w<N> as a child process; its stats lines feed
// the progress line, its other output goes to logs/w<N>.log.
func (r *runner) startWorker() error {
	r.mu.Lock()
	r.next++
	id := "w" + strconv.Itoa(r.next)
	r.mu.Unlock()
	if err := os.MkdirAll(filepath.Join(r.dir, "logs"), 0o755); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(r.dir, "logs", id+".log"))
	if err != nil {
		return err
	}
	args := []string{"demo", "worker", "--endpoints", r.cluster.EndpointsFlag(), "--scenario", r.cfg.Scenario,
		"--id", id, "--record", filepath.Join(r.dir, "records", id+".jsonl"), "--stats",
		"--lock-ttl", r.cfg.LockTTL.String(), "--lock-mode", r.cfg.LockMode.String()}
	switch r.cfg.Scenario {
	case ScenarioRooms:
		rc := r.cfg.Rooms.withDefaults()
		args = append(args, "--room-types", strings.Join(rc.Types, ","), "--rooms", strconv.Itoa(rc.Rooms))
	case ScenarioBank:
		bc := r.cfg.Bank.withDefaults()
		args = append(args, "--mode", r.cfg.Mode, "--accounts", strconv.Itoa(bc.Accounts), "--balance", strconv.FormatInt(bc.Balance, 10))
	}
	p, err := startProc(id, r.bin, args, logf, func(line string) {
		var s statsLine
		if json.Unmarshal([]byte(line), &s) == nil && s.Worker != "" {
			r.mu.Lock()
			r.stats[s.Worker] = s
			r.mu.Unlock()
		}
	})
	if err != nil {
		logf.Close()
		return err
	}
	go func() { <-p.done; logf.Close() }()
	r.mu.Lock()
	r.workers[id] = p
	r.mu.Unlock()
	return nil
}

// stopWorkers asks every worker to finish its operation and stop, and waits.
func (r *runner) stopWorkers() {
	r.mu.Lock()
	procs := make([]*proc, 0, len(r.workers))
	for _, p := range r.workers {
		procs = append(procs, p)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.stop(opTimeout + 5*time.Second); err != nil && !p.killedByUs() {
				r.say("worker %s: %v (see %s)", p.name, err, filepath.Join(r.dir, "logs", p.name+".log"))
			}
		}()
	}
	wg.Wait()
}

// allWorkersDone reports whether every worker has exited (rooms: sold out).
func (r *runner) allWorkersDone() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.workers {
		if !p.exited() {
			return false
		}
	}
	return true
}

func (r *runner) totals() (s statsLine) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.stats {
		s.Ops += w.Ops
		s.Conflicts += w.Conflicts
		s.Waits += w.Waits
		s.Lost += w.Lost
	}
	return s
}

// progress shows operations per second, locks held and the leader until
// ctx ends or every worker has stopped.
func (r *runner) progress(ctx context.Context, start time.Time) {
	every := 500 * time.Millisecond
	printEvery := 2 * time.Second
	if !r.cfg.Live {
		printEvery = 2 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	type sample struct {
		at  time.Time
		ops int64
	}
	window := []sample{{start, 0}}
	lastPrint := time.Now()
	for {
		select {
		case <-ctx.Done():
			if r.cfg.Live {
				fmt.Fprintln(r.cfg.Out)
			}
			return
		case <-t.C:
		}
		now := time.Now()
		tot := r.totals()
		window = append(window, sample{now, tot.Ops})
		for len(window) > 2 && now.Sub(window[0].at) > 2*time.Second {
			window = window[1:]
		}
		rate := float64(tot.Ops-window[0].ops) / now.Sub(window[0].at).Seconds()
		qctx, cancel := context.WithTimeout(ctx, 400*time.Millisecond)
		held, waiting := 0, 0
		if infos, err := lock.List(qctx, r.c, lockPrefix); err == nil {
			held = len(infos)
			for _, li := range infos {
				waiting += len(li.Waiters)
			}
		}
		leader := "none"
		if id := Leader(qctx, r.c); id != 0 {
			leader = fmt.Sprintf("m%d", id)
		}
		cancel()
		line := fmt.Sprintf("%5.1fs  %6d ops  %6.0f ops/s  locks held %2d, waiters %2d  conflicts %d  leader %s",
			now.Sub(start).Seconds(), tot.Ops, rate, held, waiting, tot.Conflicts, leader)
		if r.cfg.Live {
			fmt.Fprintf(r.cfg.Out, "\r%-100s", line)
		} else if now.Sub(lastPrint) >= printEvery {
			r.say("%s", line)
			lastPrint = now
		}
		if r.allWorkersDone() {
			if r.cfg.Live {
				fmt.Fprintln(r.cfg.Out)
			}
			r.say("every worker has finished (%s)", map[string]string{ScenarioRooms: "the hotel is sold out", ScenarioBank: "stopped"}[r.cfg.Scenario])
			return
		}
	}
}

// chaosMembers kills a member with SIGKILL every few seconds and restarts it
// a moment later; every other kill is the leader's. A run of a few seconds
// (the tests) still sees several kills.
func (r *runner) chaosMembers(ctx context.Context) {
	every := min(max(r.cfg.Duration/6, time.Second), 3*time.Second)
	for round := 0; ; round++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every/2 + rand.N(every)):
		}
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		leader := int(Leader(lctx, r.c))
		cancel()
		victim, why := 1+rand.IntN(members), "random"
		if round%2 == 0 && leader != 0 {
			victim, why = leader, "the leader"
		}
		r.chaosSay("kill -9 m%d (%s)", victim, why)
		r.cluster.Kill(victim)
		r.mu.Lock()
		r.killedM++
		r.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(every/3 + rand.N(every/3)):
		}
		if err := r.cluster.Start(victim); err != nil {
			r.chaosSay("restart m%d: %v", victim, err)
			continue
		}
		r.mu.Lock()
		r.restarts++
		r.mu.Unlock()
		r.chaosSay("restarted m%d from its data dir", victim)
	}
}

// chaosWorker kills one worker with SIGKILL part-way through the run, most
// likely in the middle of an operation, and starts a replacement.
func (r *runner) chaosWorker(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(r.cfg.Duration * 2 / 5):
	}
	r.mu.Lock()
	var alive []*proc
	for _, p := range r.workers {
		if !p.exited() {
			alive = append(alive, p)
		}
	}
	r.mu.Unlock()
	if len(alive) == 0 {
		return
	}
	sort.Slice(alive, func(i, j int) bool { return alive[i].name < alive[j].name })
	victim := alive[rand.IntN(len(alive))]
	victim.markKilled()
	victim.kill()
	r.mu.Lock()
	r.killedW = append(r.killedW, victim.name)
	r.mu.Unlock()
	r.chaosSay("kill -9 worker %s (pid %d) mid-operation", victim.name, victim.pid())
	if err := r.startWorker(); err != nil {
		r.chaosSay("replacement worker: %v", err)
		return
	}
	r.chaosSay("started a replacement worker w%d", r.next)
}

func (r *runner) chaosSay(format string, args ...any) {
	prefix := ""
	if r.cfg.Live {
		prefix = "\r"
	}
	fmt.Fprintf(r.cfg.Out, "%s%-100s\n", prefix, "chaos: "+fmt.Sprintf(format, args...))
}
