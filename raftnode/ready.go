package raftnode

import (
	"bytes"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/internal/invariants"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// run is the Ready loop: the only goroutine that touches the RawNode. Each
// turn it takes in everything that is waiting (ticks, peer messages, every
// queued proposal and read), then handles one Ready. Draining the queues
// before asking for a Ready is what batches concurrent requests into one
// fsync and one apply batch.
func (n *Node) run() {
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	var term uint64
	leader := false
	for {
		select {
		case <-n.stopc:
			return
		case <-ticker.C:
			n.rn.Tick()
			n.reads.ticks++
		case m := <-n.recvc:
			n.rn.Step(m)
		case p := <-n.propc:
			n.proposeNow(p)
		case r := <-n.readc:
			n.reads.pending = append(n.reads.pending, r)
		case f := <-n.reportc:
			f(n.rn)
		}
		n.drain()
		n.reads.pump(n.rn, 2*n.cfg.ElectionTicks)
		if !n.rn.HasReady() {
			continue
		}
		rd := n.rn.Ready()
		if err := n.handleReady(rd, &leader); err != nil {
			n.cfg.Logger.Error("member halted: storage failed; the process must restart", "err", err)
			n.waits.failAll(errStopped)
			<-n.stopc
			return
		}
		if hs := rd.HardState; hs != nil && hs.GetTerm() > term {
			term = hs.GetTerm()
			n.waits.failBefore(term)
		}
		n.rn.Advance(rd)
		n.publishStatus()
	}
}

// drain takes in everything already queued without blocking.
func (n *Node) drain() {
	for i := 0; i < 4096; i++ {
		select {
		case m := <-n.recvc:
			n.rn.Step(m)
		case p := <-n.propc:
			n.proposeNow(p)
		case r := <-n.readc:
			n.reads.pending = append(n.reads.pending, r)
		case f := <-n.reportc:
			f(n.rn)
		default:
			return
		}
	}
}

func (n *Node) proposeNow(p *proposal) {
	p.term = n.rn.BasicStatus().GetTerm()
	if err := n.rn.Propose(p.data); err != nil {
		n.waits.trigger(p.id, proposalResult{err: cmpxchg.Errorf(unavailable, "no leader to take the write (%v); it was not applied", err)})
	}
}

func (n *Node) handleReady(rd raft.Ready, leader *bool) error {
	if rd.SoftState != nil {
		*leader = rd.SoftState.RaftState == raft.StateLeader
	}
	if rd.Snapshot != nil && !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.restoreSnapshot(rd.Snapshot); err != nil {
			return err
		}
	}
	// A leader sends before its own fsync, so the followers' fsyncs overlap
	// its own (Raft thesis 10.2.1; etcd does the same): the leader counts
	// itself in a quorum only after Advance, i.e. after this Ready is on its
	// disk, so nothing commits on the strength of an unwritten leader log.
	// A follower's messages go out only after the fsync: its
	// acknowledgements must describe what is on its disk.
	if *leader {
		n.transport.send(rd.Messages)
	}
	// Persist entries and HardState in one batch: one fsync for every
	// proposal this Ready carries.
	b := n.store.DB().NewBatch()
	if err := n.log.append(b, rd.Entries); err != nil {
		b.Close()
		return err
	}
	if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
		if err := n.log.setHardState(b, rd.HardState); err != nil {
			b.Close()
			return err
		}
	}
	if !b.Empty() {
		opt := pebble.NoSync
		if rd.MustSync {
			opt = pebble.Sync
		}
		if err := b.Commit(opt); err != nil {
			b.Close()
			return fmt.Errorf("persist ready: %w", err)
		}
		n.metrics.persisted(len(rd.Entries), rd.MustSync)
	}
	b.Close()
	n.log.persisted(rd.Entries, rd.HardState)
	if !*leader {
		n.transport.send(rd.Messages)
	}
	if err := n.apply(rd.CommittedEntries, *leader); err != nil {
		return err
	}
	n.reads.answer(rd.ReadStates)
	if rd.SoftState != nil {
		n.expiry.leadershipChanged(*leader)
	}
	return n.maybeSnapshot()
}

