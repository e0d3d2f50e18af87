// Command cxkvbench is `make bench`: it starts a 3-member etcd and a
// 3-member cxkv on loopback, runs every workload against both in alternating
// order for a few rounds, prints the medians side by side, writes
// results/latest.json, and stops exactly the processes it started.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cxkv/cxkv/bench"
	"github.com/cxkv/cxkv/client/lock"
	"github.com/cxkv/cxkv/internal/loopback"
)

func main() {
	bench.MaybeRunSlowSyncShim() // first: a process started as the shim becomes a member here
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cxkvbench:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cxkvBin   = flag.String("cxkv", "../bin/cxkv", "cxkv binary")
		cxkvB     = flag.String("cxkv-b", "", "a second cxkv binary (another build), run as backend "+bench.AltBackend+" beside cxkv in every round of the workloads, the order alternating by round; the report adds a table of the two side by side. Only the members differ: the harness is the same for both")
		etcdBin   = flag.String("etcd", "", "etcd binary (default: etcd on PATH, else /usr/bin/etcd)")
		redisBin  = flag.String("redis", "", "redis-server binary (default: redis-server on PATH, else /usr/bin/redis-server)")
		duration  = flag.Duration("duration", 8*time.Second, "length of one run of one workload on one backend")
		rounds    = flag.Int("rounds", 3, "runs of each workload on each backend; the table shows medians")
		only      = flag.String("workloads", strings.Join(bench.Workloads, ","), "workloads to run, comma-separated")
		plain     = flag.Bool("plain", true, "also run lock-contended with cxkv's lock.Plain mode")
		fsyncFor  = flag.Duration("fsync", 2*time.Second, "length of each floor measurement (fsync, gRPC round trip)")
		out       = flag.String("out", "results/latest.json", "where to write every figure as JSON")
		mdOut     = flag.String("md", "results/latest.md", "where to write the tables as Markdown (for BENCHMARKS.md)")
		repo      = flag.String("repo", "..", "the cxkv repository, for its commit")
		pprofDir  = flag.String("pprof", "", "if set, start cxkv with --pprof and save each member's CPU, block and mutex profiles of round 1's cxkv runs here, and the harness's own CPU profile (-client)")
		tmpParent = flag.String("tmp", "", "directory for the clusters' data dirs (default: the system temp dir)")
		only1     = flag.String("backends", "cxkv,etcd,redis", "backends to run, comma-separated (cxkv, etcd, redis)")
		stages    = flag.Bool("stages", false, "start cxkv with --trace-writes and report where a write's time goes, stage by stage (the tracing costs a little; compare headline figures from runs without it)")
		keep      = flag.Bool("keep", false, "keep the data dirs and member logs (printed at the end) instead of removing them, and trace the failover workload's every probe call, kill and restart to calls.txt beside its members' logs")
		kills     = flag.Int("kills", 5, "leader kills in the failover workload, on clusters of its own (0: skip it)")
		chaosFor  = flag.Duration("chaos-for", 30*time.Second, "lock-chaos: how long lock-many and lock-contended each run undisturbed, then with the leader killed every -chaos-every (restarted 1s later), on clusters of their own (0: skip it)")
		chaosEach = flag.Duration("chaos-every", 3*time.Second, "lock-chaos: the time between leader kills")
		chaosCall = flag.Duration("chaos-call-limit", time.Second, "lock-chaos: how long one call may take before it is retried (etcd's elections take 1-2s: a longer limit shows whether this one penalises it)")
		hold      = flag.Duration("hold", 60*time.Second, "lock-hold: how long one process holds -hold-locks locks beside cas-parallel (and how long cas-parallel runs alone before, for comparison); 0: skip it")
		holdLocks = flag.Int("hold-locks", 10000, "lock-hold: how many locks the one process holds (TTL 10s, one session)")
		echoServe = flag.String("echo-serve", "", "serve the gRPC round-trip floor's stream echo on this host:port and nothing else (the harness starts itself so, for the floor's other process)")
		slowSync  = flag.String("slow-sync", "", "emulate a slower disk: run every backend process, and the fsync floor, under a seccomp filter that hands each fsync and fdatasync to the harness, which holds it this long before letting it run (e.g. 100us; 0s: the notification round trip alone); unset: the disk as it is")
		fsyncDir  = flag.String("fsync-probe", "", "measure the fsync floor in this directory, print it as JSON and nothing else (the harness starts itself so on the slowed disk for -slow-sync)")
		fsyncN    = flag.Int("fsync-files", 1, "with -fsync-probe: how many files to sync at once")
		summarize = flag.String("summarize", "", "run nothing: read the report an earlier run wrote (its -out JSON), take its tables again from its runs (after a change to how they are taken) and write it to -out and -md")
		workers   = flag.Int("workers", 0, "goroutines of each workload (0: the workload's own, cas-parallel and get 64, lock-contended 16, lock-many 32); to see how a figure follows concurrency, not for the headline table")
		withTLS   = flag.Bool("tls", true, "also run "+strings.Join(bench.TLSWorkloads, " and ")+" on cxkv and etcd clusters with TLS on both ports (client certificates required, mutual TLS between members; throwaway certificates made for the run), in the same rounds: backends cxkv-tls and etcd-tls")
	)
	flag.Parse()
	if *echoServe != "" {
		lis, err := net.Listen("tcp", *echoServe)
		if err != nil {
			return err
		}
		return bench.ServeEcho(lis)
	}
	if *fsyncDir != "" {
		f, err := bench.MeasureFsync(*fsyncDir, *fsyncN, *fsyncFor)
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(f)
	}
	if *summarize != "" {
		return resummarize(*summarize, *out, *mdOut)
	}
	// Set before anything starts: every member, restart and floor must
	// see the same disk.
	if err := bench.UseSlowDisk(*slowSync); err != nil {
		return fmt.Errorf("-slow-sync: %w", err)
	}
	workloads := strings.Split(*only, ",")
	for _, w := range workloads {
		if !slices.Contains(bench.Workloads, w) {
			return fmt.Errorf("unknown workload %q (have %s)", w, strings.Join(bench.Workloads, ", "))
		}
	}
	if *etcdBin == "" {
		*etcdBin = "/usr/bin/etcd"
		if p, err := exec.LookPath("etcd"); err == nil {
			*etcdBin = p
		}
	}
	if *redisBin == "" {
		*redisBin = "/usr/bin/redis-server"
		if p, err := exec.LookPath("redis-server"); err == nil {
			*redisBin = p
		}
	}
	chosen := strings.Split(*only1, ",")
	for _, b := range chosen {
		if !slices.Contains([]string{"cxkv", "etcd", "redis"}, b) {
			return fmt.Errorf("unknown backend %q (have cxkv, etcd, redis)", b)
		}
	}
	bins := []string{*cxkvBin, *etcdBin}
	if *cxkvB != "" {
		if !slices.Contains(chosen, "cxkv") {
			return fmt.Errorf("-cxkv-b is judged beside cxkv: add cxkv to -backends")
		}
		bins = append(bins, *cxkvB)
	}
	if slices.Contains(chosen, "redis") {
		bins = append(bins, *redisBin)
	}
	for _, b := range bins {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%v (make bench builds cxkv and installs etcd-server and redis-server)", err)
		}
	}

	// A first Ctrl-C cancels the run and the deferred cleanup stops the
	// members; a second one is caught too, so the cleanup is not cut short.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp(*tmpParent, "cxkv-bench-")
	if err != nil {
		return err
	}
	if *keep {
		defer fmt.Printf("kept data dirs and member logs in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	rep := bench.Report{
		Date: time.Now().UTC(), GitCommit: gitCommit(*repo), Duration: duration.String(), Rounds: *rounds,
		Machine: bench.Machine{
			Cores: runtime.NumCPU(), CPU: cpuModel(), OS: runtime.GOOS + "/" + runtime.GOARCH,
			GoVersion: runtime.Version(), EtcdVersion: bench.EtcdVersion(*etcdBin), EtcdClient: etcdClientVersion(),
			RedisVersion: bench.RedisVersion(*redisBin),
			LoadBefore:   loadAvg(),
		},
	}
	rep.SlowSync = bench.SlowDisk.String()
	rep.Workers = max(*workers, 0)
	fmt.Printf("cxkv %s vs etcd %s (client %s) and redis %s; %d cores, %s; %d rounds of %v per workload and backend; load average %s%s\n",
		rep.GitCommit, rep.Machine.EtcdVersion, rep.Machine.EtcdClient, rep.Machine.RedisVersion, rep.Machine.Cores, rep.Machine.GoVersion, *rounds, *duration, rep.Machine.LoadBefore, bench.SlowSyncClause(rep.SlowSync)+bench.WorkersClause(rep.Workers))

	for _, files := range []int{1, 3} {
		f, err := bench.SlowDisk.MeasureFsync(dir, files, *fsyncFor)
		if err != nil {
			return fmt.Errorf("fsync floor: %w", err)
		}
		rep.Fsync = append(rep.Fsync, f)
	}
	bench.WriteFsync(os.Stdout, rep.Fsync, false)

	var pprofPorts []int
	if *pprofDir != "" {
		if pprofPorts, err = loopback.FreePorts(3); err != nil {
			return err
		}
		if err := os.MkdirAll(*pprofDir, 0o755); err != nil {
			return err
		}
	}
	etcd, err := bench.StartEtcd(ctx, *etcdBin, dir)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer etcd.Stop()
	cx, err := bench.StartCxkv(ctx, *cxkvBin, dir, bench.CxkvOptions{PprofPorts: pprofPorts, TraceWrites: *stages})
	if err != nil {
		return fmt.Errorf("cxkv: %w", err)
	}
	defer cx.Stop()
	clusters := map[string]*bench.Cluster{"cxkv": cx, "cxkv-plain": cx, "etcd": etcd}
	all := []*bench.Cluster{cx, etcd}
	backends := []bench.Backend{bench.Cxkv{Endpoints: cx.Endpoints}, bench.Etcd{Endpoints: etcd.Endpoints}}
	if *cxkvB != "" {
		alt, err := bench.StartCxkv(ctx, *cxkvB, filepath.Join(dir, bench.AltBackend), bench.CxkvOptions{})
		if err != nil {
			return fmt.Errorf("%s: %w", bench.AltBackend, err)
		}
		defer alt.Stop()
		clusters[bench.AltBackend], all = alt, append(all, alt)
		backends = slices.Insert(backends, 1, bench.Backend(bench.Cxkv{Endpoints: alt.Endpoints, Label: bench.AltBackend}))
		chosen = append(chosen, bench.AltBackend)
		rep.CxkvB = *cxkvB
	}
	// The TLS twins run the TLS workloads beside the plaintext runs.
	var tlsBackends []bench.Backend
	if *withTLS {
		tdir := filepath.Join(dir, "tls")
		pki, err := bench.NewPKI(filepath.Join(tdir, "pki"))
		if err != nil {
			return fmt.Errorf("TLS certificates: %w", err)
		}
		if slices.Contains(chosen, "cxkv") {
			c, err := bench.StartCxkv(ctx, *cxkvBin, tdir, bench.CxkvOptions{TLS: pki})
			if err != nil {
				return fmt.Errorf("cxkv with TLS: %w", err)
			}
			defer c.Stop()
			name := bench.TLSBackend("cxkv")
			clusters[name], all = c, append(all, c)
			tlsBackends = append(tlsBackends, bench.Cxkv{Endpoints: c.Endpoints, TLS: c.TLS, Label: name})
		}
		if slices.Contains(chosen, "etcd") {
			c, err := bench.StartEtcdTLS(ctx, *etcdBin, tdir, pki)
			if err != nil {
				return fmt.Errorf("etcd with TLS: %w", err)
			}
			defer c.Stop()
			name := bench.TLSBackend("etcd")
			clusters[name], all = c, append(all, c)
			tlsBackends = append(tlsBackends, bench.Etcd{Endpoints: c.Endpoints, TLS: c.TLS, Label: name})
		}
	}
	if slices.Contains(chosen, "redis") {
		rd, err := bench.StartRedis(ctx, *redisBin, dir)
		if err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		defer rd.Stop()
		clusters["redis"], all = rd, append(all, rd)
		backends = append(backends, bench.Redis{Addr: rd.Endpoints[0]})
	}
	fmt.Printf("etcd on %s; cxkv on %s; data in %s\n", strings.Join(etcd.Endpoints, ","), strings.Join(cx.Endpoints, ","), dir)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	echo, stopEcho, err := bench.StartEcho(self)
	if err != nil {
		return fmt.Errorf("round-trip floor: %w", err)
	}
	rt, err := bench.MeasureRoundTrip(ctx, cx.Endpoints[0], echo, *fsyncFor)
	stopEcho()
	if err != nil {
		return fmt.Errorf("round-trip floor: %w", err)
	}
	rep.RoundTrip = &rt
	bench.WriteRoundTrip(os.Stdout, rt, rep.Fsync, 0, false)
	backends = slices.DeleteFunc(backends, func(b bench.Backend) bool { return !slices.Contains(chosen, b.Name()) })
	plainB := bench.Cxkv{Endpoints: cx.Endpoints, Mode: lock.Plain, Label: "cxkv-plain"}

	// Warm both up (connections, leaders settled, pages cached) off the record.
	for _, b := range append(slices.Clone(backends), tlsBackends...) {
		if _, err := bench.Run(ctx, b, bench.CASParallel, bench.Config{Duration: 2 * time.Second, Prefix: "warmup/" + b.Name()}); err != nil {
			return err
		}
	}

	failed := false
	for round := 1; round <= *rounds; round++ {
		for _, wl := range workloads {
			// Alternate who goes first, so drift in the machine's state
			// (page cache, compaction, thermal) falls on both sides.
			order := slices.Clone(backends)
			if slices.Contains(bench.TLSWorkloads, wl) {
				order = append(order, tlsBackends...)
			}
			if round%2 == 0 {
				slices.Reverse(order)
			}
			if wl == bench.LockContended && *plain && strings.Contains(*only1, "cxkv") {
				order = append(order, plainB)
			}
			for _, b := range order {
				var prof *profiler
				if *pprofDir != "" && round == 1 && b.Name() != "etcd" && b.Name() != bench.AltBackend {
					prof = startProfiles(ctx, pprofPorts, *duration, filepath.Join(*pprofDir, wl+"-"+b.Name()))
				}
				cl := clusters[b.Name()]
				var before *bench.StageHistograms
				if *stages && cl == cx {
					before, err = cx.ScrapeStages(ctx)
					if err != nil {
						return fmt.Errorf("scrape stages: %w", err)
					}
				}
				res, err := bench.Run(ctx, b, wl, bench.Config{
					Duration: *duration, Prefix: fmt.Sprintf("bench/%s/%s/r%d", wl, b.Name(), round), ServerCPU: cl.CPUTime,
					Workers: *workers,
				})
				if before != nil && err == nil {
					after, serr := cx.ScrapeStages(ctx)
					if serr != nil {
						return fmt.Errorf("scrape stages: %w", serr)
					}
					res.Stages = bench.StageDelta(before, after, res.Mean)
					costs := bench.CostDelta(before, after, res.Ops)
					res.Costs = &costs
				}
				prof.wait()
				if ctx.Err() != nil {
					return ctx.Err()
				}
				mark := ""
				if err != nil {
					// One failed operation (e.g. etcd's "request timed
					// out" under load) loses one run, not the whole bench.
					res = bench.Result{Workload: wl, Backend: b.Name(), Error: err.Error()}
					mark = "  NOT MEASURED: " + err.Error()
				} else if !res.OK() {
					mark, failed = "  CHECK FAILED: "+res.Check, true
				}
				res.Round = round
				rep.Runs = append(rep.Runs, res)
				fmt.Printf("round %d %-15s %-10s %8.0f ops/s  p50 %7.2fms  p99 %7.2fms  max %7.1fms  workers %d..%d  server CPU %.2fms/op%s\n",
					round, wl, b.Name(), res.OpsPerSec, res.P50, res.P99, res.Max, res.MinWorkerOps, res.MaxWorkerOps, res.ServerCPUPerOp, mark)
				for _, c := range all {
					if err := c.Alive(); err != nil {
						return err
					}
					if err != nil {
						fmt.Fprintf(os.Stderr, "%s logs:\n%s", c.Name, c.LogTails(10))
					}
				}
			}
		}
	}

	if *hold > 0 {
		for _, b := range backends {
			if b.Name() == "redis" || b.Name() == bench.AltBackend {
				continue // lock-hold compares cxkv's sessions with etcd's leases
			}
			r, err := bench.RunLockHold(ctx, b, bench.LockHoldConfig{
				Prefix: "bench/lock-hold/" + b.Name(), Locks: *holdLocks, Duration: *hold, ServerCPU: clusters[b.Name()].CPUTime,
			})
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				fmt.Printf("lock-hold %-6s NOT MEASURED: %v\n", b.Name(), err)
				continue
			}
			fmt.Printf("lock-hold %-6s %d locks acquired in %.1fs; held %.0fs: %.2f renewals/s (target %.2f), cas-parallel %.0f ops/s alone, %.0f beside (%.1f%% lost), members %.2f cores alone, %.2f beside; %s\n",
				b.Name(), r.Locks, r.AcquireSeconds, r.HoldSeconds, r.RenewalsPerSec, r.RenewalTarget, r.BaselineOpsPerSec, r.HeldOpsPerSec, 100*r.ThroughputLost, r.ServerCoresBaseline, r.ServerCoresHeld, r.Check)
			if r.Check != "ok" {
				failed = true
			}
			rep.LockHold = append(rep.LockHold, r)
		}
	}

	if *kills > 0 {
		for _, name := range []string{"cxkv", "etcd"} {
			if !slices.Contains(chosen, name) {
				continue
			}
			r, err := runFailover(ctx, name, *cxkvBin, *etcdBin, dir, *kills, *keep)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				fmt.Printf("failover %-6s NOT MEASURED: %v\n", name, err)
				continue
			}
			rep.Failover = append(rep.Failover, r)
		}
	}

	if *chaosFor > 0 {
		for _, name := range []string{"cxkv", "etcd"} {
			if !slices.Contains(chosen, name) {
				continue
			}
			rs, err := runLockChaos(ctx, name, *cxkvBin, *etcdBin, dir, *chaosFor, *chaosEach, *chaosCall)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil {
				fmt.Printf("lock-chaos %-6s NOT MEASURED: %v\n", name, err)
			}
			for _, r := range rs {
				if !r.Undisturbed.OK() || !r.Chaos.OK() {
					failed = true
				}
			}
			rep.LockChaos = append(rep.LockChaos, rs...)
		}
	}

	rep.Machine.LoadAfter = loadAvg()
	summarizeRuns(&rep)
	fmt.Println()
	bench.WriteTable(os.Stdout, rep.Summary, false)
	if rep.RoundTrip != nil {
		bench.WriteCASSeqFloor(os.Stdout, *rep.RoundTrip, rep.Fsync, bench.EtcdCASSeqP50(rep))
	}
	fmt.Println()
	bench.WriteDetail(os.Stdout, rep.Runs, false)
	if len(rep.TLS) > 0 {
		fmt.Println()
		bench.WriteTLS(os.Stdout, rep.TLS, false)
	}
	if len(rep.Compare) > 0 {
		fmt.Println()
		bench.WriteCompare(os.Stdout, rep.Compare, false)
	}
	if *stages {
		fmt.Println()
		bench.WriteStages(os.Stdout, rep.Runs, false)
	}
	if len(rep.LockHold) > 0 {
		fmt.Println()
		bench.WriteLockHold(os.Stdout, rep.LockHold, false)
	}
	if len(rep.Failover) > 0 {
		fmt.Println()
		bench.WriteFailover(os.Stdout, rep.Failover, false)
	}
	if len(rep.LockChaos) > 0 {
		fmt.Println()
		bench.WriteLockChaos(os.Stdout, rep.LockChaos, false)
	}
	if err := writeOutputs(rep, *out, *mdOut); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s and %s\n", *out, *mdOut)
	if failed {
		return fmt.Errorf("an invariant check failed (see CHECK FAILED above)")
	}
	return nil
}

