package raftnode

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/jonboulle/clockwork"
)

// Config describes one member.
type Config struct {
	ID uint64
	// Addr is the client address (host:port): the KV and health services,
	// and the Raft service too unless PeerAddr gives peers a port of
	// their own.
	Addr string
	// Listener, if set, is used instead of listening on Addr (tests pass a
	// listener on port 0).
	Listener net.Listener
	// PeerAddr, if set, is the address other members reach this one's Raft
	// service at, on a gRPC server of its own (peerserver.go): its entry
	// in Peers. Empty: peers share the client server on Addr.
	PeerAddr string
	// PeerListener, if set, is used instead of listening on PeerAddr.
	PeerListener net.Listener
	// ClientTLS, if set, secures the client port (tls.go); PeerTLS the peer
	// port, both ways: the member requires its peers' certificates and
	// presents its own when it dials them. Either needs a peer port of its
	// own, so each port has one TLS configuration.
	ClientTLS, PeerTLS *TLSFiles
	DataDir            string
	// Peers is the initial membership, this member included: member id to
	// peer address (PeerAddr, or Addr when peers share the client port).
	// Only a member that bootstraps a new cluster (empty data dir, no Join)
	// reads it; afterwards the members and their addresses come from the
	// replicated configuration stored in the data dir.
	Peers map[uint64]string
	// ClusterToken tells apart clusters bootstrapped with the same member
	// ids: the cluster id is ClusterID(ClusterToken, Peers).
	ClusterToken string
	// Join lists members of a running cluster for a member that starts
	// with an empty data dir and was added (member add) to that cluster:
	// it learns the cluster id and members from them instead of
	// bootstrapping. Ignored once the data dir holds state.
	Join []string
	// JoinClusterID, if set, is the cluster the member must belong to:
	// a join that reaches another cluster, or a data dir of another
	// cluster, is refused.
	JoinClusterID uint64

	TickInterval   time.Duration // default 100ms
	ElectionTicks  int           // default 10
	HeartbeatTicks int           // default 1
	// SnapshotEntries: take a snapshot (and compact the log and history
	// behind it) every this many applied entries. Default 10000.
	SnapshotEntries uint64
	// CatchUpEntries stay in the log behind a snapshot, so a member a little
	// behind catches up from the log, not a snapshot. Default 5000.
	CatchUpEntries uint64
	// HistoryEntries: Watch can resume from any of the last this many
	// applied indexes; older history is forgotten (retention.go). It does
	// not depend on the log's compaction. Default 10000.
	HistoryEntries uint64
	// RequestTimeout bounds a request whose context has no deadline.
	RequestTimeout time.Duration
	Limits         cmpxchg.Limits
	// StateMachine is the replicated state; nil means cxkv's own (cmpxchg
	// on the member's kv store, with Limits). A state machine passed here
	// keeps its state itself and outlives the member: a test restarts a
	// member on the same one.
	StateMachine StateMachine
	// FS is the filesystem every byte of the member's data goes through
	// (default: the OS's). Tests pass a crashable in-memory FS or one that
	// fails syncs.
	FS vfs.FS
	// Clock drives the member's timers and time readings (default: the
	// real clock).
	Clock Clock
	// WrapTransport, if set, wraps the member's peer transport: tests put a
	// fault-injecting transport in front of the real one. The Reporter
	// lets the wrapper report what it drops.
	WrapTransport func(Transport, Reporter) Transport
	// WallClock is the member's wall clock (default: Clock.Now). It stamps
	// expires_at for people to read and decides nothing; tests skew it.
	WallClock func() time.Time
	Logger    *slog.Logger

	// PasswordCost is the bcrypt cost of the passwords this member hashes
	// (auth changes); 0 means bcrypt.DefaultCost. A hash carries its cost,
	// so members may differ. Tests lower it: bcrypt is slow on purpose.
	PasswordCost int

	// SlowRequest: log client requests that take this long or longer at
	// WARN (method, key, time). Zero: off.
	SlowRequest time.Duration
	// TraceWrites is a benchmark mode: the leader times each write it
	// received at every stage of its path (writetrace.go) and exports
	// cxkv_write_stage_seconds. Off in production: it costs a lookup and
	// a few clock readings per write.
	TraceWrites bool
}

func (c *Config) withDefaults() error {
	if c.ID == 0 {
		return errors.New("raftnode: member id must be positive")
	}
	if c.PeerAddr == "" && c.PeerListener != nil {
		c.PeerAddr = c.PeerListener.Addr().String()
	}
	if len(c.Peers) == 0 {
		c.Peers = map[uint64]string{c.ID: c.peerAddr()}
	}
	if (c.ClientTLS != nil || c.PeerTLS != nil) && !c.separatePeers() {
		return errors.New("raftnode: TLS needs a peer port of its own (PeerAddr), so clients and peers each have their own certificates")
	}
	if c.ClientTLS != nil {
		if err := c.ClientTLS.check("client", false); err != nil {
			return err
		}
	}
	if c.PeerTLS != nil {
		if err := c.PeerTLS.check("peer", true); err != nil {
			return err
		}
	}
	if _, ok := c.Peers[c.ID]; !ok {
		return fmt.Errorf("raftnode: the cluster does not name member %d", c.ID)
	}
	if c.DataDir == "" {
		return errors.New("raftnode: a data dir is required")
	}
	if c.TickInterval == 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = 10
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = 1
	}
	if c.SnapshotEntries == 0 {
		c.SnapshotEntries = 10000
	}
	if c.CatchUpEntries == 0 {
		c.CatchUpEntries = c.SnapshotEntries / 2
	}
	if c.HistoryEntries == 0 {
		c.HistoryEntries = 10000
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.Limits == (cmpxchg.Limits{}) {
		c.Limits = cmpxchg.DefaultLimits()
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("raftnode: %w", err)
	}
	if c.FS == nil {
		c.FS = vfs.Default
	}
	if c.Clock == nil {
		c.Clock = clockwork.NewRealClock()
	}
	if c.WallClock == nil {
		c.WallClock = c.Clock.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Logger = c.Logger.With("member", c.ID)
	return nil
}

// peerAddr is where the other members reach this one.
func (c *Config) peerAddr() string {
	if c.PeerAddr != "" {
		return c.PeerAddr
	}
	return c.Addr
}

// separatePeers reports whether peers have a port of their own.
func (c *Config) separatePeers() bool { return c.PeerAddr != "" }
