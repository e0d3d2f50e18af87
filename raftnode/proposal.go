package raftnode

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
)

// A proposal is a command on its way through the log. Its id (proposalIDs)
// travels in the command so the member that proposed it can find its waiter
// when the entry is applied — on this member, since every member applies
// every entry.
type proposal struct {
	id   uint64
	data []byte
	term uint64 // set by the Ready goroutine when it hands the data to raft
	done chan proposalResult

	start  time.Time    // when the member received the write, for its latency
	stamps *writeStamps // its stages, when writes are traced (writetrace.go)
}

type proposalResult struct {
	res   *cxkvpb.CommandResult
	index uint64
	err   error
}

var errStopped = fmt.Errorf("%w; the write may or may not have been applied", errStopping)

// waitRegistry maps proposal ids to their waiters.
type waitRegistry struct {
	mu sync.Mutex
	m  map[uint64]*proposal

	obs *metrics // told how each write ended
}

func (w *waitRegistry) init(obs *metrics) { w.m = map[uint64]*proposal{}; w.obs = obs }

func (w *waitRegistry) add(p *proposal) {
	w.mu.Lock()
	w.m[p.id] = p
	w.mu.Unlock()
}

func (w *waitRegistry) get(id uint64) *proposal {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.m[id]
}

func (w *waitRegistry) remove(id uint64) {
	w.mu.Lock()
	if p := w.m[id]; p != nil {
		w.obs.proposalDone(p, proposalResult{err: errStopped})
	}
	delete(w.m, id)
	w.mu.Unlock()
}

func (w *waitRegistry) trigger(id uint64, r proposalResult) {
	w.mu.Lock()
	p := w.m[id]
	delete(w.m, id)
	w.mu.Unlock()
	if p != nil {
		w.obs.proposalDone(p, r)
		p.done <- r
	}
}

// failBefore fails every proposal handed to raft in a term before term: a
// new leader may have overwritten it, or may still commit it, so its outcome
// is unknown. Clients retry with the same write id; the state machine
// answers a retry of an applied write with its original result.
func (w *waitRegistry) failBefore(term uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, p := range w.m {
		if p.term != 0 && p.term < term {
			delete(w.m, id)
			r := proposalResult{err: fmt.Errorf("%w; it may or may not have been applied", errLeaderChanged)}
			w.obs.proposalDone(p, r)
			p.done <- r
		}
	}
}

func (w *waitRegistry) failAll(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, p := range w.m {
		delete(w.m, id)
		w.obs.proposalDone(p, proposalResult{err: err})
		p.done <- proposalResult{err: err}
	}
}

// propose puts cmd through the log and returns what Apply made of it.
func (n *Node) propose(ctx context.Context, cmd *cxkvpb.Command) (*cxkvpb.CommandResult, uint64, error) {
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	id, err := n.ids.id()
	if err != nil {
		return nil, 0, beforeProposing(err)
	}
	cmd.ProposalId = id
	n.stamp(cmd)
	data, err := cmpxchg.EncodeCommand(cmd)
	if err != nil {
		return nil, 0, beforeProposing(err)
	}
	if !n.proposalBytes.tryTake(len(data)) {
		return nil, 0, errBusy(n.cfg.ID, "writes in flight through it are at the limit (%d MiB)", maxProposalBytes>>20)
	}
	defer n.proposalBytes.give(len(data))
	p := &proposal{id: cmd.ProposalId, data: data, done: make(chan proposalResult, 1), start: time.Now()}
	if n.tracer != nil {
		p.stamps = new(writeStamps)
	}
	n.waits.add(p)
	select {
	case n.propc <- p:
	case <-ctx.Done():
		n.waits.remove(p.id)
		return nil, 0, beforeProposing(contextError(ctx.Err(), false))
	case <-n.stopc:
		n.waits.remove(p.id)
		return nil, 0, beforeProposing(fmt.Errorf("%w; the write was not proposed", errStopping))
	}
	select {
	case r := <-p.done:
		if r.err != nil {
			return nil, 0, r.err
		}
		if p.stamps != nil {
			n.tracer.observe(p.start, p.stamps)
		}
		if err := cmpxchg.ResultError(r.res); err != nil {
			return nil, 0, err
		}
		return r.res, r.index, nil
	case <-ctx.Done():
		n.waits.remove(p.id)
		return nil, 0, contextError(ctx.Err(), true)
	case <-n.stopc:
		n.waits.remove(p.id)
		return nil, 0, errStopped
	}
}

// proposeAsync hands cmd to raft without waiting (the leader's expiries).
func (n *Node) proposeAsync(cmd *cxkvpb.Command) {
	id, err := n.ids.id()
	if err != nil {
		n.cfg.Logger.Error("cannot propose an expiry", "err", err)
		return
	}
	cmd.ProposalId = id
	n.stamp(cmd)
	data, err := cmpxchg.EncodeCommand(cmd)
	if err != nil {
		return
	}
	select {
	case n.propc <- &proposal{id: cmd.ProposalId, data: data, done: make(chan proposalResult, 1)}:
	default: // the loop is saturated; the expiry queue retries
	}
}

// stamp sets the command's times: the cluster time that ages sessions (see
// clock.go) and the wall clock that expires_at is read by.
func (n *Node) stamp(cmd *cxkvpb.Command) {
	t := n.clock.stamp()
	cmd.ClusterMs = &t
	cmd.StampUnixMs = n.cfg.WallClock().UnixMilli()
}
