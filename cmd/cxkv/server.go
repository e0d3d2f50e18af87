package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/spf13/cobra"
)

func newServerCmd() *cobra.Command {
	var (
		id                  uint64
		addr, dataDir, peer string
		tick                time.Duration
		electionTicks       int
		snapshotEntries     uint64
		limits              = cmpxchg.DefaultLimits()
		logLevel            string
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "run a cxkv member",
		Long: `Run a cxkv member. With no flags: a one-member cluster on 127.0.0.1:7001
with data in ./cxkv-data. A cluster names its members:

  cxkv server --id 1 --addr 127.0.0.1:7001 --data-dir data/1 \
    --cluster 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003

SIGTERM or SIGINT shuts the member down cleanly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			peers, err := parseCluster(peer, id, addr)
			if err != nil {
				return usageError{err}
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(logLevel)); err != nil {
				return usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", logLevel)}
			}
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			node, err := raftnode.Start(raftnode.Config{
				ID: id, Addr: addr, DataDir: dataDir, Peers: peers,
				TickInterval: tick, ElectionTicks: electionTicks,
				SnapshotEntries: snapshotEntries, Limits: limits, Logger: logger,
			})
			if err != nil {
				return err
			}
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
			defer signal.Stop(sig)
			s := <-sig
			logger.Info("shutting down", "signal", s.String())
			return node.Stop()
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&id, "id", 1, "this member's id (positive; must appear in --cluster)")
	f.StringVar(&addr, "addr", "127.0.0.1:7001", "host:port this member serves peers and clients on")
	f.StringVar(&dataDir, "data-dir", "cxkv-data", "directory of this member's database")
	f.StringVar(&peer, "cluster", "", "initial members as id=host:port,... (default: this member alone)")
	f.DurationVar(&tick, "tick", 100*time.Millisecond, "raft tick interval")
	f.IntVar(&electionTicks, "election-ticks", 10, "ticks without a leader before an election")
	f.Uint64Var(&snapshotEntries, "snapshot-entries", 10000, "applied entries between snapshots (the log keeps half that behind one)")
	f.IntVar(&limits.MaxValueBytes, "max-value-bytes", limits.MaxValueBytes, "largest value accepted")
	f.IntVar(&limits.MaxTxnOps, "max-txn-ops", limits.MaxTxnOps, "most compares plus operations in one transaction")
	f.IntVar(&limits.MaxTxnBytes, "max-txn-bytes", limits.MaxTxnBytes, "most bytes of keys and values in one transaction")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// parseCluster reads --cluster and checks it against --id and --addr.
func parseCluster(spec string, id uint64, addr string) (map[uint64]string, error) {
	if id == 0 {
		return nil, fmt.Errorf("--id must be positive")
	}
	if err := checkAddr(addr); err != nil {
		return nil, fmt.Errorf("--addr %q: %w", addr, err)
	}
	if spec == "" {
		return map[uint64]string{id: addr}, nil
	}
	peers := map[uint64]string{}
	for _, part := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		pid, err := strconv.ParseUint(k, 10, 64)
		if !ok || err != nil || pid == 0 {
			return nil, fmt.Errorf("--cluster entry %q: want id=host:port with a positive id", part)
		}
		if err := checkAddr(v); err != nil {
			return nil, fmt.Errorf("--cluster entry %q: %w", part, err)
		}
		if _, dup := peers[pid]; dup {
			return nil, fmt.Errorf("--cluster names member %d twice", pid)
		}
		peers[pid] = v
	}
	own, ok := peers[id]
	if !ok {
		return nil, fmt.Errorf("--cluster %q does not name this member (--id %d)", spec, id)
	}
	if own != addr {
		return nil, fmt.Errorf("--addr %s differs from member %d's address %s in --cluster", addr, id, own)
	}
	return peers, nil
}

func checkAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("not host:port: %v", err)
	}
	if host == "" {
		return fmt.Errorf("no host")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q is not 1..65535", port)
	}
	return nil
}
