package raftnode

import (
	"context"
	"encoding/binary"

	"go.etcd.io/raft/v3"
)

// Linearizable reads. Every read waiting when a round starts shares one
// ReadIndex request: one heartbeat round confirms leadership for all of them,
// then each waits until this member has applied the returned index and reads
// its own store. Followers forward the request to the leader (raft does), so
// any member serves linearizable reads.

type readRequest struct {
	done chan uint64 // receives the read index
}

type readBatcher struct {
	pending  []*readRequest
	inflight []*readRequest
	ctx      uint64
	sentAt   uint64 // Node.ticks when the in-flight round was sent
	sentTo   uint64 // the leader this member knew when it sent the round
}

// pump starts a round if none is in flight, or restarts one that can no
// longer be answered. ready says whether a round may start now (see
// readsMayStart).
//
// A round goes to the leader this member knows (itself, or forwarded by
// raft); a member that knows no leader holds its reads, since raft would
// drop the request. When the leader it knew is replaced, the round in flight
// went to a member that will never answer it (a dead leader) or whose answer
// no longer proves anything, so it is sent again to the new one at once:
// reads then resume with writes, the moment a leader exists. The tick limit
// is the backstop for a request lost on its way to a leader that lives on.
func (r *readBatcher) pump(rn *raft.RawNode, now uint64, retryTicks int, ready func() bool) {
	lead := rn.BasicStatus().Lead
	if len(r.inflight) > 0 && (lead != r.sentTo || now-r.sentAt > uint64(retryTicks)) {
		r.pending = append(r.inflight, r.pending...)
		r.inflight = nil
	}
	if len(r.inflight) > 0 || len(r.pending) == 0 || lead == raft.None || !ready() {
		return
	}
	r.ctx++
	r.inflight, r.pending = r.pending, nil
	r.sentAt, r.sentTo = now, lead
	rn.ReadIndex(binary.BigEndian.AppendUint64(nil, r.ctx))
}

func (r *readBatcher) answer(states []raft.ReadState) {
	for _, rs := range states {
		if len(rs.RequestCtx) != 8 || binary.BigEndian.Uint64(rs.RequestCtx) != r.ctx {
			continue
		}
		for _, req := range r.inflight {
			req.done <- rs.Index
		}
		r.inflight = nil
	}
}

// readsMayStart holds reads back on a leader until it has committed an entry
// of its own term. raft does that itself for a leader with peers, but answers
// a lone voter's ReadIndex at once with its commit index, and after a crash
// that index may be below writes already acknowledged (a commit index moves
// in Readies written without a sync). Once an entry of the current term is
// committed, so is everything the member acknowledged before.
//
// Once true in a term it stays true (readsTerm): a leader's commit index
// only grows. That spares the lookup on every turn, and the refusal while
// two followers have committed entries the leader's own write has not
// finished (the durable log has no term for that index yet); a read then
// still waits for that write, to apply up to its read index.
func (n *Node) readsMayStart() bool {
	st := n.rn.BasicStatus()
	if st.RaftState != raft.StateLeader {
		return true // followers forward to the leader, which waits itself
	}
	if n.readsTerm == st.GetTerm() {
		return true
	}
	term, err := n.log.Term(st.GetCommit())
	if err != nil || term != st.GetTerm() {
		return false
	}
	n.readsTerm = term
	return true
}

// readIndex returns once this member's state reflects every write
// acknowledged before the call.
func (n *Node) readIndex(ctx context.Context) error {
	req := &readRequest{done: make(chan uint64, 1)}
	select {
	case n.readc <- req:
	case <-ctx.Done():
		return contextError(ctx.Err(), false)
	case <-n.stopc:
		return errStopping
	}
	select {
	case index := <-req.done:
		return n.applied.wait(ctx, index, n.stopc)
	case <-ctx.Done():
		return contextError(ctx.Err(), false)
	case <-n.stopc:
		return errStopping
	}
}
