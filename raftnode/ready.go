package raftnode

import (
	"fmt"
	"time"

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
	ticker := n.cfg.Clock.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	n.notices.delay = commitNoticeDelay
	defer n.notices.stop()
	// The applier drains what it was handed and exits once the loop ends.
	defer close(n.applier.jobs)
	defer close(n.persister.jobs)
	var term uint64
	leader := false
	fail := func(err error) {
		n.halt(err)
		n.persister.wait()
		n.applier.wait()
		n.waits.failAll(n.haltedError())
		<-n.stopc
	}
	for {
		if !n.takeIn(ticker.Chan()) {
			return
		}
		// This goroutine is the queues' only reader, so while one holds
		// something takeIn does not block.
		for i := 0; i < 4096 && n.queued(); i++ {
			if !n.takeIn(ticker.Chan()) {
				return
			}
		}
		// A leader whose log sync is under way keeps the writes it took
		// until the sync ends (the persister wakes the loop then): they
		// go out in one append and one sync, as they did when the loop
		// itself waited out each sync, while acknowledgements, reads and
		// commits go on meanwhile.
		if !leader || !n.persister.syncs() {
			n.proposeTaken()
		}
		if err := n.storageFailed(); err != nil {
			fail(err)
			return
		}
		n.reads.pump(n.rn, n.ticks, 2*n.cfg.ElectionTicks, n.readsMayStart)
		if !n.rn.HasReady() {
			continue
		}
		rd := n.rn.Ready()
		n.prevotes.sent(rd.Messages)
		termChanged := rd.HardState != nil && rd.HardState.GetTerm() > term
		if err := n.handleReady(rd, &leader, termChanged); err != nil {
			fail(err)
			return
		}
		if termChanged {
			term = rd.HardState.GetTerm()
			n.waits.failBefore(term)
		}
		n.publishStatus()
	}
}

// takeIn waits for one input (a tick, a peer message, a proposal, a read or
// a report) and hands it to the RawNode; false means the member is stopping.
func (n *Node) takeIn(tick <-chan time.Time) bool {
	select {
	case <-n.stopc:
		return false
	case <-tick:
		n.waitOutStuckSync()
		n.rn.Tick()
		n.ticks++
		n.heartbeats.tick()
		n.prevotes.tick(n.rn, n.cfg.ElectionTicks)
		n.publishContact()
	case r := <-n.recvc:
		n.receivedBytes.give(r.size)
		n.contact.heardFrom(r.m.GetFrom(), n.ticks, n.cfg.Clock.Now())
		// Only a forwarded request needs the last index (and its lock).
		// Raft's own last index may be ahead of the durable one while
		// the persister writes; the later of the two is the mark.
		if forwardedRequest(r.m) {
			if last, err := n.log.LastIndex(); err == nil {
				n.notices.received(r.m, max(last, n.raftLast))
			}
		}
		if !stepReceived(n.rn, &n.heartbeats, r.m) {
			break
		}
		n.prevotes.received(n.rn, r.m)
		if n.tracer != nil {
			n.tracer.stepped(r.m)
		}
		n.stepped(r.m)
	case p := <-n.propc:
		n.take(p)
	case r := <-n.readc:
		n.reads.pending = append(n.reads.pending, r)
	case f := <-n.onRaftc:
		f(n.rn)
	case <-n.reports.wake:
		n.reports.take(n.rn)
	case <-n.notices.due():
		n.transport.Send(n.notices.take())
	case <-n.local.ready:
		n.stepLocal(n.local.take())
	}
	return true
}

// stepLocal hands raft the responses of the persister and the applier.
// Raft refuses one only when it no longer applies (an acknowledgement of
// a member's own entries after it was removed), so a refusal is dropped.
func (n *Node) stepLocal(msgs []*pb.Message) {
	for _, m := range msgs {
		if n.tracer != nil && m.GetType() == pb.MsgStorageAppendResp {
			n.tracer.persisted(m.GetIndex(), time.Now())
		}
		if err := n.rn.Step(m); err != nil {
			n.cfg.Logger.Debug("raft refused a storage response", "type", m.GetType().String(), "err", err)
		}
	}
}

