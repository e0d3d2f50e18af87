package raftnode

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"

	"github.com/cxkv/cxkv/kv"
)

// metrics is what a member tells Prometheus about itself. Each member has
// its own registry, never the process-wide default, so several members in
// one test process do not collide. The rest of raftnode reports into it
// through one-line calls; gauges that the member already knows (term,
// indexes, pending proposals, Pebble's figures, the state census) are read
// when scraped instead of being kept up to date on every request.
type metrics struct {
	syncs   atomic.Uint64
	entries atomic.Uint64

	reg  *prometheus.Registry
	grpc *grpcprom.ServerMetrics

	leaderChanges      prometheus.Counter
	elections          prometheus.Counter
	deadLeaders        prometheus.Counter
	proposalsCommitted prometheus.Counter
	proposalsFailed    prometheus.Counter
	proposalSeconds    prometheus.Histogram
	fsyncSeconds       prometheus.Histogram
	entriesPersisted   prometheus.Counter
	peerSent           *prometheus.CounterVec
	peerFailed         *prometheus.CounterVec
	peerRTT            *prometheus.HistogramVec
	peerUp             *prometheus.GaugeVec
	snapshots          *prometheus.CounterVec
	snapshotSeconds    *prometheus.HistogramVec
	watchStreams       prometheus.Gauge
	watchEvents        prometheus.Counter
	watchWakeups       prometheus.Counter
	expiries           prometheus.Counter

	// peers holds the per-peer series and state of the members the
	// transport has now: a member added later gets them when the transport
	// dials it, a removed one loses them (addPeer, removePeer).
	peersMu sync.RWMutex
	peers   map[uint64]*peerMetrics

	// lastLeader, lastRole and lastReady are the Ready goroutine's: what
	// the previous published status said.
	lastLeader uint64
	lastRole   string
	lastReady  string

	// storeMu keeps scrapes off a closed database: collectors read under
	// RLock and Stop closes the store under Lock.
	storeMu     sync.RWMutex
	storeClosed bool
}

// Buckets: proposals and fsyncs from 100µs to ~6.5s; snapshots from 10ms
// to ~3min.
var (
	latencyBuckets  = prometheus.ExponentialBuckets(0.0001, 2, 17)
	snapshotBuckets = prometheus.ExponentialBuckets(0.01, 2, 15)
)