// summarizeRuns takes the report's tables from its runs.
func summarizeRuns(rep *bench.Report) {
	rep.Summary = bench.Summarize(rep.Runs)
	rep.TLS = bench.SummarizeTLS(rep.Runs)
	rep.Compare = bench.SummarizeCompare(rep.Runs)
}

// resummarize reads the report an earlier run wrote to from, takes its
// tables again from its runs and writes it out: a change to how the tables
// are taken can be applied to figures already measured, without measuring
// them again.
func resummarize(from, jsonPath, mdPath string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	var rep bench.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("%s is not a report of this harness: %w", from, err)
	}
	if len(rep.Runs) == 0 {
		return fmt.Errorf("%s holds no runs to summarize", from)
	}
	summarizeRuns(&rep)
	bench.WriteTable(os.Stdout, rep.Summary, false)
	if err := writeOutputs(rep, jsonPath, mdPath); err != nil {
		return err
	}
	fmt.Printf("\nwrote %s and %s\n", jsonPath, mdPath)
	return nil
}

func writeOutputs(rep bench.Report, jsonPath, mdPath string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(jsonPath), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
		return err
	}
	f, err := os.Create(mdPath)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "Measured %s at cxkv %s: etcd %s (client %s), redis %s, %d cores (%s), %s, %d rounds of %s per workload and backend, medians; load average %s before, %s after%s.\n\n",
		rep.Date.Format("2006-01-02"), rep.GitCommit, rep.Machine.EtcdVersion, rep.Machine.EtcdClient, rep.Machine.RedisVersion, rep.Machine.Cores, rep.Machine.CPU, rep.Machine.GoVersion, rep.Rounds, rep.Duration, rep.Machine.LoadBefore, rep.Machine.LoadAfter, bench.SlowSyncClause(rep.SlowSync)+bench.WorkersClause(rep.Workers))
	bench.WriteTable(w, rep.Summary, true)
	fmt.Fprintln(w)
	bench.WriteDetail(w, rep.Runs, true)
	fmt.Fprintln(w)
	if len(rep.TLS) > 0 {
		bench.WriteTLS(w, rep.TLS, true)
		fmt.Fprintln(w)
	}
	if len(rep.Compare) > 0 {
		fmt.Fprintf(w, "cxkv against %s (%s):\n\n", bench.AltBackend, rep.CxkvB)
		bench.WriteCompare(w, rep.Compare, true)
		fmt.Fprintln(w)
	}
	if bench.HasStages(rep.Runs) {
		bench.WriteStages(w, rep.Runs, true)
		fmt.Fprintln(w)
	}
	if len(rep.LockHold) > 0 {
		bench.WriteLockHold(w, rep.LockHold, true)
		fmt.Fprintln(w)
	}
	if len(rep.Failover) > 0 {
		bench.WriteFailover(w, rep.Failover, true)
		fmt.Fprintln(w)
	}
	if len(rep.LockChaos) > 0 {
		bench.WriteLockChaos(w, rep.LockChaos, true)
		fmt.Fprintln(w)
	}
	bench.WriteFsync(w, rep.Fsync, true)
	if rep.RoundTrip != nil {
		fmt.Fprintln(w)
		bench.WriteRoundTrip(w, *rep.RoundTrip, rep.Fsync, bench.EtcdCASSeqP50(rep), true)
	}
	return w.Flush()
}