// waitOutStuckSync stops the loop until the persister is done when its
// write has run for a quarter of an election timeout. A leader whose disk
// stalls must not go on leading: its heartbeats would keep the followers
// from electing another, while it can neither apply nor answer a write
// (raft applies only what is on its own log). Waiting stops its
// heartbeats and its contact with the quorum (publishContact), as a loop
// that waited out every sync did; a sync slower than the common one but
// shorter than this costs the loop nothing.
func (n *Node) waitOutStuckSync() {
	since := n.persister.since.Load()
	if since == nil {
		return
	}
	limit := time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval / 4
	if stuckSyncLimit > 0 {
		limit = stuckSyncLimit
	}
	if n.cfg.Clock.Now().Sub(*since) >= limit {
		n.persister.wait()
	}
}

// stuckSyncLimit replaces waitOutStuckSync's quarter of an election
// timeout when set (tests that hold a sync on purpose).
var stuckSyncLimit time.Duration

// storageFailed is the error that stopped the persister or the applier,
// or the store's failure where no write of the member's met it (a flush on
// one of Pebble's goroutines). The loop asks on every turn, and it turns
// at least once a tick, so a member halts within a tick of its store
// failing even while nothing is written.
func (n *Node) storageFailed() error {
	if err := n.persister.failed(); err != nil {
		return err
	}
	if err := n.applier.failed(); err != nil {
		return err
	}
	return n.store.Err()
}

// queued reports whether an input other than a tick is waiting.
func (n *Node) queued() bool {
	return len(n.recvc) > 0 || len(n.propc) > 0 || len(n.readc) > 0 || len(n.onRaftc) > 0 || len(n.reports.wake) > 0 || len(n.local.ready) > 0
}

// take queues p to be proposed with the other proposals of this turn
// (proposeTaken), or proposes the queue first if p would take it over one
// append's worth of bytes.
func (n *Node) take(p *proposal) {
	if n.taken.bytes > 0 && n.taken.bytes+len(p.data) > maxSizePerMsg {
		n.proposeTaken()
	}
	n.taken.props = append(n.taken.props, p)
	n.taken.bytes += len(p.data)
}

// proposeTaken hands raft every proposal taken this turn as one proposal
// message. Raft appends them together and sends each follower one append
// for them all, which the follower acknowledges once; proposed one by one,
// each went out in an append of its own (and came back in an
// acknowledgement of its own), though one sync wrote them all. Raft takes
// or drops the message whole, and every proposal of a dropped one is
// refused as not applied (the client may retry it). It drops it when no
// leader is known, when a leader is handing over its leadership or was
// removed, which would drop each proposal alike, and when the message's
// bytes would take the uncommitted tail over its limit: then some of its
// first proposals alone might still have fit, so a batch is refused up to
// one batch early, and the byte cap in take keeps that to 1 MiB (of a
// 64 MiB tail).
func (n *Node) proposeTaken() {
	props := n.taken.props
	if len(props) == 0 {
		return
	}
	term := n.rn.BasicStatus().GetTerm()
	var now time.Time
	if n.tracer != nil {
		now = time.Now()
	}
	ents := make([]*pb.Entry, len(props))
	for i, p := range props {
		p.term = term
		if p.stamps != nil {
			p.stamps[stageTaken] = now
		}
		ents[i] = &pb.Entry{Data: p.data}
	}
	err := n.rn.Step(&pb.Message{Type: pb.MsgProp.Enum(), From: new(n.cfg.ID), Entries: ents})
	if err != nil {
		err = n.droppedProposal(err)
		for _, p := range props {
			n.waits.trigger(p.id, proposalResult{err: beforeProposing(err)})
		}
	}
	clear(props)
	n.taken.props, n.taken.bytes = props[:0], 0
}

// droppedProposal is the error for writes raft dropped (err): none of them
// was applied, and the client may send them again.
func (n *Node) droppedProposal(err error) error {
	st := n.rn.BasicStatus()
	switch {
	case st.RaftState == raft.StateLeader && st.LeadTransferee != raft.None:
		// Raft takes no proposal while it hands its leadership over
		// (MoveLeader): the new leader will.
		return fmt.Errorf("%w (leadership is moving to member %d); it was not applied", errNoLeader, st.LeadTransferee)
	case st.RaftState == raft.StateLeader:
		// Otherwise a leader drops a proposal only when its uncommitted
		// tail is full.
		return errBusy(n.cfg.ID, "its uncommitted log is at the limit (%d MiB)", maxUncommittedBytes>>20)
	default:
		return fmt.Errorf("%w (%v); it was not applied", errNoLeader, err)
	}
}