func (m *metrics) init(n *Node) {
	m.reg = prometheus.NewRegistry()
	m.lastReady = "starting" // so the first status, ready or not, sets the health service
	f := promFactory{m.reg}
	m.leaderChanges = f.counter("cxkv_leader_changes_seen_total", "Times this member saw the leader change (including to no leader).")
	m.elections = f.counter("cxkv_elections_started_total", "Times this member started an election (became candidate).")
	m.deadLeaders = f.counter("cxkv_dead_leader_detections_total", "Times this member, a follower, found its leader's process gone from the transport (the stream to it broke and its port refused a connection) and advanced its election clock to the timeout.")
	m.proposalsCommitted = f.counter("cxkv_proposals_committed_total", "Commands this member applied from the log (every member applies every command).")
	m.proposalsFailed = f.counter("cxkv_proposals_failed_total", "Writes received by this member that ended without a result: no leader, leadership lost while in flight, timed out or shut down.")
	m.proposalSeconds = f.histogram("cxkv_proposal_duration_seconds", "From a write's arrival at this member to its result, for writes that applied.", latencyBuckets)
	m.fsyncSeconds = f.histogram("cxkv_wal_fsync_duration_seconds", "Synced writes of Raft log entries and hard state (one per synced write of the log, which carries every Ready queued while the one before it synced).", latencyBuckets)
	m.entriesPersisted = f.counter("cxkv_wal_entries_persisted_total", "Raft log entries written; divided by the fsync count, the batching factor.")
	m.peerSent = f.counterVec("cxkv_peer_messages_sent_total", "Raft messages handed to a peer's stream.", "peer")
	m.peerFailed = f.counterVec("cxkv_peer_messages_failed_total", "Raft messages dropped: the peer's queue was full or its stream broke.", "peer")
	m.peerRTT = f.histogramVec("cxkv_peer_round_trip_seconds", "From a heartbeat sent to a peer to its response arriving (leader only; includes both members' queues).", latencyBuckets, "peer")
	m.peerUp = f.gaugeVec("cxkv_peer_connected", "1 while a stream to the peer is open, 0 from its break until the next one opens.", "peer")
	m.snapshots = f.counterVec("cxkv_snapshots_total", "Snapshots sent to peers, received from the leader and installed, by result.", "op", "result")
	m.snapshotSeconds = f.histogramVec("cxkv_snapshot_duration_seconds", "Time to send, receive or install a snapshot that succeeded.", snapshotBuckets, "op")
	m.watchStreams = f.gauge("cxkv_watch_streams", "Watch streams open on this member.")
	m.watchEvents = f.counter("cxkv_watch_events_sent_total", "Events sent on watch streams.")
	m.watchWakeups = f.counter("cxkv_watch_wakeups_total", "Times a watch stream woke to look for new events.")
	m.expiries = f.counter("cxkv_expiries_total", "Keys deleted because their TTL ran out (applied on this member).")

	m.peers = map[uint64]*peerMetrics{}
	for _, op := range []string{"sent", "received", "installed"} {
		m.snapshotSeconds.WithLabelValues(op)
		for _, r := range []string{"ok", "failed"} {
			m.snapshots.WithLabelValues(op, r)
		}
	}

	m.reg.MustRegister(newStatusCollector(n.Status))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cxkv_halted", Help: "1 if the member stopped serving because its storage failed; the process must restart."},
		func() float64 { return b2f(n.Err() != nil) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "cxkv_proposals_pending", Help: "Writes received by this member waiting for their result."},
		func() float64 { return float64(n.waits.len()) }))

	b := Build()
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cxkv_build_info", Help: "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "go_version": b.GoVersion},
	}, func() float64 { return 1 }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "cxkv_member_info", Help: "Always 1; the labels name this member and its cluster.",
		ConstLabels: prometheus.Labels{"member": strconv.FormatUint(n.cfg.ID, 10), "cluster": fmt.Sprintf("%x", n.clusterID)},
	}, func() float64 { return 1 }))

	m.reg.MustRegister(peerQueueCollector{n: n, desc: prometheus.NewDesc("cxkv_peer_queued_bytes",
		"Raft messages waiting in the queue of the stream to each peer, in bytes (at most 64 MiB; past that they are dropped).", []string{"peer"}, nil)})
	m.reg.MustRegister(newCensusCollector(n), kv.NewCollector(func(f func(*kv.Store)) { m.withStore(func() { f(n.store) }) }))
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	m.grpc = grpcprom.NewServerMetrics(
		grpcprom.WithServerCounterOptions(grpcprom.WithNamespace("cxkv")),
		grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramNamespace("cxkv"), grpcprom.WithHistogramBuckets(latencyBuckets)),
	)
	m.reg.MustRegister(m.grpc)
}

// interceptors builds the member's interceptor chains, once: request
// counts and latency by method and code, the slow-request log, the leader
// hint on a refusal, the refusal of every call on a halted member, and the
// caller's identity. n.unary is the unary chain as a function, so a call
// that arrives on the Calls stream (raftnode/calls.go) goes through exactly
// what its unary call goes through.
func (n *Node) interceptors() {
	n.unary = chainUnary(n.metrics.grpc.UnaryServerInterceptor(), n.slowUnary, n.hintLeaderUnary, n.refuseWhenHalted, n.authUnary)
	n.streamedUnary = chainUnary(n.metrics.grpc.UnaryServerInterceptor(), n.slowUnary, n.hintLeaderUnary, n.refuseCallWhenHalted, n.authUnary)
	n.stream = chainStream(n.metrics.grpc.StreamServerInterceptor(), n.hintLeaderStream, n.refuseStreamWhenHalted, n.authStream)
}

// chainUnary runs ics in order, the first outermost, around the handler.
func chainUnary(ics ...grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		for i := len(ics) - 1; i >= 0; i-- {
			ic, next := ics[i], handler
			handler = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, next) }
		}
		return handler(ctx, req)
	}
}

