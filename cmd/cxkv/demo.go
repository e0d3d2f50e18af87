package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/cmd/cxkv/internal/demo"
	"github.com/spf13/cobra"
)

// The demo commands are flags and signals only; internal/demo holds the
// scenarios, the worker, the runner and the process supervision.

func newDemoCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "local cluster, worker processes and scenarios that show cxkv at work",
		Long: `The demo: a local 3-member cluster, worker processes that coordinate
through it, and a verdict computed from what each worker recorded.

  cxkv demo run                              everything in one command (make demo)
  cxkv demo cluster                          a cluster in this terminal
  cxkv demo worker --scenario interactive    a worker in another terminal`,
	}
	cmd.AddCommand(newDemoClusterCmd(), newDemoWorkerCmd(g), newDemoRunCmd())
	return cmd
}

// signalContext ends on SIGINT or SIGTERM: the demo then stops its children
// itself.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func newDemoClusterCmd() *cobra.Command {
	var cfg demo.ServeConfig
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "run a local 3-member cluster in this terminal until Ctrl-C",
		Long: `Starts three cxkv server processes on 127.0.0.1 (--base-port, +1, +2),
prints their logs prefixed [m1], [m2], [m3] and the --endpoints to give
workers. Ctrl-C stops all three. Data lives in a temp dir removed on exit,
unless --keep or --data-dir (a kept dir starts again on its own ports).

--tls makes a throwaway client CA and peer CA (crypto/x509, in the data
dir's tls/, new on every start), runs the members with mutual TLS on both
ports and peers on ports of their own, and prints the CXKV_CACERT,
CXKV_CERT and CXKV_KEY to export in the other terminals.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext()
			defer stop()
			cfg.Out = cmd.ErrOrStderr()
			return demo.ServeCluster(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataDir, "data-dir", "", "parent of the members' data dirs (default: a temp dir)")
	f.BoolVar(&cfg.Keep, "keep", false, "keep the temp data dir on exit")
	f.IntVar(&cfg.BasePort, "base-port", 7301, "member 1 listens on this port, 2 and 3 on the next two")
	f.BoolVar(&cfg.TLS, "tls", false, "mutual TLS on both ports with a throwaway CA (peers then on --base-port+100..); prints the CLI's variables")
	return cmd
}

func newDemoWorkerCmd(g *globals) *cobra.Command {
	var (
		cfg      demo.WorkerConfig
		types    string
		lockMode string
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "one worker process of a scenario, against --endpoints",
		Long: `One worker. Start as many as you like, each in its own terminal, against
the same --endpoints (or CXKV_ENDPOINTS). Scenarios:

  rooms        book hotel rooms under a lock on the room type, until sold out
  bank         move money between accounts: --mode lock (both accounts'
               locks, in name order) or --mode optimistic (compare the
               indexes read, retry on conflict); one transaction each
  interactive  ENTER takes the lock, ENTER releases it; shows the holder and
               the waiters. kill -9 the holder: its lock expires after
               --lock-ttl and the next waiter gets it.