func (n *Node) handleReady(rd raft.Ready, leader *bool, termChanged bool) error {
	snapshot := rd.Snapshot != nil && !raft.IsEmptySnap(rd.Snapshot)
	inline := mustApplyInline(rd.SoftState != nil, snapshot, termChanged, rd.CommittedEntries)
	if inline {
		n.persister.wait()
		n.applier.wait()
		if err := n.storageFailed(); err != nil {
			return err
		}
	}
	if rd.SoftState != nil {
		*leader = rd.SoftState.RaftState == raft.StateLeader
		if !*leader {
			n.notices.drop()
		}
		if n.tracer != nil {
			n.tracer.reset()
		}
	}
	switch {
	case len(rd.Entries) > 0:
		n.raftLast = rd.Entries[len(rd.Entries)-1].GetIndex()
	case snapshot:
		n.raftLast = rd.Snapshot.GetMetadata().GetIndex()
	}
	if n.tracer != nil && *leader {
		now := time.Now()
		n.tracer.readied(rd.Entries, &n.waits, now)
		for _, e := range rd.CommittedEntries {
			n.tracer.stamp(e.GetIndex(), stageCommitted, now)
			n.tracer.done(e.GetIndex()) // the applier stamps the rest
		}
	}
	// What raft sends peers now needs nothing of this Ready on the disk:
	// the messages that do (a follower's acknowledgement of entries, a
	// vote) are responses of the storage append, sent once it is written.
	// So a leader's appends go out before its own sync and the followers'
	// syncs overlap it (Raft thesis 10.2.1).
	// Raft let go of rd.Messages when it made the Ready (and prevotes.sent
	// has read it), so the peers' share is filtered into it in place.
	var appendMsg, applyMsg *pb.Message
	out := rd.Messages[:0]
	for _, m := range rd.Messages {
		switch m.GetTo() {
		case raft.LocalAppendThread:
			appendMsg = m
		case raft.LocalApplyThread:
			applyMsg = m
		default:
			out = append(out, m)
		}
	}
	if *leader {
		out = n.notices.filter(out, n.cfg.Clock)
	}
	n.transport.Send(out)
	if appendMsg != nil {
		job := persistJob{rd: raft.Ready{Entries: rd.Entries, HardState: rd.HardState, Snapshot: rd.Snapshot, MustSync: rd.MustSync}, resps: appendMsg.GetResponses()}
		if inline {
			// A snapshot replaces the state under the applier, and the
			// rest of an inline Ready wants the log as raft sees it.
			if err := n.persister.persist(job); err != nil {
				return err
			}
		} else {
			n.persister.hand(job)
		}
	}
	n.discardStaged(rd)
	if snapshot {
		if err := n.snapshotInstalled(rd.Snapshot.GetMetadata()); err != nil {
			return err
		}
		if err := n.observeStored(); err != nil {
			return err
		}
	}
	if applyMsg != nil {
		// Raft hands out only entries already on this member's log.
		if inline {
			if err := n.apply(applyMsg.GetEntries(), *leader); err != nil {
				return err
			}
			n.deliver(applyMsg.GetResponses())
		} else {
			n.applier.hand(applyMsg.GetEntries(), *leader, applyMsg.GetResponses())
		}
	}
	// A read waits for its index to be applied (readIndex), so it may be
	// answered before the applier catches up.
	n.reads.answer(rd.ReadStates)
	if rd.SoftState != nil {
		n.expiry.leadershipChanged(*leader)
	}
	// History retention reads the applied index only: the applier may run.
	if err := n.maybeCompactHistory(); err != nil {
		return err
	}
	// A snapshot reads the state at the applied index: only with the
	// applier idle. It also truncates the log: with the persister idle.
	if !n.snapshotDue() {
		return nil
	}
	n.persister.wait()
	n.applier.wait()
	if err := n.storageFailed(); err != nil {
		return err
	}
	return n.maybeSnapshot()
}