// chainStream is chainUnary for streams.
func chainStream(ics ...grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		for i := len(ics) - 1; i >= 0; i-- {
			ic, next := ics[i], handler
			handler = func(srv any, ss grpc.ServerStream) error { return ic(srv, ss, info, next) }
		}
		return handler(srv, ss)
	}
}

// Registry is the member's Prometheus registry (what /metrics serves).
func (n *Node) Registry() *prometheus.Registry { return n.metrics.reg }

// readyPersisted records one Ready written to disk: the synced write's
// latency, the entries it carried, and the install of a snapshot it held.
func (m *metrics) readyPersisted(rd raft.Ready, wrote bool, took time.Duration, err error) {
	if rd.Snapshot != nil && !raft.IsEmptySnap(rd.Snapshot) {
		m.snapshot("installed", time.Now().Add(-took), err)
	}
	if err != nil || !wrote {
		return
	}
	m.entries.Add(uint64(len(rd.Entries)))
	m.entriesPersisted.Add(float64(len(rd.Entries)))
	if rd.MustSync {
		m.syncs.Add(1)
		m.fsyncSeconds.Observe(took.Seconds())
	}
}

// applied counts the commands in an applied batch.
func (m *metrics) applied(batch []Entry) {
	for _, e := range batch {
		if e.Command != nil {
			m.proposalsCommitted.Inc()
		}
	}
}

// expired counts the expiries among the events an apply made.
func (m *metrics) expired(events []kv.Event) {
	for _, e := range events {
		if e.Type == kv.EventExpire {
			m.expiries.Inc()
		}
	}
}

// proposalDone records the end of a write this member received: its
// latency if it applied, a failure if it ended without a result.
func (m *metrics) proposalDone(p *proposal, r proposalResult) {
	if r.err != nil {
		m.proposalsFailed.Inc()
		return
	}
	m.proposalSeconds.Observe(time.Since(p.start).Seconds())
}

// peerQueueCollector reads, when scraped, what the transport holds for each
// of its peers, so a peer whose stream does not keep up shows without a
// gauge updated on every message.
type peerQueueCollector struct {
	n    *Node
	desc *prometheus.Desc
}

func (c peerQueueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c peerQueueCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.n.grpcPeers
	if t == nil { // not started yet
		return
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	for id, p := range t.peers {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(p.queued.Load()), strconv.FormatUint(id, 10))
	}
}

// peerMetrics is one peer's series and the state behind them.
type peerMetrics struct {
	sent, failed prometheus.Counter
	up           prometheus.Gauge
	rtt          prometheus.Observer
	// heartbeatSent is when the oldest heartbeat not yet answered was sent
	// (unix nanos, 0 if none): the round trip is measured from it to the
	// next heartbeat response.
	heartbeatSent atomic.Int64
	// connected is the transport's view of the peer's stream, so a connect
	// or a loss is logged once, not per message.
	connected atomic.Bool
}

// addPeer creates a peer's series (all at zero, so a peer that never got a
// message still shows), unless it has them.
func (m *metrics) addPeer(id uint64) {
	m.peersMu.Lock()
	defer m.peersMu.Unlock()
	if m.peers[id] != nil {
		return
	}
	l := strconv.FormatUint(id, 10)
	m.peers[id] = &peerMetrics{
		sent: m.peerSent.WithLabelValues(l), failed: m.peerFailed.WithLabelValues(l),
		up: m.peerUp.WithLabelValues(l), rtt: m.peerRTT.WithLabelValues(l),
	}
}

// removePeer drops the series of a peer that left the membership: a scrape
// shows the members there are.
func (m *metrics) removePeer(id uint64) {
	m.peersMu.Lock()
	defer m.peersMu.Unlock()
	delete(m.peers, id)
	l := strconv.FormatUint(id, 10)
	m.peerSent.DeleteLabelValues(l)
	m.peerFailed.DeleteLabelValues(l)
	m.peerUp.DeleteLabelValues(l)
	m.peerRTT.DeleteLabelValues(l)
}

// peer is a peer's metrics, nil for a member the transport does not have
// (one just removed, or a message from an unknown sender).
func (m *metrics) peer(id uint64) *peerMetrics {
	m.peersMu.RLock()
	defer m.peersMu.RUnlock()
	return m.peers[id]
}

