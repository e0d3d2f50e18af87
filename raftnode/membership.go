package raftnode

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// The membership (docs/DESIGN.md, "Membership") is replicated state: every
// change is a Raft configuration change whose context is a cxkvpb.Member,
// and applying it updates both raft's configuration and the member table
// stored with the state. Apply rules, the same on every member:
//
//   - AddNode / AddLearnerNode: the member enters the table at the context's
//     address, not yet started.
//   - RemoveNode: the member leaves the table and its id is recorded as
//     removed; an id is never reused.
//   - UpdateNode (a no-op for raft): the context's address replaces the
//     member's; started in the context marks the member as started.
//
// The learner flag is read from the configuration the change leads to, so
// it never disagrees with raft.

var (
	errRemoved = errors.New("member was removed from the cluster")
	// errWipedMember refuses a first start under an id the cluster has
	// already seen started: the data dir was lost.
	errWipedMember = errors.New("member already started in this cluster but its data dir is empty")
	errNotMember   = errors.New("no such member")
	errMemberTaken = errors.New("member already exists")
	// errChangeRefused is a membership change or leader transfer that would
	// be unsafe now, or that names a member in the wrong state.
	errChangeRefused = errors.New("membership change refused")
	errInvalid       = errors.New("invalid request")
	// errNotLeader: a change reached a follower; the client sends it to
	// the leader (the status says NOT_LEADER).
	errNotLeader = errors.New("not the leader")
)

// memberReason is the ErrorInfo reason toStatus gives a membership error
// that a peer or client acts on.
func memberReason(err error) string {
	switch {
	case errors.Is(err, errRemoved):
		return cxkvpb.ReasonMemberRemoved
	case errors.Is(err, errNotLeader):
		return cxkvpb.ReasonNotLeader
	}
	return ""
}

// replaceRunbook is what an operator does when a member's disk is gone.
const replaceRunbook = "replace it instead (README, \"Replace a member whose disk is gone\"): " +
	"cxkv member add --id NEW --addr HOST:PORT --learner; start the new member with the flags that prints; " +
	"cxkv member promote NEW once it has caught up; then cxkv member remove %d"

// memberTable is the replicated membership. Its encoding sorts by id, so
// every member stores the same bytes for the same table.
type memberTable struct {
	members map[uint64]*cxkvpb.Member
	removed map[uint64]bool
}

func newMemberTable() *memberTable {
	return &memberTable{members: map[uint64]*cxkvpb.Member{}, removed: map[uint64]bool{}}
}

func decodeMemberTable(data []byte) (*memberTable, error) {
	t := newMemberTable()
	var m cxkvpb.MemberTable
	if err := proto.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("stored member table: %w", err)
	}
	for _, mem := range m.GetMembers() {
		t.members[mem.GetId()] = mem
	}
	for _, id := range m.GetRemoved() {
		t.removed[id] = true
	}
	return t, nil
}

func (t *memberTable) encode() []byte {
	var m cxkvpb.MemberTable
	for _, id := range slices.Sorted(maps.Keys(t.members)) {
		m.Members = append(m.Members, t.members[id])
	}
	m.Removed = slices.Sorted(maps.Keys(t.removed))
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(&m)
	if err != nil {
		panic(fmt.Sprintf("raftnode: encoding the member table: %v", err)) // plain fields cannot fail
	}
	return data
}

func (t *memberTable) clone() *memberTable {
	c := newMemberTable()
	for id, m := range t.members {
		c.members[id] = proto.Clone(m).(*cxkvpb.Member)
	}
	maps.Copy(c.removed, t.removed)
	return c
}

// list returns the members in id order.
func (t *memberTable) list() []*cxkvpb.Member {
	var out []*cxkvpb.Member
	for _, id := range slices.Sorted(maps.Keys(t.members)) {
		out = append(out, proto.Clone(t.members[id]).(*cxkvpb.Member))
	}
	return out
}

// addrs maps every member to its address.
func (t *memberTable) addrs() map[uint64]string {
	out := map[uint64]string{}
	for id, m := range t.members {
		out[id] = m.GetAddr()
	}
	return out
}

