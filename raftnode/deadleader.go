package raftnode

import (
	"errors"
	"net"
	"syscall"
	"time"

	"go.etcd.io/raft/v3"
)

// A dead leader, seen from the transport. When a leader's process dies
// (kill -9, a crash), its kernel closes its sockets at once: each
// follower's stream to it breaks, and reconnecting is refused, since
// nothing listens on its port. Silence is all raft itself has to go on, and
// it waits a whole randomised election timeout (1 to 2 s by default) after
// the last heartbeat before a follower campaigns, and as long again before
// it grants another's pre-vote (check-quorum's lease). With the transport's
// stronger signal the follower advances its own election clock to the end
// of the election timeout, ticking raft as many times on the Ready loop
// (etcd's server advances its ticks at start the same way):
//
//   - it is out of the leader's lease at once, so it grants the pre-vote of
//     the other survivor, which saw the same death;
//   - it still campaigns only after what is left of its randomised timeout
//     (0 to an election timeout of ticks), so the survivors do not all
//     campaign at once and split the vote: the first to campaign wins, in
//     about a third of an election timeout when two survive.
//
// Why it stays safe, whatever the signal says:
//
//   - raft's safety never depends on timing; only liveness does.
//   - reads are ReadIndex reads (raft's ReadOnlySafe, which node.go sets
//     explicitly): a leader confirms its leadership with a heartbeat
//     round for every read, and never serves from a lease that assumes its
//     followers wait out a timeout. Lease-based reads would not be safe
//     with this (raft's own ForgetLeader refuses to work with them too).
//   - a follower whose link to a leader that lives broke, and whose
//     reconnect was refused, campaigns early, but its pre-vote goes to
//     followers that still hear the leader, and they ignore it (their
//     lease); a pre-vote changes no term, so it disrupts nothing. The
//     leader's next heartbeat that reaches it resets its clock.
//   - a paused leader (SIGSTOP) or a partition closes no socket: no
//     signal, and the timeout decides as before. So does a leader that is
//     back before the reconnect (its port answers).
//   - expiry: a new leader gives every TTL and session its full TTL from
//     its takeover (expiry.go), which comes after every renewal the old
//     leader applied, however soon the election ends.
//
// raft's ForgetLeader is its hook for an external failure detector, but it
// only makes the member grant pre-votes; it does not bring the member's own
// campaign nearer, and the ticks end the lease as well.

// peerProbeTimeout bounds the connection attempt that tells a dead peer
// from a broken link: a refusal comes back within a round trip, and any
// other outcome (an answer, a timeout) means no signal.
const peerProbeTimeout = 100 * time.Millisecond

// checkLeaderGone runs on p's stream goroutine when the first attempt to
// reopen a stream that broke after carrying messages failed: if p is the
// leader this member follows and its address refuses a connection, the
// Ready loop is told (leaderGone). Not at the break itself: the kernel
// closes a killed process's sockets one by one, and a connection tried the
// moment its stream broke was accepted by the dying listener in about one
// kill of three in the failover benchmark, while the reconnect 20 ms later
// (the stream's first backoff) was refused every time.
func (t *transport) checkLeaderGone(p *peer) {
	if st := t.n.Status(); st.Role != "follower" || st.Leader != p.id {
		return
	}
	ctx, cancel := t.context(peerProbeTimeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", p.addr)
	if err == nil {
		conn.Close()
		return
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		t.n.reportLeaderGone(p.id)
	}
}

// reportLeaderGone hands the Ready loop the news that the process of
// member peer is gone.
func (n *Node) reportLeaderGone(peer uint64) {
	n.tryOnRaft(func(*raft.RawNode) { n.leaderGone(peer) })
}

// leaderGone advances the election clock of a follower of peer to the end
// of the election timeout; on a member in any other state (a leader, a
// candidate, a follower of another member, peer's successor already) it
// does nothing. Ready loop only.
func (n *Node) leaderGone(peer uint64) {
	st := n.rn.BasicStatus()
	if st.RaftState != raft.StateFollower || st.Lead != peer {
		return
	}
	// Raft ticks a follower's election clock only, and campaigns on the
	// tick that reaches its randomised timeout; it may be one of these
	// (what was left of the timeout was nothing), and then the member is
	// a pre-candidate whose next ticks would count towards its next
	// campaign, so the loop stops there.
	for i := 0; i < n.cfg.ElectionTicks && n.rn.BasicStatus().RaftState == raft.StateFollower; i++ {
		n.rn.Tick()
	}
	// A pre-vote raft ignored while the lease lasted is answered now.
	n.prevotes.again(n.rn, n.cfg.ElectionTicks)
	n.metrics.deadLeaders.Inc()
	n.cfg.Logger.Info("the leader's process is gone (its stream broke and its port refuses connections); election clock advanced to the timeout", "leader", peer)
}