// apply runs committed entries through the state machine in one unsynced
// batch, then answers the proposals they carried.
func (n *Node) apply(ents []*pb.Entry, leader bool) error {
	if len(ents) == 0 {
		return nil
	}
	prev := n.applied.get()
	b := n.store.NewBatch()
	defer b.Close()
	type answer struct {
		id uint64
		r  proposalResult
	}
	var answers []answer
	var last uint64
	for _, e := range ents {
		idx := e.GetIndex()
		if idx <= prev {
			continue // already in the state (replayed after a snapshot)
		}
		if invariants.Enabled && last != 0 && idx != last+1 {
			panic(fmt.Sprintf("raftnode: committed entries skip from %d to %d", last, idx))
		}
		last = idx
		switch e.GetType() {
		case pb.EntryNormal:
			if len(e.GetData()) == 0 { // a new leader's empty entry
				if err := b.SetApplied(idx); err != nil {
					return err
				}
				continue
			}
			cmd, err := cmpxchg.DecodeCommand(e.GetData())
			if err != nil {
				n.cfg.Logger.Error("skipping undecodable log entry", "index", idx, "err", err)
				if err := b.SetApplied(idx); err != nil {
					return err
				}
				continue
			}
			res, err := n.sm.Apply(b, idx, cmd)
			if err != nil {
				return fmt.Errorf("apply entry %d: %w", idx, err)
			}
			answers = append(answers, answer{cmd.GetProposalId(), proposalResult{res: res, index: idx}})
			if leader {
				n.expiry.applied(cmd, res)
			}
		case pb.EntryConfChange, pb.EntryConfChangeV2:
			if err := n.applyConfChange(b, e); err != nil {
				return err
			}
		}
	}
	if last == 0 {
		return nil
	}
	if err := b.Commit(false); err != nil {
		return fmt.Errorf("commit applied state: %w", err)
	}
	n.feed.append(b.Events())
	n.applied.set(last)
	for _, a := range answers {
		n.waits.trigger(a.id, a.r)
	}
	return nil
}

func (n *Node) applyConfChange(b interface {
	SetConfState([]byte) error
	SetApplied(uint64) error
}, e *pb.Entry) error {
	var cc pb.ConfChangeI
	if e.GetType() == pb.EntryConfChange {
		c := &pb.ConfChange{}
		if err := proto.Unmarshal(e.GetData(), c); err != nil {
			return err
		}
		cc = c
	} else {
		c := &pb.ConfChangeV2{}
		if err := proto.Unmarshal(e.GetData(), c); err != nil {
			return err
		}
		cc = c
	}
	cs := n.rn.ApplyConfChange(cc)
	data, err := proto.Marshal(cs)
	if err != nil {
		return err
	}
	n.log.setConfState(cs)
	if err := b.SetConfState(data); err != nil {
		return err
	}
	return b.SetApplied(e.GetIndex())
}

func (n *Node) publishStatus() {
	st := n.rn.BasicStatus()
	first, _ := n.log.FirstIndex()
	last, _ := n.log.LastIndex()
	n.status.Store(&Status{
		ID: n.cfg.ID, Leader: st.Lead, Term: st.GetTerm(), Role: roleName(st.RaftState),
		Commit: st.GetCommit(), Applied: n.applied.get(), FirstIndex: first, LastIndex: last,
	})
}

func roleName(s raft.StateType) string {
	switch s {
	case raft.StateLeader:
		return "leader"
	case raft.StateCandidate:
		return "candidate"
	case raft.StatePreCandidate:
		return "pre-candidate"
	}
	return "follower"
}

// restoreSnapshot replaces the state and the log with a snapshot received
// from the leader; its Data carries the state stream.
func (n *Node) restoreSnapshot(s *pb.Snapshot) error {
	meta := s.GetMetadata()
	if err := n.store.RestoreState(bytes.NewReader(s.GetData())); err != nil {
		return fmt.Errorf("restore snapshot at %d: %w", meta.GetIndex(), err)
	}
	b := n.store.DB().NewBatch()
	defer b.Close()
	if err := n.log.reset(b, meta.GetIndex(), meta.GetTerm()); err != nil {
		return err
	}
	if err := n.log.setSnapshot(b, proto.Clone(meta).(*pb.SnapshotMetadata)); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	n.log.wasReset(meta.GetIndex(), meta.GetTerm())
	n.log.setConfState(meta.GetConfState())
	n.feed.reset(meta.GetIndex())
	n.applied.set(meta.GetIndex())
	n.cfg.Logger.Info("restored snapshot", "index", meta.GetIndex(), "term", meta.GetTerm())
	return n.snaps.take(n)
}

var _ = cxkvpb.Command{}