// apply applies one configuration change whose context is ctx, leading to
// the configuration cs.
func (t *memberTable) apply(cc *pb.ConfChangeV2, cs *pb.ConfState) {
	var info cxkvpb.Member
	if len(cc.GetContext()) > 0 {
		// A context that does not decode carries no address; the change
		// itself still applies (raft has applied it).
		_ = proto.Unmarshal(cc.GetContext(), &info)
	}
	for _, c := range cc.GetChanges() {
		id := c.GetNodeId()
		var ctx *cxkvpb.Member
		if info.GetId() == id {
			ctx = &info
		}
		switch c.GetType() {
		case pb.ConfChangeAddNode, pb.ConfChangeAddLearnerNode:
			m := t.members[id]
			if m == nil {
				m = &cxkvpb.Member{Id: id}
				t.members[id] = m
			}
			if ctx != nil && ctx.GetAddr() != "" {
				m.Addr = ctx.GetAddr()
			}
		case pb.ConfChangeRemoveNode:
			delete(t.members, id)
			t.removed[id] = true
		case pb.ConfChangeUpdateNode:
			m := t.members[id]
			if m == nil && (slices.Contains(cs.GetVoters(), id) || slices.Contains(cs.GetLearners(), id)) {
				// A cluster from before the table: its members enter it as
				// they announce themselves.
				m = &cxkvpb.Member{Id: id}
				t.members[id] = m
			}
			if m == nil || ctx == nil {
				continue
			}
			if ctx.GetAddr() != "" {
				m.Addr = ctx.GetAddr()
			}
			if ctx.GetStarted() {
				m.Started = true
			}
		}
	}
	for id, m := range t.members {
		m.Learner = slices.Contains(cs.GetLearners(), id) || slices.Contains(cs.GetLearnersNext(), id)
	}
}

// membership is the member's view of the table: written by the Ready
// goroutine as it applies, read by the services and the announcer.
type membership struct {
	mu    sync.Mutex
	table *memberTable
}

func (m *membership) get() *memberTable {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.table.clone()
}

// isRemoved reports whether the table records id as removed. It is asked
// for every peer message and every applied batch, so it reads the table in
// place instead of cloning it as get does.
func (m *membership) isRemoved(id uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.table.removed[id]
}

func (m *membership) set(t *memberTable) {
	m.mu.Lock()
	m.table = t
	m.mu.Unlock()
}

// loadMembers reads the table stored with the state. A state from before
// the table has none: the members are then the ones the config names.
func (n *Node) loadMembers() (*memberTable, error) {
	data, err := n.sm.Members()
	if err != nil {
		return nil, err
	}
	if len(data) == 0 {
		t := newMemberTable()
		for id, addr := range n.cfg.Peers {
			t.members[id] = &cxkvpb.Member{Id: id, Addr: addr}
		}
		return t, nil
	}
	return decodeMemberTable(data)
}

// applyMembership applies a configuration change entry to the member table
// (raft has applied it and returned cs) and returns the table to store.
func (n *Node) applyMembership(cc pb.ConfChangeI, cs *pb.ConfState) []byte {
	t := n.members.get()
	t.apply(cc.AsV2(), cs)
	n.members.set(t)
	n.grpcPeers.setPeers(t.addrs())
	return t.encode()
}

// removedError says why a member whose id the table records as removed
// must not serve.
func (n *Node) removedError() error {
	return &memberRemoved{n.cfg.ID, fmt.Errorf("%w: member %d of cluster %x was removed and cannot serve again; start a new member with a new id and an empty data dir to take its place", errRemoved, n.cfg.ID, n.clusterID)}
}

// memberRemoved is errRemoved naming the member that was removed. Both the
// refusal of a removed peer and a removed member's own answers carry it,
// so a member that reads one in a peer's answer stops serving only when
// the id is its own (isRemovedStatus).
type memberRemoved struct {
	id  uint64
	err error
}

func (e *memberRemoved) Error() string { return e.err.Error() }
func (e *memberRemoved) Unwrap() error { return e.err }

