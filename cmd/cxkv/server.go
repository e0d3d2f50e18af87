package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/spf13/cobra"
)

func newServerCmd(e env) *cobra.Command {
	var (
		id                     uint64
		addr, dataDir, peer    string
		clusterToken, join     string
		joinClusterID          string
		listenAddr, advertise  string
		tick                   time.Duration
		electionTicks          int
		snapshotEntries        uint64
		historyEntries         uint64
		limits                 = cmpxchg.DefaultLimits()
		logLevel, logFormat    string
		pprofAddr, metricsAddr string
		slowRequest            time.Duration
		peerAddrs              peerAddrFlags
		traceWrites            bool
		tlsFlags               serverTLSFlags
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "run a cxkv member",
		Long: `Run a cxkv member. With no flags: a one-member cluster on 127.0.0.1:7001
with data in ./cxkv-data. A cluster names its members:

  cxkv server --id 1 --addr 127.0.0.1:7001 --data-dir data/1 \
    --cluster 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003

--addr is where the member listens and where peers and clients reach it.
Behind NAT or in a container they differ: --listen-addr is the local
address to bind (e.g. 0.0.0.0:7001) and --advertise-addr the address
others dial, which is this member's entry in --cluster.

The cluster id is fixed when the members first start: a hash of
--cluster-token and the member ids in --cluster (not their addresses). From
then on each data dir stores it, and the members and their addresses come
from the replicated configuration, not from --cluster: a member moved with
"cxkv member update" restarts at its new address. A member whose data dir is
empty but whose id the cluster has seen running refuses to start (its disk
was lost; replace it, see the README's runbook).

A member added with "cxkv member add" starts with an empty data dir and
--join, the addresses of running members; it learns the cluster id and
members from them (--cluster-id, which member add prints, makes sure it
joins the right cluster):

  cxkv server --id 4 --addr 127.0.0.1:7004 --data-dir data/4 \
    --join 127.0.0.1:7001,127.0.0.1:7002 --cluster-id 5c0ffee

SIGTERM on the leader first hands leadership to the most caught-up voter
(waiting at most four election timeouts), so writes pause for a round
trip rather than an election.

--peer-addr gives the Raft traffic between members a port of its own
(with --peer-listen-addr and --peer-advertise-addr where they differ): the
client port then serves clients only, and --cluster names every member's
peer address:

  cxkv server --id 1 --addr 127.0.0.1:7001 --peer-addr 127.0.0.1:7101 \
    --data-dir data/1 \
    --cluster 1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103

TLS takes etcd's flags: --cert-file, --key-file, --trusted-ca-file and
--client-cert-auth for the client port, --peer-cert-file, --peer-key-file
and --peer-trusted-ca-file for mutual TLS between members (a member then
accepts Raft traffic only from a certificate of the peer CA that covers a
current member's peer address). TLS needs --peer-addr. Certificate, key and
CA files are re-read when they change: replace them to rotate, no restart.

--metrics-addr serves /metrics (Prometheus), /livez and /readyz over HTTP;
the client port also serves the standard grpc.health.v1 service.

Every flag can also be set from the environment: CXKV_ and the flag's name
in upper case with - as _ (CXKV_DATA_DIR, CXKV_METRICS_ADDR, ...). A flag on
the command line wins over the environment, which wins over the default.

SIGTERM or SIGINT shuts the member down cleanly.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := flagsFromEnv(cmd.Flags(), e.getenv); err != nil {
				return usageError{err}
			}
			if advertise == "" {
				advertise = addr
			} else if cmd.Flags().Changed("addr") && addr != advertise {
				return usageError{fmt.Errorf("--addr %s and --advertise-addr %s disagree: give one", addr, advertise)}
			}
			if listenAddr == "" {
				listenAddr = advertise
			} else if err := checkListenAddr(listenAddr); err != nil {
				return usageError{fmt.Errorf("--listen-addr %q: %w", listenAddr, err)}
			}
			if historyEntries == 0 {
				return usageError{fmt.Errorf("--history-entries must be positive")}
			}
			peerListen, peerAdvertise, err := peerAddrs.resolve()
			if err != nil {
				return usageError{err}
			}
			if err := raftnode.CheckAddr(advertise); err != nil {
				return usageError{fmt.Errorf("--addr %q: %w", advertise, err)}
			}
			clientTLS, peerTLS, err := tlsFlags.resolve(peerAdvertise != "")
			if err != nil {
				return usageError{err}
			}
			// --cluster names peer addresses: the client address when
			// peers share it.
			ownPeer := advertise
			if peerAdvertise != "" {
				ownPeer = peerAdvertise
			}
			if cmd.Flags().Changed("id") && id == 0 {
				return usageError{fmt.Errorf("--id must be positive")}
			}
			if !cmd.Flags().Changed("id") && peer != "" {
				id = 0 // the member --cluster gives the advertised address
			}
			memberID, peers, err := parseCluster(peer, id, ownPeer)
			if err != nil {
				return usageError{err}
			}
			id = memberID
			joinAddrs, wantCluster, err := parseJoin(join, joinClusterID, peer)
			if err != nil {
				return usageError{err}
			}
			logger, err := newLogger(cmd.ErrOrStderr(), logFormat, logLevel)
			if err != nil {
				return usageError{err}
			}
			if err := limits.Validate(); err != nil {
				return usageError{err}
			}
			routeGRPCLogs(logger)
			logger.Info("starting", "version", raftnode.Build().String(), "id", id, "listen", listenAddr, "advertise", advertise, "peer_listen", peerListen, "peer_advertise", peerAdvertise)
			if pprofAddr != "" {
				stop, err := servePprof(pprofAddr, logger)
				if err != nil {
					return usageError{fmt.Errorf("--pprof %q: %w", pprofAddr, err)}
				}
				defer stop()
			}
			lis, err := net.Listen("tcp", listenAddr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listenAddr, err)
			}
			var peerLis net.Listener
			if peerListen != "" {
				if peerLis, err = net.Listen("tcp", peerListen); err != nil {
					lis.Close()
					return fmt.Errorf("listen for peers on %s: %w", peerListen, err)
				}
			}
			node, err := raftnode.Start(raftnode.Config{
				ID: id, Addr: advertise, Listener: lis, DataDir: dataDir, Peers: peers,
				PeerAddr: peerAdvertise, PeerListener: peerLis, ClientTLS: clientTLS, PeerTLS: peerTLS,
				ClusterToken: clusterToken, Join: joinAddrs, JoinClusterID: wantCluster,
				TickInterval: tick, ElectionTicks: electionTicks,
				SnapshotEntries: snapshotEntries, HistoryEntries: historyEntries, Limits: limits, Logger: logger,
				SlowRequest: slowRequest, TraceWrites: traceWrites,
			})
			if err != nil {
				lis.Close()
				if peerLis != nil {
					peerLis.Close()
				}
				return err
			}
			if metricsAddr != "" {
				stop, err := serveOperations(metricsAddr, node, logger)
				if err != nil {
					node.Stop()
					return usageError{fmt.Errorf("--metrics-addr %q: %w", metricsAddr, err)}
				}
				defer stop()
			}
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
			defer signal.Stop(sig)
			select {
			case s := <-sig:
				logger.Info("shutting down", "signal", s.String())
				// A leader hands off first: a bounded wait, a few election
				// timeouts at most.
				return node.Shutdown(time.Duration(4*electionTicks) * tick)
			case <-node.Done():
				// The member halted: it cannot persist, so it serves
				// nothing. Exit non-zero for a supervisor to restart it;
				// every acknowledged write is on a majority's disks.
				halt := node.Err()
				node.Stop()
				if node.Status().Role == "removed" {
					return fmt.Errorf("member stopped: %w", halt)
				}
				return fmt.Errorf("member halted, exiting for a restart: %w", halt)
			}
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&id, "id", 1, "this member's id (positive; must appear in --cluster)")
	f.StringVar(&addr, "addr", "127.0.0.1:7001", "host:port this member serves peers and clients on (listen and advertise alike)")
	f.StringVar(&listenAddr, "listen-addr", "", "host:port to bind, if not the advertised address (e.g. 0.0.0.0:7001)")
	f.StringVar(&advertise, "advertise-addr", "", "host:port peers and clients reach this member at: its entry in --cluster (default --addr)")
	peerAddrs.register(f)
	tlsFlags.register(f)
	f.StringVar(&dataDir, "data-dir", "cxkv-data", "directory of this member's database")
	f.StringVar(&peer, "cluster", "", "initial members as id=host:port,... with each member's peer address (default: this member alone); read only when bootstrapping a new cluster")
	f.StringVar(&clusterToken, "cluster-token", "", "name that, with the initial member ids, makes the new cluster's id (every bootstrapping member gives the same)")
	f.StringVar(&join, "join", "", "host:port,... of running members: join their cluster (after cxkv member add) instead of bootstrapping one")
	f.StringVar(&joinClusterID, "cluster-id", "", "hex id of the cluster this member must belong to (with --join; member add prints it)")
	f.DurationVar(&tick, "tick", 100*time.Millisecond, "raft tick interval")
	f.IntVar(&electionTicks, "election-ticks", 10, "ticks without a leader before an election")
	f.Uint64Var(&snapshotEntries, "snapshot-entries", 10000, "applied entries between snapshots (the log keeps half that behind one)")
	f.Uint64Var(&historyEntries, "history-entries", 10000, "watch history kept, in applied indexes: a watch may resume from any of the last this many (independent of --snapshot-entries)")
	f.IntVar(&limits.MaxValueBytes, "max-value-bytes", limits.MaxValueBytes, fmt.Sprintf("largest value accepted (at most %d)", cmpxchg.MaxValueBytesLimit))
	f.IntVar(&limits.MaxTxnOps, "max-txn-ops", limits.MaxTxnOps, fmt.Sprintf("most compares plus operations in one transaction (at most %d)", cmpxchg.MaxTxnOpsLimit))
	f.IntVar(&limits.MaxTxnBytes, "max-txn-bytes", limits.MaxTxnBytes, fmt.Sprintf("most bytes of keys and values in one transaction (at most %d)", cmpxchg.MaxTxnBytesLimit))
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.StringVar(&logFormat, "log-format", "text", "text (key=value) or json (one object a line)")
	f.StringVar(&metricsAddr, "metrics-addr", "", "serve /metrics, /livez and /readyz over HTTP on host:port (default: off)")
	f.DurationVar(&slowRequest, "slow-request", 0, "log client requests taking at least this long, with method and key (0: off)")
	f.BoolVar(&traceWrites, "trace-writes", false, "benchmark mode: time every write through the leader at each stage of its path (cxkv_write_stage_seconds on --metrics-addr); costs a little per write")
	f.StringVar(&pprofAddr, "pprof", "", "serve Go profiles (CPU, heap, block, mutex) on host:port under /debug/pprof/; for profiling only, it samples blocking and lock contention")
	documentEnv(f)
	return cmd
}

// serveOperations serves the member's /metrics, /livez and /readyz on addr.
func serveOperations(addr string, node *raftnode.Node, logger *slog.Logger) (stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: node.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(lis)
	logger.Info("serving metrics and health", "addr", lis.Addr().String())
	return func() { srv.Close() }, nil
}

// checkListenAddr accepts host:port with an empty host (all interfaces).
func checkListenAddr(a string) error {
	_, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("not host:port: %v", err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q is not 1..65535", port)
	}
	return nil
}

// servePprof serves net/http/pprof on addr. Block and mutex profiles are
// empty unless sampled, so it turns sampling on: one blocking event per
// 10µs blocked and one contended mutex in 100, which costs a little
// throughput and is why it is off without --pprof.
func servePprof(addr string, logger *slog.Logger) (stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	runtime.SetBlockProfileRate(int(10 * time.Microsecond))
	runtime.SetMutexProfileFraction(100)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(lis)
	logger.Info("serving profiles", "addr", lis.Addr().String())
	return func() { srv.Close() }, nil
}

// parseCluster reads --cluster and checks it against --id and this member's
// peer address (its client address when peers share the port). An id of 0
// means --id was not given: the member is the one --cluster names at addr,
// so every member of a StatefulSet can run the same flags.
func parseCluster(spec string, id uint64, addr string) (uint64, map[uint64]string, error) {
	if id == 0 && spec == "" {
		return 0, nil, fmt.Errorf("--id must be positive")
	}
	if spec == "" {
		return id, map[uint64]string{id: addr}, nil
	}
	peers, err := parsePeers(spec)
	if err != nil {
		return 0, nil, err
	}
	if id == 0 {
		for pid, a := range peers {
			if a == addr {
				id = pid
			}
		}
		if id == 0 {
			return 0, nil, fmt.Errorf("--cluster %q names no member at %s; give --id, or the address --cluster names as --advertise-addr (--peer-advertise-addr with a peer port)", spec, addr)
		}
	}
	own, ok := peers[id]
	if !ok {
		return 0, nil, fmt.Errorf("--cluster %q does not name this member (--id %d)", spec, id)
	}
	if own != addr {
		return 0, nil, fmt.Errorf("this member's peer address %s differs from member %d's address %s in --cluster", addr, id, own)
	}
	return id, peers, nil
}

// parsePeers reads a --cluster list: id=host:port,...
func parsePeers(spec string) (map[uint64]string, error) {
	peers := map[uint64]string{}
	for _, part := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		pid, err := strconv.ParseUint(k, 10, 64)
		if !ok || err != nil || pid == 0 {
			return nil, fmt.Errorf("--cluster entry %q: want id=host:port with a positive id", part)
		}
		if err := raftnode.CheckAddr(v); err != nil {
			return nil, fmt.Errorf("--cluster entry %q: %w", part, err)
		}
		if _, dup := peers[pid]; dup {
			return nil, fmt.Errorf("--cluster names member %d twice", pid)
		}
		peers[pid] = v
	}
	return peers, nil
}

// parseJoin reads --join and --cluster-id. A joining member learns the
// members from the cluster, so --cluster would say something else.
func parseJoin(join, clusterID, cluster string) ([]string, uint64, error) {
	var want uint64
	if clusterID != "" {
		v, err := strconv.ParseUint(strings.TrimPrefix(clusterID, "0x"), 16, 64)
		if err != nil || v == 0 {
			return nil, 0, fmt.Errorf("--cluster-id %q: want the cluster's id in hex (cxkv member list shows it)", clusterID)
		}
		want = v
	}
	if join == "" {
		return nil, want, nil
	}
	if cluster != "" {
		return nil, 0, fmt.Errorf("--join and --cluster exclude each other: a joining member learns the members from the cluster")
	}
	var addrs []string
	for _, a := range strings.Split(join, ",") {
		a = strings.TrimSpace(a)
		if err := raftnode.CheckAddr(a); err != nil {
			return nil, 0, fmt.Errorf("--join entry %q: %w", a, err)
		}
		addrs = append(addrs, a)
	}
	return addrs, want, nil
}