// startKillable starts a cluster of name's processes in dir/what-name, of
// its own since the workload kills its members.
func startKillable(ctx context.Context, what, name, cxkvBin, etcdBin, dir string) (*bench.Cluster, bench.Backend, error) {
	sub := filepath.Join(dir, what+"-"+name)
	if err := os.MkdirAll(sub, 0o755); err != nil {
		return nil, nil, err
	}
	if name == "cxkv" {
		cl, err := bench.StartCxkv(ctx, cxkvBin, sub, bench.CxkvOptions{})
		if err != nil {
			return nil, nil, err
		}
		return cl, bench.Cxkv{Endpoints: cl.Endpoints}, nil
	}
	cl, err := bench.StartEtcd(ctx, etcdBin, sub)
	if err != nil {
		return nil, nil, err
	}
	return cl, bench.Etcd{Endpoints: cl.Endpoints}, nil
}

// runLockChaos runs lock-many and lock-contended on a cluster of their own,
// undisturbed and under leader kills.
func runLockChaos(ctx context.Context, name, cxkvBin, etcdBin, dir string, each, every, callLimit time.Duration) ([]bench.LockChaosResult, error) {
	cl, b, err := startKillable(ctx, "lock-chaos", name, cxkvBin, etcdBin, dir)
	if err != nil {
		return nil, err
	}
	defer cl.Stop()
	var out []bench.LockChaosResult
	for _, w := range []string{bench.LockMany, bench.LockContended} {
		r, err := bench.RunLockChaos(ctx, b, cl, w, bench.LockChaosConfig{Prefix: "bench/lock-chaos/" + name + "/" + w, Duration: each, Interval: every, Retry: callLimit})
		if err != nil {
			return out, fmt.Errorf("%s: %w", w, err)
		}
		fmt.Printf("lock-chaos %-6s %-14s %d kills: %.0f acq/s undisturbed (max wait %.0fms), %.0f under kills (max wait %.0fms): %.2f; %d errors retried; check %s / %s\n",
			name, w, r.Kills, r.Undisturbed.OpsPerSec, r.Undisturbed.Max, r.Chaos.OpsPerSec, r.Chaos.Max, r.Throughput, r.Undisturbed.Errors+r.Chaos.Errors, r.Undisturbed.Check, r.Chaos.Check)
		out = append(out, r)
	}
	return out, nil
}