// selfRemoved reports whether the applied table removed this member.
func (n *Node) selfRemoved() bool {
	return n.members.isRemoved(n.cfg.ID)
}

// addMemberChange is the configuration change that adds a member.
func addMemberChange(id uint64, addr string, learner bool) *pb.ConfChangeV2 {
	typ := pb.ConfChangeAddNode
	if learner {
		typ = pb.ConfChangeAddLearnerNode
	}
	return memberChange(typ, &cxkvpb.Member{Id: id, Addr: addr})
}

func memberChange(typ pb.ConfChangeType, info *cxkvpb.Member) *pb.ConfChangeV2 {
	ctx, err := proto.MarshalOptions{Deterministic: true}.Marshal(info)
	if err != nil {
		panic(fmt.Sprintf("raftnode: encoding a member: %v", err))
	}
	return &pb.ConfChangeV2{
		Changes: []*pb.ConfChangeSingle{{Type: typ.Enum(), NodeId: proto.Uint64(info.GetId())}},
		Context: ctx,
	}
}

// announce records in the replicated table that this member has started
// (as etcd publishes a member's attributes), so that a later first start
// under the same id, from a wiped data dir, is refused (bootstrap). It
// proposes until the record is applied; raft may drop a proposal (no
// leader yet, another change pending), so it retries each election timeout.
func (n *Node) announce() {
	every := time.Duration(n.cfg.ElectionTicks) * n.cfg.TickInterval
	t := n.cfg.Clock.NewTicker(every)
	defer t.Stop()
	for {
		me := n.members.get().members[n.cfg.ID]
		if me != nil && me.GetStarted() {
			return
		}
		if me != nil && n.Status().Leader != 0 {
			cc := memberChange(pb.ConfChangeUpdateNode, &cxkvpb.Member{Id: n.cfg.ID, Started: true})
			n.tryOnRaft(func(rn *raft.RawNode) {
				// Conf changes apply on this goroutine, so this sees
				// whether an earlier proposal already recorded the start.
				if me := n.members.get().members[n.cfg.ID]; me != nil && me.GetStarted() {
					return
				}
				if err := rn.ProposeConfChange(cc); err != nil {
					n.cfg.Logger.Debug("announcing the start failed; will retry", "err", err)
				}
			})
		}
		select {
		case <-n.stopc:
			return
		case <-t.Chan():
		}
	}
}

// removesLastVoter reports whether cc would leave cs without a voter.
func removesLastVoter(cc pb.ConfChangeI, cs *pb.ConfState) bool {
	voters := map[uint64]bool{}
	for _, v := range cs.GetVoters() {
		voters[v] = true
	}
	for _, c := range cc.AsV2().GetChanges() {
		switch c.GetType() {
		case pb.ConfChangeAddNode:
			voters[c.GetNodeId()] = true
		case pb.ConfChangeRemoveNode, pb.ConfChangeAddLearnerNode:
			delete(voters, c.GetNodeId())
		}
	}
	return len(voters) == 0 && len(cs.GetVoters()) > 0
}

// refuseRemovedPeer refuses Raft traffic from a removed member. A removed
// member may never learn of its removal from the log (the leader stops
// sending to it once the change applies), so this refusal is how it
// learns: its transport reads the reason and the member stops serving.
func (n *Node) refuseRemovedPeer(from uint64) error {
	if !n.members.isRemoved(from) {
		return nil
	}
	return &memberRemoved{from, fmt.Errorf("%w: member %d of cluster %x was removed; member %d refuses its messages", errRemoved, from, n.clusterID, n.cfg.ID)}
}

// isRemovedStatus reports whether a peer refused member self as removed. A
// peer that was itself removed says so in the same terms, naming itself: that
// is no news about self. A member one version older names nobody; its
// refusal is read as about self, as that version meant it.
func isRemovedStatus(err error, self uint64) bool {
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != cxkvpb.ErrorDomain || info.GetReason() != cxkvpb.ReasonMemberRemoved {
			continue
		}
		removed, named := info.GetMetadata()[cxkvpb.MetaRemoved]
		return !named || removed == strconv.FormatUint(self, 10)
	}
	return false
}
