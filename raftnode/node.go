// Package raftnode is one cxkv member: a go.etcd.io/raft/v3 RawNode driven by
// a single Ready goroutine, its log on the member's Pebble database, the
// state machine applied in batches, a gRPC transport to its peers, and the
// client API (KV) on the same server.
package raftnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/kv"
	"go.etcd.io/raft/v3"
	"google.golang.org/grpc"
)

// Node is a running member.
type Node struct {
	cfg       Config
	clusterID uint64
	store     *kv.Store
	log       *logStore
	sm        StateMachine
	rn        *raft.RawNode // owned by the Ready goroutine

	propc chan *proposal
	recvc chan received
	// heartbeats is touched by the Ready loop only (heartbeatgate.go).
	heartbeats heartbeatGate
	// prevotes is touched by the Ready loop only (prevotehold.go).
	prevotes prevoteHold
	// notices is touched by the Ready loop only (commitnotice.go).
	notices commitNotices
	// taken: the proposals the Ready loop took this turn, proposed
	// together once the queues are drained (proposeTaken). Ready loop
	// only.
	taken struct {
		props []*proposal
		bytes int
	}
	readc chan *readRequest
	// onRaftc carries functions to run on the Ready goroutine, which owns
	// the RawNode; their senders wait for room. reports carries the
	// transport's word on its messages, which must never wait.
	onRaftc chan func(*raft.RawNode)
	reports *peerReports
	stopc   chan struct{}
	stopCut bool // Stop ran out of grace and cut the connections left
	life    lifetime
	done    sync.WaitGroup

	waits   waitRegistry
	reads   readBatcher
	applied appliedIndex
	feed    eventFeed
	status  atomic.Pointer[Status]
	snaps   snapshotHolder
	// historyFloor: the store holds no event at or below it. Ready
	// goroutine only.
	historyFloor uint64
	// steppedSnaps: staged snapshots whose MsgSnap raft was given since
	// the last Ready (snapshotstream.go). Ready goroutine only.
	steppedSnaps []string
	expiry       *expiryQueue
	clock        *clusterClock
	metrics      metrics
	health       healthService
	authz        cmpxchg.AuthCache
	tracer       *writeTracer // nil unless cfg.TraceWrites
	applier      *applier
	persister    *persister
	// local holds the persister's and the applier's responses for raft.
	local localInbox

	members       membership
	cluster       *clusterService
	bootstrapping bool // a first start: bootstrap writes the first entries

	ids           proposalIDs
	proposalBytes *byteBudget
	receivedBytes *byteBudget
	transport     Transport
	grpcPeers     *transport   // the transport under any wrapper
	server        *grpc.Server // clients' (and peers' without a port of their own)
	listener      net.Listener
	peerServer    *grpc.Server // nil when peers share the client server
	peerListener  net.Listener
	peerGuard     peerGuard
	unary         grpc.UnaryServerInterceptor  // every client call's interceptors (n.interceptors)
	streamedUnary grpc.UnaryServerInterceptor  // the same for the calls of a Calls stream
	stream        grpc.StreamServerInterceptor // every stream's
	contact       peerContact
	// quorumContact is when, by cfg.Clock (UnixNano), this member, leading,
	// last had a quorum's contact; 0 when it does not lead. Published by
	// the Ready loop at each tick (publishContact).
	quorumContact atomic.Int64
	ticks         uint64 // the Ready loop's ticks since start
	// raftLast is raft's last log index as of the last Ready that moved
	// it; the durable one trails it while the persister writes. Ready
	// goroutine only.
	raftLast uint64
	// readsTerm is the term in which this member, leading, saw an entry
	// of its own term committed (readsMayStart). Ready goroutine only.
	readsTerm uint64
	tls       memberTLS
	stopOnce  sync.Once
}

