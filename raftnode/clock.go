package raftnode

import (
	"sync"
	"time"
)

// The cluster clock: the time a member writes into Command.cluster_ms, by
// which the exactly-once table ages client sessions (kv.Sessions). Apply
// reads no clock; this is where the time in the command comes from.
//
// The rule. A member stamps a proposal with
//
//	base + (mono() - anchor)
//
// where mono is its monotonic clock, and (base, anchor) is re-taken as
// (T, mono()) whenever it sees a cluster time T ahead of its own reading:
// each applied command's stamp, and the time stored in its state when it
// starts or installs a snapshot. The table keeps the highest stamp it has
// applied and takes a lower one as that (kv.Sessions), so:
//
//   - no wall clock is read. A member whose wall clock is an hour ahead, or
//     jumps, stamps exactly as one whose clock is right.
//   - the cluster's time never goes back, and one member can carry it past
//     what it has seen applied only by its own monotonic time since then:
//     it runs at the pace of the fastest monotonic clock (parts per
//     million), not at the pace of the most wrong wall clock.
//   - every member stamps this way, not only the leader: a follower that
//     takes a request proposes it (raft forwards the entry as it is), and a
//     leader that just took office stamps from what it has applied. A
//     proposer that has not yet applied the latest stamps stamps behind
//     them; the table takes that as its own time, so the lag costs nothing
//     but a later expiry.
//   - while no member runs (the whole cluster down), cluster time stands
//     still: sessions live longer by the outage, never shorter. Expiry is
//     late, never early, as for TTLs.
//
// Cluster time starts at 0 with the log; it is not Unix time and is never
// shown as a date (expires_at uses the proposer's wall clock, for reading).
type clusterClock struct {
	mono   func() time.Duration
	mu     sync.Mutex
	base   int64         // cluster ms at anchor
	anchor time.Duration // mono() when base was taken
}

// newClusterClock starts at 0; mono defaults to the process's monotonic
// clock.
func newClusterClock(mono func() time.Duration) *clusterClock {
	if mono == nil {
		start := time.Now()
		mono = func() time.Duration { return time.Since(start) } // monotonic
	}
	return &clusterClock{mono: mono, anchor: mono()}
}

// stampStep is what a proposal's cluster time is rounded down to. The
// exactly-once table moves a client in its least-recently-used order (an
// index key deleted and written again) whenever the client's time changes,
// so at millisecond stamps every write of a busy client did: two of the
// seven keys a write put in the state, and the table's stored time once
// per batch. At whole seconds a busy client's key moves once a second.
// Sessions live an hour of cluster time (cmpxchg's SessionTTL), so a
// second either way is nothing; rounding down never moves the cluster's
// time ahead of any member's reading, so the rule above holds as it is.
const stampStep = 1000

// stamp is the cluster time to stamp a proposal with: now, rounded down
// to stampStep.
func (c *clusterClock) stamp() int64 {
	t := c.now()
	return t - t%stampStep
}

// now is the member's cluster time.
func (c *clusterClock) now() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.base + (c.mono() - c.anchor).Milliseconds()
}

// observe takes in a cluster time the member has applied (or stored).
func (c *clusterClock) observe(t int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m := c.mono(); t > c.base+(m-c.anchor).Milliseconds() {
		c.base, c.anchor = t, m
	}
}

// clusterTimeSource is what a state machine that keeps cluster time in its
// state offers: the latest time it applied.
type clusterTimeSource interface {
	clusterTime() (int64, error)
}

func (m *kvMachine) clusterTime() (int64, error) { return m.store.SessionClock() }

// observeStored takes in the time of the state the member holds, at start
// and after installing a snapshot.
func (n *Node) observeStored() error {
	src, ok := n.sm.(clusterTimeSource)
	if !ok {
		return nil
	}
	t, err := src.clusterTime()
	if err == nil {
		n.clock.observe(t)
	}
	return err
}