// runFailover starts a cluster of its own for the failover workload (it
// kills members) and runs it. With keep, every probe call, kill and restart
// is traced to calls.txt beside the member logs, to lay a stall beside them.
func runFailover(ctx context.Context, name, cxkvBin, etcdBin, dir string, kills int, keep bool) (bench.FailoverResult, error) {
	cl, b, err := startKillable(ctx, "failover", name, cxkvBin, etcdBin, dir)
	if err != nil {
		return bench.FailoverResult{}, err
	}
	defer cl.Stop()
	cfg := bench.FailoverConfig{Prefix: "bench/failover/" + name, Kills: kills}
	if keep {
		f, err := os.Create(filepath.Join(dir, "failover-"+name, "calls.txt"))
		if err != nil {
			return bench.FailoverResult{}, err
		}
		defer f.Close()
		w := bufio.NewWriter(f)
		defer w.Flush()
		cfg.Trace = w
	}
	r, err := bench.RunFailover(ctx, b, cl, cfg)
	if err != nil {
		return r, err
	}
	for i, k := range r.Kills {
		fmt.Printf("failover %-6s kill %d (member %d): first write %6.0fms  read %6.0fms  watch %6.0fms  lock hand-off %6.0fms  longest gap after %5.0fms (at %5.0fms)\n",
			name, i+1, k.Member, k.Write, k.Read, k.Watch, k.Lock, k.Gap, k.GapAt)
	}
	fmt.Printf("failover %-6s throughput %.2f of undisturbed, %d probe errors\n", name, r.Throughput, r.Errors)
	return r, nil
}

// gitCommit names the commit measured, with "+dirty" when tracked files
// differ from it (the binary was built from the working tree).
func gitCommit(repo string) string {
	out, err := exec.Command("git", "-C", repo, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", repo, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		commit += "+dirty"
	}
	return commit
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:min(3, len(strings.Fields(string(b))))], " ")
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func etcdClientVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "go.etcd.io/etcd/client/v3" {
				return d.Version
			}
		}
	}
	return "unknown"
}