--record FILE appends what the worker did as JSON lines (the demo's verdict
reads them). SIGINT or SIGTERM: finish the current operation, release the
locks, exit.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext()
			defer stop()
			var err error
			if cfg.LockMode, err = demo.ParseLockMode(lockMode); err != nil {
				return usageError{err}
			}
			cfg.Endpoints = client.ParseEndpoints(g.endpoints)
			if len(cfg.Endpoints) == 0 {
				return usageError{errors.New("no --endpoints")}
			}
			if cfg.TLS, err = g.tls.config(); err != nil {
				return usageError{err}
			}
			if types != "" {
				cfg.Rooms.Types = strings.Split(types, ",")
			}
			if cfg.ID == "" {
				host, _ := os.Hostname()
				cfg.ID = host + ":" + strconv.Itoa(os.Getpid())
			}
			cfg.Out = cmd.OutOrStdout()
			cfg.In = cmd.InOrStdin()
			err = demo.RunWorker(ctx, cfg)
			if err != nil && strings.HasPrefix(err.Error(), "--") {
				return usageError{err}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Scenario, "scenario", "interactive", "rooms, bank or interactive")
	f.StringVar(&cfg.ID, "id", "", "this worker's name in records and lock owners (default host:pid)")
	f.StringVar(&cfg.Record, "record", "", "append what this worker did to this JSON-lines file")
	f.StringVar(&cfg.Mode, "mode", demo.ModeLock, "bank: lock or optimistic")
	f.DurationVar(&cfg.Duration, "duration", 0, "stop after this long (default: until Ctrl-C, or sold out)")
	f.StringVar(&lockMode, "lock-mode", "queue", "queue (fair: waiters in line, shown as waiting) or plain (waiters race on each release)")
	f.DurationVar(&cfg.LockTTL, "lock-ttl", 0, "TTL of this worker's locks (default 3s; interactive 5s)")
	f.StringVar(&types, "room-types", "", "rooms: room types, comma-separated, for the first worker's setup (default standard,deluxe,suite)")
	f.IntVar(&cfg.Rooms.Rooms, "rooms", 0, "rooms: rooms per type, for the first worker's setup")
	f.IntVar(&cfg.Bank.Accounts, "accounts", 0, "bank: number of accounts, for the first worker's setup (default 10)")
	f.Int64Var(&cfg.Bank.Balance, "balance", 0, "bank: opening balance of each account (default 1000)")
	f.BoolVar(&cfg.Stats, "stats", false, "print JSON stats lines instead of a line per operation (used by demo run)")
	f.MarkHidden("stats")
	return cmd
}

func newDemoRunCmd() *cobra.Command {
	var (
		cfg      demo.RunConfig
		types    string
		lockMode string
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "the whole demo in one command: cluster, workers, progress, verdict",
		Long: `Starts a local 3-member cluster and --workers worker processes on a
scenario for --duration, shows a live progress line (operations per second,
locks held, current leader), then a table and a verdict computed from the
workers' own records and the store. Exits 1 if an invariant broke.

--chaos kills (SIGKILL) a member every few seconds, every other time the
leader, and restarts it from its data dir; it also kills one worker
mid-operation and starts a replacement.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signalContext()
			defer stop()
			if types != "" {
				cfg.Rooms.Types = strings.Split(types, ",")
			}
			var err error
			if cfg.LockMode, err = demo.ParseLockMode(lockMode); err != nil {
				return usageError{err}
			}
			cfg.Out = cmd.OutOrStdout()
			cfg.Live = isTerminal(cmd.OutOrStdout())
			err = demo.Run(ctx, cfg)
			if err != nil && strings.HasPrefix(err.Error(), "--") {
				return usageError{err}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Scenario, "scenario", demo.ScenarioRooms, "rooms or bank")
	f.StringVar(&cfg.Mode, "mode", demo.ModeLock, "bank: lock or optimistic")
	f.IntVar(&cfg.Workers, "workers", 8, "worker processes")
	f.DurationVar(&cfg.Duration, "duration", 20*time.Second, "how long the workers run (rooms ends sooner when sold out)")
	f.BoolVar(&cfg.Chaos, "chaos", false, "kill and restart members, and kill a worker, during the run")
	f.StringVar(&lockMode, "lock-mode", "queue", "queue (fair: waiters in line) or plain (waiters race on each release)")
	f.DurationVar(&cfg.LockTTL, "lock-ttl", 2*time.Second, "TTL of the workers' locks")
	f.IntVar(&cfg.BasePort, "base-port", 0, "member 1 listens on this port, 2 and 3 on the next two (default: free ports)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "where the cluster's data, the records and the logs go (default: a temp dir)")
	f.BoolVar(&cfg.Keep, "keep", false, "keep the temp dir at the end")
	f.StringVar(&types, "room-types", "", "rooms: room types, comma-separated (default standard,deluxe,suite)")
	f.IntVar(&cfg.Rooms.Rooms, "rooms", 0, "rooms: rooms per type")
	f.IntVar(&cfg.Bank.Accounts, "accounts", 0, "bank: number of accounts (default 10)")
	f.Int64Var(&cfg.Bank.Balance, "balance", 0, "bank: opening balance of each account (default 1000)")
	return cmd
}

// isTerminal reports whether w is a terminal, where the progress line can
// be rewritten in place.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
