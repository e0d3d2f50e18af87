// Command cxkv-chaos runs a 3-member cxkv cluster as real processes under a
// seeded schedule of partitions, kill -9s and SIGSTOPs while clients write
// and take locks, then checks every history. `make chaos` runs it.
//
//	cxkv-chaos -bin bin/cxkv -duration 2m            # a new seed, printed
//	cxkv-chaos -bin bin/cxkv -seed 1234 -duration 2m # replays seed 1234's schedule
//
// It prints a table of the faults injected and the operations checked, keeps
// the run's directory (server logs, faults.log, history.json and porcupine's
// history.html) when it finds an anomaly, and exits 1 if it does, 2 if it
// could not run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cxkv/cxkv/chaos"
)

func main() {
	var cfg chaos.Config
	flag.StringVar(&cfg.Bin, "bin", "bin/cxkv", "the cxkv binary")
	flag.StringVar(&cfg.Dir, "out", "chaos-out", "directory for run directories (kept when a run fails)")
	flag.StringVar(&cfg.Host, "host", "", "a name of this machine resolving to 127.0.0.1, for the members' peer addresses (default: the host name)")
	flag.Uint64Var(&cfg.Seed, "seed", 0, "seed of the fault schedule and workload (default: new, printed)")
	flag.DurationVar(&cfg.Duration, "duration", 2*time.Minute, "how long faults and clients run")
	flag.DurationVar(&cfg.Tick, "tick", 50*time.Millisecond, "the members' raft tick (elections after 10-20 ticks)")
	flag.DurationVar(&cfg.LockTTL, "lock-ttl", 2*time.Second, "TTL of the workers' locks")
	flag.DurationVar(&cfg.CheckTimeout, "check-timeout", 10*time.Minute, "how long porcupine may take")
	flag.BoolVar(&cfg.Keep, "keep", false, "keep the run directory when the run passes")
	quiet := flag.Bool("q", false, "do not print each fault as it is injected")
	flag.Parse()
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	if !*quiet {
		cfg.Log = os.Stderr
	}
	fmt.Printf("cxkv-chaos: seed %d (replay with -seed %d), %v\n", cfg.Seed, cfg.Seed, cfg.Duration)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := chaos.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cxkv-chaos:", err)
		os.Exit(2)
	}
	rep.Print(os.Stdout)
	if !rep.OK() {
		fmt.Printf("FAILED: %d anomalies (seed %d)\n", len(rep.Anomalies), rep.Seed)
		os.Exit(1)
	}
	fmt.Println("OK: no anomaly")
}