func (m *metrics) peerMessages(peer uint64, sent int, err error) {
	p := m.peer(peer)
	if p == nil {
		return
	}
	if err != nil {
		p.failed.Add(float64(sent))
		return
	}
	p.sent.Add(float64(sent))
}

// heartbeat notes the raft messages that time a peer's round trip: a
// heartbeat going out, its response coming in.
func (m *metrics) heartbeat(msg *pb.Message, outgoing bool) {
	switch {
	case outgoing && msg.GetType() == pb.MsgHeartbeat:
		if p := m.peer(msg.GetTo()); p != nil {
			p.heartbeatSent.CompareAndSwap(0, time.Now().UnixNano())
		}
	case !outgoing && msg.GetType() == pb.MsgHeartbeatResp:
		if p := m.peer(msg.GetFrom()); p != nil {
			if sent := p.heartbeatSent.Swap(0); sent != 0 {
				p.rtt.Observe(time.Duration(time.Now().UnixNano() - sent).Seconds())
			}
		}
	}
}

// snapshot records one snapshot sent, received or installed.
func (m *metrics) snapshot(op string, start time.Time, err error) {
	if err != nil {
		m.snapshots.WithLabelValues(op, "failed").Inc()
		return
	}
	m.snapshots.WithLabelValues(op, "ok").Inc()
	m.snapshotSeconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

// watchOpened counts an open watch stream; the returned func closes it.
func (m *metrics) watchOpened() func() {
	m.watchStreams.Inc()
	return m.watchStreams.Dec
}

// closeStore closes the database once no scrape is reading it.
func (m *metrics) closeStore(close func() error) error {
	m.storeMu.Lock()
	defer m.storeMu.Unlock()
	m.storeClosed = true
	return close()
}

// withStore runs f unless the database is closed.
func (m *metrics) withStore(f func()) {
	m.storeMu.RLock()
	defer m.storeMu.RUnlock()
	if !m.storeClosed {
		f()
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// promFactory registers what it makes on one registry.
type promFactory struct{ reg *prometheus.Registry }

func (f promFactory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f promFactory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f promFactory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f promFactory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f promFactory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f promFactory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

// Metrics reports how many synced writes the member made and how many log
// entries they carried.
func (n *Node) Metrics() (syncs, entries uint64) {
	return n.metrics.syncs.Load(), n.metrics.entries.Load()
}

func (w *waitRegistry) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.m)
}

// statusCollector exports the member's Status as gauges read from one
// Status per scrape, so that a scrape shows one moment: read gauge by
// gauge, a scrape straddling an apply showed the applied index past the
// commit index.
type statusCollector struct {
	status func() Status
	gauges []statusGauge
}

type statusGauge struct {
	desc  *prometheus.Desc
	value func(Status) float64
}

func newStatusCollector(status func() Status) *statusCollector {
	g := func(name, help string, v func(Status) float64) statusGauge {
		return statusGauge{prometheus.NewDesc(name, help, nil, nil), v}
	}
	return &statusCollector{status: status, gauges: []statusGauge{
		g("cxkv_has_leader", "1 if this member knows a leader, else 0.", func(s Status) float64 { return b2f(s.Leader != 0) }),
		g("cxkv_is_leader", "1 if this member is the leader, else 0.", func(s Status) float64 { return b2f(s.Role == "leader") }),
		g("cxkv_term", "Raft term.", func(s Status) float64 { return float64(s.Term) }),
		g("cxkv_commit_index", "Highest log index known committed.", func(s Status) float64 { return float64(s.Commit) }),
		g("cxkv_applied_index", "Highest log index applied to the state.", func(s Status) float64 { return float64(s.Applied) }),
		g("cxkv_log_first_index", "Oldest index still in the log (earlier entries compacted into a snapshot).", func(s Status) float64 { return float64(s.FirstIndex) }),
		g("cxkv_log_last_index", "Newest index in the log.", func(s Status) float64 { return float64(s.LastIndex) }),
	}}
}

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, g := range c.gauges {
		ch <- g.desc
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.status()
	for _, g := range c.gauges {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, g.value(s))
	}
}
