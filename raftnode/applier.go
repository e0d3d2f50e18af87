package raftnode

import (
	pb "go.etcd.io/raft/v3/raftpb"
)

// applier applies committed entries on a goroutine of its own, so the Ready
// loop persists and sends the next batch while the state machine applies
// the last one: commit and apply pipeline instead of taking turns. The
// loop hands it the committed entries of each Ready in order; it applies
// them in that order, one batch per Ready (the rules of one Ready still
// hold for each batch: one Apply, then answers).
//
// Whatever needs the state and raft to agree runs on the loop after
// wait(), with the applier idle (see handleReady): a conf change (its
// ApplyConfChange touches the RawNode), a received snapshot (it replaces
// the state), a leadership or term change (the expiry queue rebuilds from
// the state, and waiters of an older term are failed only after the
// entries raft has handed out committed were applied; an entry committed
// by the followers' acknowledgements before this member's own write of it
// ended is handed out only later, so its waiter is failed as of unknown
// outcome and its retry answered from the exactly-once table), and a
// snapshot of our own.
type applier struct {
	stage
	n    *Node
	jobs chan applyJob
}

type applyJob struct {
	ents   []*pb.Entry
	leader bool
	resps  []*pb.Message // raft's MsgStorageApply responses, delivered once applied
}

func newApplier(n *Node) *applier {
	return &applier{n: n, jobs: make(chan applyJob, 64)}
}

// run applies jobs until the Ready loop closes the queue.
func (a *applier) run() {
	for j := range a.jobs {
		if a.failed() == nil {
			if err := a.n.apply(j.ents, j.leader); err != nil {
				a.fail(err)
			} else {
				a.n.deliver(j.resps)
			}
		}
		a.pending.Done()
	}
}

// hand queues committed entries; only the Ready loop calls it.
func (a *applier) hand(ents []*pb.Entry, leader bool, resps []*pb.Message) {
	a.pending.Add(1)
	a.jobs <- applyJob{ents, leader, resps}
}

// mustApplyInline reports whether a Ready needs the applier idle before it
// is handled (see applier).
func mustApplyInline(rdSoft bool, snapshot bool, termChanged bool, committed []*pb.Entry) bool {
	if rdSoft || snapshot || termChanged {
		return true
	}
	for _, e := range committed {
		if t := e.GetType(); t == pb.EntryConfChange || t == pb.EntryConfChangeV2 {
			return true
		}
	}
	return false
}
