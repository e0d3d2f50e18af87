package raftnode

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// ReadyMaxLag is how far the applied index may trail the commit index for
// the member to count as ready. A member within it answers reads with at
// most a short wait; one further behind is still catching up.
const ReadyMaxLag = 1000

// Ready says whether the member should take client traffic: nil if it knows
// a leader, has not halted and has applied within ReadyMaxLag of the commit
// index it knows; otherwise an error saying why not. It backs /readyz and
// the grpc.health.v1 service.
func (n *Node) Ready() error {
	select {
	case <-n.stopc:
		return errors.New("member is shutting down")
	default:
	}
	if err := n.Err(); err != nil {
		return fmt.Errorf("member halted: its storage failed (%v); the process must restart", err)
	}
	return readiness(n.Status())
}

func readiness(st Status) error {
	if st.Leader == 0 {
		return fmt.Errorf("no leader (role %s, term %d): this member is cut off from a quorum or an election is under way", st.Role, st.Term)
	}
	if st.Commit > st.Applied+ReadyMaxLag {
		return fmt.Errorf("applied index %d trails commit index %d by more than %d", st.Applied, st.Commit, ReadyMaxLag)
	}
	return nil
}

// Handler serves the member's HTTP endpoints for operators: /metrics
// (Prometheus), /livez (200 while the process serves) and /readyz (200 when
// Ready, else 503 with the reason).
func (n *Node) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{Registry: n.metrics.reg}))
	mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) {
		if n.Err() != nil {
			http.Error(w, "member halted: its storage failed; the process must restart\n", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := n.Ready(); err != nil {
			http.Error(w, err.Error()+"\n", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}

// registerOperations adds the health service to the gRPC server and
// initialises the request metrics of every method it serves (so a method
// never called still shows, at zero). It runs after the other services are
// registered.
func (n *Node) registerOperations() {
	n.health.register(n.server)
	n.metrics.grpc.InitializeMetrics(n.server)
}

// healthService publishes readiness on the standard grpc.health.v1 service,
// for the whole server ("") and for cxkv.KV.
type healthService struct{ s *health.Server }

func (h *healthService) register(srv *grpc.Server) {
	h.s = health.NewServer()
	h.set(false)
	healthpb.RegisterHealthServer(srv, h.s)
}

func (h *healthService) set(ready bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ready {
		st = healthpb.HealthCheckResponse_SERVING
	}
	h.s.SetServingStatus("", st)
	h.s.SetServingStatus(cxkvrpc.KV_ServiceDesc.ServiceName, st)
}

// observeStatus runs in the Ready goroutine after each status it publishes:
// it logs and counts leader changes and elections and keeps the health
// service in step with readiness.
func (n *Node) observeStatus(st Status) {
	m := &n.metrics
	log := n.cfg.Logger
	if st.Leader != m.lastLeader {
		m.leaderChanges.Inc()
		switch {
		case st.Leader == 0:
			log.Warn("lost the leader", "previous", m.lastLeader, "term", st.Term)
		case st.Leader == n.cfg.ID:
			log.Info("became leader", "term", st.Term)
		default:
			log.Info("leader changed", "leader", st.Leader, "previous", m.lastLeader, "term", st.Term)
		}
		m.lastLeader = st.Leader
	}
	if st.Role != m.lastRole {
		if st.Role == "candidate" {
			m.elections.Inc()
			log.Info("started an election", "term", st.Term)
		}
		m.lastRole = st.Role
	}
	reason := ""
	if err := readiness(st); err != nil {
		reason = err.Error()
	}
	if reason != m.lastReady {
		if reason == "" {
			log.Info("ready")
		}
		m.lastReady = reason
		n.health.set(reason == "")
	}
}

// peerStream records messages given to (or lost on) a peer's stream, and
// logs the stream's connect and loss once each; a stream that opens reports
// no messages and no error.
func (n *Node) peerStream(peer uint64, msgs int, err error) {
	n.metrics.peerMessages(peer, msgs, err)
	p := n.metrics.peer(peer)
	if p == nil {
		return
	}
	up := err == nil
	if p.connected.Swap(up) == up {
		return
	}
	p.up.Set(b2f(up))
	if up {
		n.cfg.Logger.Info("peer connected", "peer", peer)
	} else {
		n.cfg.Logger.Warn("peer lost", "peer", peer, "err", err)
	}
}

var (
	// errPeerStreamEnded: the peer closed the stream without an error.
	errPeerStreamEnded = errors.New("the peer ended the stream")
	errPeerQueueFull   = errors.New("peer queue full")
	errPeerDown        = errors.New("no stream to the peer")
)

// snapshotSent records and logs a snapshot streamed to a peer.
func (n *Node) snapshotSent(peer, index uint64, start time.Time, err error) {
	n.metrics.snapshot("sent", start, err)
	if err == nil {
		n.cfg.Logger.Info("sent snapshot", "peer", peer, "index", index, "took", time.Since(start))
	}
}

// snapshotReceived records and logs a snapshot received from the leader;
// the Ready goroutine installs it next.
func (n *Node) snapshotReceived(m *pb.Message, size int, start time.Time) {
	n.metrics.snapshot("received", start, nil)
	n.cfg.Logger.Info("received snapshot", "from", m.GetFrom(), "index", m.GetSnapshot().GetMetadata().GetIndex(), "bytes", size, "took", time.Since(start))
}

// dbSize is the bytes the member's database occupies on disk (0 once it is
// closed).
func (n *Node) dbSize() uint64 {
	var size uint64
	n.metrics.withStore(func() { size = n.store.DiskUsage() })
	return size
}
