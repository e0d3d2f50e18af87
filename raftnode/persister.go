package raftnode

import (
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// persister writes the member's log on a goroutine of its own (raft's
// AsyncStorageWrites), so the Ready loop goes on while a sync runs: it
// steps the acknowledgements and reads that arrive, sends the next appends
// and answers the reads a heartbeat round confirmed, where it used to wait
// out every fsync.
//
// The loop hands it the MsgStorageAppend of each Ready, in order; it writes
// the entries and HardState in one batch (synced when raft says it must
// be), then delivers the message's responses. Raft treats nothing as
// durable until those responses come back to it, which is what keeps the
// rules of a synchronous Ready: a follower acknowledges an entry (and
// grants a vote) only once it is on its disk, a leader counts itself in an
// entry's quorum only then, and raft hands out committed entries to apply
// only once they are on this member's log.
//
// A write that fails stops the persister for good: it skips every later
// job and delivers nothing more, and the loop halts the member.
type persister struct {
	stage
	n    *Node
	jobs chan persistJob

	syncing atomic.Int32              // synced jobs handed and not yet written
	since   atomic.Pointer[time.Time] // when the write under way began (cfg.Clock, with its monotonic reading); nil between writes
}

type persistJob struct {
	rd    raft.Ready // only Entries, HardState, MustSync and Snapshot (which only the loop's inline write carries, so mergeJobs never meets one)
	resps []*pb.Message
}

func newPersister(n *Node) *persister {
	return &persister{n: n, jobs: make(chan persistJob, 64)}
}

// run writes jobs until the Ready loop closes the queue. The jobs queued
// while a sync runs are written together, in one batch and one sync, as
// the Readies of a loop that waited out each sync would have been.
func (p *persister) run() {
	for j := range p.jobs {
		taken, syncs := 1, syncCount(j)
	more:
		for {
			select {
			case next, ok := <-p.jobs:
				if !ok {
					break more
				}
				j = mergeJobs(j, next)
				taken, syncs = taken+1, syncs+syncCount(next)
			default:
				break more
			}
		}
		if p.failed() == nil {
			start := p.n.cfg.Clock.Now()
			p.since.Store(&start)
			err := p.persist(j)
			p.since.Store(nil)
			if err != nil {
				p.fail(err)
			}
		}
		if syncs > 0 {
			p.syncing.Add(-int32(syncs))
			p.n.local.poke()
		}
		for range taken {
			p.pending.Done()
		}
	}
}

// mergeJobs makes one write of two consecutive ones: b's entries replace
// a's from b's first index on (raft sends a conflicting suffix only to
// overwrite it), b's HardState replaces a's, and a's responses come first.
func mergeJobs(a, b persistJob) persistJob {
	if n := len(b.rd.Entries); n > 0 {
		first := b.rd.Entries[0].GetIndex()
		ents := a.rd.Entries
		for len(ents) > 0 && ents[len(ents)-1].GetIndex() >= first {
			ents = ents[:len(ents)-1]
		}
		a.rd.Entries = append(ents[:len(ents):len(ents)], b.rd.Entries...)
	}
	if b.rd.HardState != nil && !raft.IsEmptyHardState(b.rd.HardState) {
		a.rd.HardState = b.rd.HardState
	}
	a.rd.MustSync = a.rd.MustSync || b.rd.MustSync
	a.resps = append(a.resps[:len(a.resps):len(a.resps)], b.resps...)
	return a
}

func (p *persister) persist(j persistJob) error {
	n := p.n
	start := time.Now()
	wrote, err := persistReady(n.log, n.sm, j.rd)
	n.metrics.readyPersisted(j.rd, wrote, time.Since(start), err)
	if err != nil {
		return err
	}
	n.deliver(j.resps)
	return nil
}

// hand queues a Ready's log write; only the Ready loop calls it.
func (p *persister) hand(j persistJob) {
	p.pending.Add(1)
	p.syncing.Add(int32(syncCount(j)))
	p.jobs <- j
}

// syncs reports whether a synced write is queued or under way. The
// persister pokes the loop (localInbox.poke) after each, so a loop that
// holds something back until then learns when.
func (p *persister) syncs() bool { return p.syncing.Load() > 0 }

func syncCount(j persistJob) int {
	if j.rd.MustSync {
		return 1
	}
	return 0
}

// deliver sends the responses of a storage message once its work is done:
// those addressed to this member to its raft (stepped by the Ready loop),
// the others to their peers.
func (n *Node) deliver(resps []*pb.Message) {
	if len(resps) == 0 {
		return
	}
	var remote []*pb.Message
	for _, m := range resps {
		if m.GetTo() == n.cfg.ID {
			n.local.add(m)
		} else {
			remote = append(remote, m)
		}
	}
	n.transport.Send(remote)
}

// localInbox holds the responses of the persister and the applier for the
// Ready loop. Adding never blocks: the loop may be waiting for those very
// goroutines to finish (persister.wait, applier.wait) when they deliver.
type localInbox struct {
	mu    sync.Mutex
	msgs  []*pb.Message
	ready doorbell // rung while msgs is not empty
}

func newLocalInbox() localInbox { return localInbox{ready: newDoorbell()} }

func (q *localInbox) add(m *pb.Message) {
	q.mu.Lock()
	q.msgs = append(q.msgs, m)
	q.mu.Unlock()
	q.poke()
}

// poke wakes the loop (also with nothing to step: a write ended).
func (q *localInbox) poke() { q.ready.ring() }

// take returns every response held, in the order they were added.
func (q *localInbox) take() []*pb.Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	msgs := q.msgs
	q.msgs = nil
	return msgs
}