// Status is a member's view of the cluster.
type Status struct {
	ID, Leader, Term      uint64
	Role                  string
	Commit, Applied       uint64
	FirstIndex, LastIndex uint64
	// Transferee is the voter a leader is handing its leadership to, 0
	// when no transfer is under way; raft gives up a transfer that has
	// not completed within an election timeout.
	Transferee uint64
}

// Start opens the member's data dir, joins or bootstraps the cluster, and
// serves clients on cfg.Addr and peers on cfg.PeerAddr (or cfg.Addr).
func Start(cfg Config) (*Node, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:     cfg,
		propc:   make(chan *proposal, 4096),
		recvc:   make(chan received, 4096),
		readc:   make(chan *readRequest, 4096),
		onRaftc: make(chan func(*raft.RawNode), 256),
		reports: newPeerReports(),
		stopc:   make(chan struct{}),
		local:   newLocalInbox(),

		proposalBytes: newByteBudget(maxProposalBytes),
		receivedBytes: newByteBudget(maxReceivedBytes),
	}
	n.waits.init(&n.metrics)
	n.life.init()
	n.applied.init()
	store, err := kv.Open(cfg.DataDir, kv.Options{FS: cfg.FS, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	n.store = store
	n.sm = cfg.StateMachine
	if n.sm == nil {
		n.sm = newKVMachine(store, cfg.Limits)
	}
	// Cluster time runs on the member's Clock, so a test that jumps the
	// clock moves the stamps too.
	started := cfg.Clock.Now()
	n.clock = newClusterClock(func() time.Duration { return cfg.Clock.Since(started) })
	if err := n.open(); err != nil {
		store.Close()
		return nil, err
	}
	// After open: the cluster id and the peers come from the data dir.
	n.metrics.init(n)
	n.interceptors()
	if cfg.TraceWrites {
		n.tracer = newWriteTracer(n.metrics.reg)
	}
	if err := n.observeStored(); err != nil {
		store.Close()
		return nil, err
	}
	lis := cfg.Listener
	if lis == nil {
		if lis, err = net.Listen("tcp", cfg.Addr); err != nil {
			store.Close()
			return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
		}
	}
	n.listener = lis
	if err := n.prepareServers(); err != nil {
		store.Close()
		return nil, err
	}
	n.transport = newPeerTransport(n)
	n.expiry = newExpiryQueue(n)
	n.cluster = &clusterService{n: n}
	n.server = n.newClientServer()
	cxkvrpc.RegisterKVServer(n.server, &kvService{n: n})
	n.servePeers()
	cxkvrpc.RegisterClusterServer(n.server, n.cluster)
	n.registerOperations()
	n.applier = newApplier(n)
	n.persister = newPersister(n)
	n.done.Add(1)
	go func() { defer n.done.Done(); n.server.Serve(lis) }()
	if n.bootstrapping {
		if err := n.bootstrap(); err != nil {
			n.Stop()
			return nil, err
		}
	}
	n.done.Add(5)
	go func() { defer n.done.Done(); n.applier.run() }()
	go func() { defer n.done.Done(); n.persister.run() }()
	go func() { defer n.done.Done(); n.run() }()
	go func() { defer n.done.Done(); n.expiry.run(n.stopc) }()
	go func() { defer n.done.Done(); n.announce() }()
	cfg.Logger.Info("member started", "addr", lis.Addr().String(), "peer_addr", n.PeerAddr(), "cluster", fmt.Sprintf("%x", n.clusterID), "applied", n.applied.get())
	return n, nil
}

// open restores the log and state and creates the RawNode.
func (n *Node) open() error {
	n.ids = proposalIDs{member: n.cfg.ID, reserve: n.store.ReserveProposalIDs}
	var applied uint64
	var err error
	if n.log, applied, err = openStorage(n.store, n.sm); err != nil {
		return err
	}
	last, err := n.log.LastIndex()
	if err != nil {
		return err
	}
	if err := n.identity(applied == 0 && last == 0); err != nil {
		return err
	}
	n.feed.tickEntries = max(1, min(progressEntries, n.cfg.HistoryEntries/4))
	n.feed.reset(applied)
	n.applied.set(applied)
	if err := n.resetHistoryFloor(); err != nil {
		return err
	}
	rc := &raft.Config{
		ID:              n.cfg.ID,
		ElectionTick:    n.cfg.ElectionTicks,
		HeartbeatTick:   n.cfg.HeartbeatTicks,
		Storage:         n.log,
		Applied:         applied,
		MaxSizePerMsg:   maxSizePerMsg,
		MaxInflightMsgs: 256,
		// Bytes, not only messages: 256 appends of 1 MiB entries are
		// 256 MiB queued for one slow follower.
		MaxInflightBytes: maxInflightBytes,
		// The leader's uncommitted tail, in bytes (budget.go).
		MaxUncommittedEntriesSize: maxUncommittedBytes,
		CheckQuorum:               true,
		PreVote:                   true,
		// Every read confirms the leadership with a heartbeat round
		// (ReadIndex). A leader lease (ReadOnlyLeaseBased) must not
		// replace it: it assumes followers wait out an election timeout
		// after the last heartbeat, and a follower that sees its leader's
		// process gone does not (deadleader.go).
		ReadOnlyOption: raft.ReadOnlySafe,
		// The log is written on the persister's goroutine (persister.go).
		AsyncStorageWrites: true,
		Logger:             raftLogger{n.cfg.Logger},
	}
	if n.rn, err = raft.NewRawNode(rc); err != nil {
		return err
	}
	return n.snaps.init(n)
}

// Addr is the address the member serves clients on.
func (n *Node) Addr() string { return n.listener.Addr().String() }

// Status returns the member's latest view of the cluster.
func (n *Node) Status() Status {
	if err := n.Err(); err != nil {
		if errors.Is(err, errRemoved) {
			return Status{ID: n.cfg.ID, Role: "removed"}
		}
		return Status{ID: n.cfg.ID, Role: "halted"}
	}
	if s := n.status.Load(); s != nil {
		return *s
	}
	return Status{ID: n.cfg.ID, Role: "follower"}
}

// stopFlushGrace bounds how long Stop waits for its streams to end by
// themselves before it cuts every connection. Every stream the member
// serves ends when it stops (a watch with its Unavailable naming the
// leader, a Calls stream once it answered the calls it took, an incoming
// peer stream at once, unary calls with their refusal), so a Stop pays no
// part of it; it is there for a client that does not read its answers
// (its flow-control window full, a send blocks). It is generous because
// what it cuts is lost: answers a loaded machine was slow to write reach
// their clients as broken streams, outcome unknown.
var stopFlushGrace = 2 * time.Second

// Stop shuts the member down: no new requests, the Ready loop and transport
// stopped, the database closed. It leaves no goroutine behind.
func (n *Node) Stop() error {
	var err error
	n.stopOnce.Do(func() {
		close(n.stopc)
		n.life.cancel(errStoppedCause)
		stopped := make(chan struct{})
		go func() { n.server.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(stopFlushGrace):
			n.stopCut = true
			n.server.Stop()
			<-stopped
		}
		n.stopPeers()
		n.transport.Stop()
		n.done.Wait()
		n.waits.failAll(errStopped)
		n.snaps.close()
		err = n.metrics.closeStore(n.store.Close)
	})
	return err
}

// requestContext applies the default timeout to a context without one. A
// context that has a deadline comes back as it is, with a cancel that does
// nothing: its callers only wait on it, and a context of their own would
// register with its parent for nothing (2% of a leader's CPU at
// cas-parallel). So a caller must not hand it to work that outlives the
// call, counting on the cancel to end it.
func (n *Node) requestContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, noCancel
	}
	return context.WithTimeout(ctx, n.cfg.RequestTimeout)
}

func noCancel() {}
