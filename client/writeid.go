package client

import (
	"context"
	"sync"

	"github.com/cxkv/cxkv/api/cxkvpb"
)

// writeSeq names this client's writes (client id, seq) for the cluster's
// exactly-once table. What must hold, and why:
//
//   - acked_seq stays below every seq still in flight (it is the lowest
//     in-flight seq minus one): the cluster forgets results up to it.
//   - seq 1 of a client id goes alone, with new_client set on its first
//     attempt only: it opens the id's session, and the cluster refuses any
//     other write of an id it has no session for. The other writes wait
//     until seq 1 is settled. It is a no-op (Client.openSession), never a
//     caller's write.
//   - at most maxWritesInFlight seqs span from the lowest in flight to the
//     newest, one fewer than the results the cluster keeps per client
//     (cxkvpb.MaxResultsPerSession): a write's result is never pushed out of
//     the window by later writes while it is in flight. A writer beyond that
//     waits.
//   - when the cluster refuses a write for want of a session (the id's
//     session expired or was evicted), the id is spent: the write, certainly
//     not applied, is issued again under a fresh id (rotate).
type writeSeq struct {
	mu       sync.Mutex
	client   uint64
	next     uint64              // the last seq handed out
	lowest   uint64              // the lowest unsettled seq (next+1 if none)
	inflight map[uint64]struct{} // seqs of the current id in flight
	opening  bool                // seq 1 of the current id is in flight
	changed  chan struct{}       // closed and replaced when a waiter may go on
}

// maxWritesInFlight bounds the span of seqs in flight; see writeSeq.
const maxWritesInFlight = cxkvpb.MaxResultsPerSession - 1

func (w *writeSeq) init() {
	w.changed = make(chan struct{})
	w.rotateLocked()
}

func (w *writeSeq) rotateLocked() {
	w.client, w.next, w.lowest, w.opening = newClientID(), 0, 1, false
	w.inflight = map[uint64]struct{}{}
}

// begin names a new write, waiting while seq 1 of the id is unsettled or
// the window is full; end must follow when its outcome is settled.
func (w *writeSeq) begin(ctx context.Context) (*cxkvpb.WriteID, error) {
	w.mu.Lock()
	for {
		seq := w.next + 1
		if !w.opening && seq-w.lowest < maxWritesInFlight {
			w.next = seq
			w.inflight[seq] = struct{}{}
			w.opening = seq == 1
			id := &cxkvpb.WriteID{ClientId: w.client, Seq: seq, AckedSeq: w.lowest - 1, NewClient: seq == 1}
			w.mu.Unlock()
			return id, nil
		}
		changed := w.changed
		w.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		w.mu.Lock()
	}
}

// end settles a write: it leaves the window.
func (w *writeSeq) end(id *cxkvpb.WriteID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if id.GetClientId() != w.client {
		return // of a spent id
	}
	delete(w.inflight, id.GetSeq())
	wake := false
	if id.GetSeq() == 1 {
		w.opening, wake = false, true
	}
	for ; w.lowest <= w.next; w.lowest++ {
		if _, ok := w.inflight[w.lowest]; ok {
			break
		}
		wake = true
	}
	if wake {
		w.wakeLocked()
	}
}

// rotate spends the id of a write the cluster refused for want of a
// session: later writes (and that one, again) get a fresh id.
func (w *writeSeq) rotate(id *cxkvpb.WriteID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if id.GetClientId() == w.client {
		w.rotateLocked()
		w.wakeLocked()
	}
}

func (w *writeSeq) wakeLocked() {
	close(w.changed)
	w.changed = make(chan struct{})
}
