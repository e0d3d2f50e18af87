package raftnode

import (
	"container/heap"
	"sync"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/kv"
)

// The expiry queue: TTLs are enforced by the leader's monotonic clock, never
// by clients' clocks and never by wall-clock agreement between members.
//
//   - When the leader applies a write with a TTL, the key is due at
//     now + ttl. "now" is the apply time, after the client sent the request,
//     so the cluster never expires a key before the holder's own lease
//     (counted from before it sent) runs out.
//   - When due, the leader proposes Expire{key, index}: the state machine
//     deletes the key only if it still has that index, so a renewal that
//     won the race is never deleted.
//   - A member that becomes leader queues every TTL key with its full TTL
//     from that moment: after a failover expiry can come late, never early.
//   - A member that stops leading drops its queue.
// Apply stays pure: the queue only watches what Apply did.

type expiryItem struct {
	key   string
	index uint64
	due   time.Time // monotonic
}

type expiryHeap []*expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(*expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

type expiryQueue struct {
	n      *Node
	mu     sync.Mutex
	leader bool
	items  expiryHeap
	latest map[string]uint64 // key -> index of its newest TTL write
	wake   doorbell
	now    func() time.Time
}

// retryAfter is how long a proposed expiry waits before it is proposed again
// (the proposal may have been dropped).
const retryAfter = time.Second

func newExpiryQueue(n *Node) *expiryQueue {
	return &expiryQueue{n: n, latest: map[string]uint64{}, wake: newDoorbell(), now: n.cfg.Clock.Now}
}

func (q *expiryQueue) schedule(key string, index uint64, ttl time.Duration) {
	q.latest[key] = index
	heap.Push(&q.items, &expiryItem{key: key, index: index, due: q.now().Add(ttl)})
	q.wake.ring()
}

// applied is called by the Ready goroutine, on the leader, for every command
// it applied, with the result.
func (q *expiryQueue) applied(cmd *cxkvpb.Command, res *cxkvpb.CommandResult) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.leader {
		return
	}
	note := func(r *cxkvpb.Record) {
		if r.GetTtlMs() > 0 {
			q.schedule(r.GetKey(), r.GetIndex(), time.Duration(r.GetTtlMs())*time.Millisecond)
		}
	}
	if p := res.GetPut(); p != nil && p.GetSuccessful() {
		note(p.GetRecord())
	}
	if t := res.GetTxn(); t != nil && t.GetSuccessful() {
		for i, op := range cmd.GetTxn().GetOps() {
			if op.GetType() == cxkvpb.TxnOp_PUT && i < len(t.GetResults()) {
				note(t.GetResults()[i].GetRecord())
			}
		}
	}
}

// leadershipChanged rebuilds or drops the queue.
func (q *expiryQueue) leadershipChanged(leader bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if leader == q.leader {
		return
	}
	q.leader = leader
	q.items = nil
	q.latest = map[string]uint64{}
	if !leader {
		return
	}
	err := q.n.store.TTLRecords(func(r kv.Record) error {
		q.schedule(r.Key, r.Index, time.Duration(r.TTLMillis)*time.Millisecond)
		return nil
	})
	if err != nil {
		q.n.cfg.Logger.Error("rebuilding the expiry queue failed", "err", err)
	}
}

// due pops the items whose time has come and says how long until the next.
func (q *expiryQueue) due() ([]*expiryItem, time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.now()
	var out []*expiryItem
	for len(q.items) > 0 && !q.items[0].due.After(now) {
		it := heap.Pop(&q.items).(*expiryItem)
		if q.latest[it.key] != it.index {
			continue // renewed since: a newer item stands for it
		}
		out = append(out, it)
		// Propose again later unless the expiry (or anything else) removes
		// or renews the key; Expire is a no-op on a changed index.
		heap.Push(&q.items, &expiryItem{key: it.key, index: it.index, due: now.Add(retryAfter)})
	}
	wait := time.Hour
	if len(q.items) > 0 {
		wait = q.items[0].due.Sub(now)
	}
	return out, wait
}

func (q *expiryQueue) run(stop <-chan struct{}) {
	timer := q.n.cfg.Clock.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		items, wait := q.due()
		for _, it := range items {
			if rec, found, err := q.n.store.Get(it.key); err == nil && (!found || rec.Index != it.index) {
				q.forget(it)
				continue
			}
			q.n.proposeAsync(&cxkvpb.Command{Op: &cxkvpb.Command_Expire{Expire: &cxkvpb.ExpireCommand{Key: it.key, Index: it.index}}})
		}
		timer.Reset(wait)
		select {
		case <-stop:
			return
		case <-q.wake:
		case <-timer.Chan():
		}
	}
}

// forget drops a key whose record changed or vanished without a new TTL
// write; its retry item will be skipped.
func (q *expiryQueue) forget(it *expiryItem) {
	q.mu.Lock()
	if q.latest[it.key] == it.index {
		delete(q.latest, it.key)
	}
	q.mu.Unlock()
}