// apply runs committed entries through the state machine as one unit, then
// answers the proposals they carried. It runs on the applier's goroutine,
// or on the Ready loop's with the applier idle; only then may ents hold a
// conf change, whose ApplyConfChange touches the RawNode.
func (n *Node) apply(ents []*pb.Entry, leader bool) error {
	if len(ents) == 0 {
		return nil
	}
	prev := n.applied.get()
	batch := make([]Entry, 0, len(ents))
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
		ent := Entry{Index: idx}
		switch e.GetType() {
		case pb.EntryNormal:
			if len(e.GetData()) == 0 { // a new leader's empty entry
				break
			}
			cmd, err := cmpxchg.DecodeCommand(e.GetData())
			if err != nil {
				n.cfg.Logger.Error("skipping undecodable log entry", "index", idx, "err", err)
				break
			}
			ent.Command = cmd
		case pb.EntryConfChange, pb.EntryConfChangeV2:
			cs, members, err := n.applyConfChange(e)
			if err != nil {
				return err
			}
			ent.ConfState, ent.Members = cs, members
		}
		batch = append(batch, ent)
	}
	if last == 0 {
		return nil
	}
	results, err := n.sm.Apply(batch)
	if err != nil {
		return err
	}
	if es, ok := n.sm.(eventSource); ok {
		n.feed.append(es.lastEvents(), last, n.cfg.Clock.Now())
		n.metrics.expired(es.lastEvents())
	}
	n.applied.set(last)
	n.metrics.applied(batch)
	appliedAt := time.Now()
	if n.selfRemoved() {
		return n.removedError()
	}
	for i, e := range batch {
		if e.Command == nil {
			continue
		}
		if n.tracer != nil {
			if p := n.waits.get(e.Command.GetProposalId()); p != nil && p.stamps != nil {
				p.stamps[stageApplied] = appliedAt
			}
		}
		n.clock.observe(e.Command.GetClusterMs())
		if leader {
			n.expiry.applied(e.Command, results[i])
		}
		n.waits.trigger(e.Command.GetProposalId(), proposalResult{res: results[i], index: e.Index})
	}
	return nil
}

// applyConfChange hands a configuration change to raft and returns the
// configuration and member table it leads to, to be stored with the state.
func (n *Node) applyConfChange(e *pb.Entry) (confState, members []byte, err error) {
	var cc pb.ConfChangeI
	if e.GetType() == pb.EntryConfChange {
		c := &pb.ConfChange{}
		if err := proto.Unmarshal(e.GetData(), c); err != nil {
			return nil, nil, err
		}
		cc = c
	} else {
		c := &pb.ConfChangeV2{}
		if err := proto.Unmarshal(e.GetData(), c); err != nil {
			return nil, nil, err
		}
		cc = c
	}
	if removesLastVoter(cc, n.log.confState) {
		// raft panics on a configuration with no voter. The leader refuses
		// such a change; one that got into the log anyway is skipped the
		// same way on every member, which all hold this configuration.
		n.cfg.Logger.Error("skipping a configuration change that would remove the last voter", "index", e.GetIndex())
		cs := n.log.confState
		data, err := proto.Marshal(cs)
		return data, nil, err
	}
	cs := n.rn.ApplyConfChange(cc)
	data, err := proto.Marshal(cs)
	if err != nil {
		return nil, nil, err
	}
	n.log.setConfState(cs)
	return data, n.applyMembership(cc, cs), nil
}

func (n *Node) publishStatus() {
	st := n.rn.BasicStatus()
	first, _ := n.log.FirstIndex()
	last, _ := n.log.LastIndex()
	s := &Status{
		ID: n.cfg.ID, Leader: st.Lead, Term: st.GetTerm(), Role: roleName(st.RaftState),
		Commit: st.GetCommit(), Applied: n.applied.get(), FirstIndex: first, LastIndex: last,
		Transferee: st.LeadTransferee,
	}
	n.status.Store(s)
	n.observeStatus(*s)
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

// snapshotInstalled moves the member's in-memory view to a snapshot that
// persistReady installed.
func (n *Node) snapshotInstalled(meta *pb.SnapshotMetadata) error {
	n.feed.reset(meta.GetIndex())
	n.applied.set(meta.GetIndex())
	if err := n.resetHistoryFloor(); err != nil {
		return err
	}
	n.cfg.Logger.Info("restored snapshot", "index", meta.GetIndex(), "term", meta.GetTerm())
	return n.snaps.take(n)
}
