package raftnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// promoteMaxLag is how far (in entries) a learner may trail the leader's
// commit index and still be promoted: a voter further behind would hold up
// the quorum while it catches up.
const promoteMaxLag = 256

// errNotLive: a change would leave too few live voters for a quorum.
var errNotLive = errors.New("too few live voters")

// clusterService is the Cluster API: membership and leadership. Every
// change is made by the leader, checked against its applied membership and
// its view of which members are live, and answered once applied.
type clusterService struct {
	cxkvrpc.UnimplementedClusterServer
	n *Node
	// mu lets one change at a time through this member, so each is checked
	// against a membership that includes the one before.
	mu sync.Mutex
}

func (s *clusterService) header() *cxkvpb.Header { return (&kvService{n: s.n}).header() }

func (s *clusterService) MemberList(ctx context.Context, _ *cxkvpb.MemberListRequest) (*cxkvpb.MemberListResponse, error) {
	t := s.n.members.get()
	st := s.n.Status()
	resp := &cxkvpb.MemberListResponse{Header: s.header(), ClusterId: s.n.clusterID, Role: st.Role}
	resp.Removed = slices.Sorted(func(yield func(uint64) bool) {
		for id := range t.removed {
			if !yield(id) {
				return
			}
		}
	})
	var progress map[uint64]tracker.Progress
	if st.Role == "leader" {
		if err := s.n.onRaft(ctx, func(rn *raft.RawNode) { progress = rn.Status().Progress }); err != nil {
			return nil, toStatus(err)
		}
	}
	last := progress[s.n.cfg.ID].Match
	for _, m := range t.list() {
		ms := &cxkvpb.MemberStatus{Member: m, Leader: m.GetId() == st.Leader}
		if pr, ok := progress[m.GetId()]; ok {
			ms.MatchIndex = pr.Match
			if last > pr.Match {
				ms.Lag = last - pr.Match
			}
		}
		resp.Members = append(resp.Members, ms)
	}
	return resp, nil
}

func (s *clusterService) MemberAdd(ctx context.Context, r *cxkvpb.MemberAddRequest) (*cxkvpb.MemberChangeResponse, error) {
	id, addr := r.GetId(), r.GetAddr()
	if id == 0 {
		return nil, toStatus(fmt.Errorf("%w: member id must be positive", errInvalid))
	}
	if err := CheckAddr(addr); err != nil {
		return nil, toStatus(fmt.Errorf("%w: --addr %q: %v", errInvalid, addr, err))
	}
	cc := addMemberChange(id, addr, r.GetLearner())
	return s.change(ctx, cc, func(st raft.Status, t *memberTable) (bool, error) {
		if m := t.members[id]; m != nil {
			if m.GetAddr() == addr && m.GetLearner() == r.GetLearner() {
				return true, nil
			}
			return false, fmt.Errorf("%w: member %d already exists at %s", errMemberTaken, id, m.GetAddr())
		}
		if t.removed[id] {
			return false, fmt.Errorf("%w: member %d was removed and ids are never reused; pick a new id", errMemberTaken, id)
		}
		if err := addrFree(t, id, addr); err != nil {
			return false, err
		}
		if !r.GetLearner() {
			voters := voterSet(st)
			if err := s.quorumAfter(st, append(voters, id)); err != nil {
				return false, fmt.Errorf("%w: adding voter %d: %v; add it as a learner (--learner) and promote it once it runs", errChangeRefused, id, err)
			}
		}
		return false, nil
	})
}

func (s *clusterService) MemberRemove(ctx context.Context, r *cxkvpb.MemberRemoveRequest) (*cxkvpb.MemberChangeResponse, error) {
	id := r.GetId()
	cc := memberChange(pb.ConfChangeRemoveNode, &cxkvpb.Member{Id: id})
	return s.change(ctx, cc, func(st raft.Status, t *memberTable) (bool, error) {
		if t.removed[id] {
			return true, nil
		}
		if t.members[id] == nil {
			return false, fmt.Errorf("%w: cluster %x has no member %d", errNotMember, s.n.clusterID, id)
		}
		voters := voterSet(st)
		if slices.Contains(voters, id) {
			rest := slices.DeleteFunc(slices.Clone(voters), func(v uint64) bool { return v == id })
			if len(rest) == 0 {
				return false, fmt.Errorf("%w: member %d is the last voter; the cluster would have none", errChangeRefused, id)
			}
			if err := s.quorumAfter(st, rest); err != nil {
				return false, fmt.Errorf("%w: removing member %d: %v", errChangeRefused, id, err)
			}
		}
		if id == s.n.cfg.ID {
			return false, fmt.Errorf("%w: member %d is the leader; move leadership first (cxkv move-leader), then remove it", errChangeRefused, id)
		}
		return false, nil
	})
}

func (s *clusterService) MemberPromote(ctx context.Context, r *cxkvpb.MemberPromoteRequest) (*cxkvpb.MemberChangeResponse, error) {
	id := r.GetId()
	cc := memberChange(pb.ConfChangeAddNode, &cxkvpb.Member{Id: id})
	return s.change(ctx, cc, func(st raft.Status, t *memberTable) (bool, error) {
		m := t.members[id]
		if m == nil {
			return false, fmt.Errorf("%w: cluster %x has no member %d", errNotMember, s.n.clusterID, id)
		}
		if !m.GetLearner() {
			return true, nil
		}
		pr, ok := st.Progress[id]
		commit := st.GetCommit()
		// Replicate: the leader has heard the learner acknowledge its log
		// and streams to it; a learner that never answered is probing.
		if !ok || !s.n.live(st, id) || pr.State != tracker.StateReplicate || pr.Match+promoteMaxLag < commit {
			return false, fmt.Errorf("%w: learner %d has not caught up (its log matches the leader's up to %d, the commit index is %d, at most %d behind may be promoted; replication state %s); wait and retry",
				errChangeRefused, id, pr.Match, commit, promoteMaxLag, pr.State)
		}
		return false, nil
	})
}

func (s *clusterService) MemberUpdate(ctx context.Context, r *cxkvpb.MemberUpdateRequest) (*cxkvpb.MemberChangeResponse, error) {
	id, addr := r.GetId(), r.GetAddr()
	if err := CheckAddr(addr); err != nil {
		return nil, toStatus(fmt.Errorf("%w: --addr %q: %v", errInvalid, addr, err))
	}
	cc := memberChange(pb.ConfChangeUpdateNode, &cxkvpb.Member{Id: id, Addr: addr})
	return s.change(ctx, cc, func(st raft.Status, t *memberTable) (bool, error) {
		m := t.members[id]
		if m == nil {
			return false, fmt.Errorf("%w: cluster %x has no member %d", errNotMember, s.n.clusterID, id)
		}
		if m.GetAddr() == addr {
			return true, nil
		}
		return false, addrFree(t, id, addr)
	})
}

func (s *clusterService) MoveLeader(ctx context.Context, r *cxkvpb.MoveLeaderRequest) (*cxkvpb.MoveLeaderResponse, error) {
	lead, err := s.n.MoveLeader(ctx, r.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return &cxkvpb.MoveLeaderResponse{Header: s.header(), LeaderId: lead}, nil
}

// change proposes cc on the leader until check says it is applied, or
// refuses it with check's error. check runs on the Ready goroutine against
// raft's status and the applied membership before every proposal: raft
// drops a configuration change while another is pending, so the change is
// proposed again each election timeout, and a change proposed twice
// applies as once (adding a member that is there, removing one that is
// gone and updating to the same address change nothing).
func (s *clusterService) change(ctx context.Context, cc *pb.ConfChangeV2, check func(raft.Status, *memberTable) (done bool, err error)) (*cxkvpb.MemberChangeResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := s.n.requestContext(ctx)
	defer cancel()
	every := time.Duration(s.n.cfg.ElectionTicks) * s.n.cfg.TickInterval
	// A leader learns which voters are live from their answers within an
	// election timeout; a new one has heard from nobody yet. Until then a
	// refusal for want of live voters is checked again.
	settle := time.Now().Add(2 * every)
	for {
		var done bool
		var refused error
		err := s.n.onRaft(ctx, func(rn *raft.RawNode) {
			st := rn.Status()
			if st.RaftState != raft.StateLeader {
				refused = s.n.notLeader(st.Lead)
				return
			}
			if done, refused = check(st, s.n.members.get()); done || refused != nil {
				return
			}
			if err := rn.ProposeConfChange(cc); err != nil {
				refused = fmt.Errorf("%w: %v", errChangeRefused, err)
			}
		})
		if err != nil {
			return nil, toStatus(err)
		}
		if refused != nil && !(errors.Is(refused, errNotLive) && time.Now().Before(settle)) {
			return nil, toStatus(refused)
		}
		if done {
			t := s.n.members.get()
			return &cxkvpb.MemberChangeResponse{Header: s.header(), ClusterId: s.n.clusterID, Members: t.list()}, nil
		}
		_, changed := s.n.applied.next()
		select {
		case <-changed:
		case <-time.After(every):
		case <-ctx.Done():
			return nil, toStatus(fmt.Errorf("%w; the change may or may not apply: check cxkv member list", contextError(ctx.Err(), false)))
		case <-s.n.stopc:
			return nil, toStatus(errStopping)
		}
	}
}

// notLeader refuses a change on a follower, naming the leader.
func (n *Node) notLeader(lead uint64) error {
	if lead == 0 {
		return fmt.Errorf("%w: member %d is not the leader and knows none", errNoLeader, n.cfg.ID)
	}
	addr := n.members.get().members[lead].GetAddr()
	return fmt.Errorf("%w: member %d is not the leader; member %d (peer address %s) is", errNotLeader, n.cfg.ID, lead, addr)
}

// quorumAfter checks that the voters of a configuration would have a
// quorum of live members: the leader, and the voters it heard from within
// the last election timeout.
func (s *clusterService) quorumAfter(st raft.Status, voters []uint64) error {
	live := 0
	for _, v := range voters {
		if s.n.live(st, v) {
			live++
		}
	}
	if need := len(voters)/2 + 1; live < need {
		return fmt.Errorf("%w: it would leave %d voters of which %d are live, and a quorum needs %d", errNotLive, len(voters), live, need)
	}
	return nil
}

// voterSet is the voters of the current (non-joint) configuration.
func voterSet(st raft.Status) []uint64 {
	return slices.Sorted(func(yield func(uint64) bool) {
		for id := range st.Config.Voters[0] {
			if !yield(id) {
				return
			}
		}
	})
}

// addrFree refuses an address another member already has.
func addrFree(t *memberTable, id uint64, addr string) error {
	for _, m := range t.members {
		if m.GetId() != id && m.GetAddr() == addr {
			return fmt.Errorf("%w: member %d already has address %s", errMemberTaken, m.GetId(), addr)
		}
	}
	return nil
}

// CheckAddr accepts host:port with a host and a port in 1..65535: the form
// of every member address, checked alike by the server's flags, the CLI and
// the Cluster service.
func CheckAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("not host:port: %v", err)
	}
	if host == "" {
		return fmt.Errorf("no host")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q is not 1..65535", port)
	}
	return nil
}

// tryOnRaft has the Ready goroutine run f, unless its queue is full: for
// work its sender repeats, or that the next failure brings again.
func (n *Node) tryOnRaft(f func(*raft.RawNode)) {
	select {
	case n.onRaftc <- f:
	default:
	}
}

// onRaft runs f on the Ready goroutine, which owns the RawNode, and waits
// for it.
func (n *Node) onRaft(ctx context.Context, f func(*raft.RawNode)) error {
	done := make(chan struct{})
	select {
	case n.onRaftc <- func(rn *raft.RawNode) { f(rn); close(done) }:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopc:
		return errStopping
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopc:
		return errStopping
	}
}

// MoveLeader hands leadership to voter id, or with id 0 to the voter whose
// log is furthest along, and waits until it leads. Only the leader can.
func (n *Node) MoveLeader(ctx context.Context, id uint64) (uint64, error) {
	ctx, cancel := n.requestContext(ctx)
	defer cancel()
	var target uint64
	var refused error
	err := n.onRaft(ctx, func(rn *raft.RawNode) {
		st := rn.Status()
		if st.RaftState != raft.StateLeader {
			refused = n.notLeader(st.Lead)
			return
		}
		voters := voterSet(st)
		if id == 0 {
			var best uint64
			for _, v := range voters {
				if pr := st.Progress[v]; v != n.cfg.ID && n.live(st, v) && (target == 0 || pr.Match > best) {
					target, best = v, pr.Match
				}
			}
			if target == 0 {
				refused = fmt.Errorf("%w: no other live voter to hand leadership to", errChangeRefused)
				return
			}
		} else {
			if !slices.Contains(voters, id) {
				refused = fmt.Errorf("%w: member %d is not a voter", errChangeRefused, id)
				return
			}
			target = id
		}
		if target != n.cfg.ID {
			rn.TransferLeader(target)
		}
	})
	if err != nil {
		return 0, err
	}
	if refused != nil {
		return 0, refused
	}
	// Raft abandons a transfer that has not completed within an election
	// timeout (the target was unreachable or behind); while this member
	// still leads, each abandoned transfer is started again.
	for {
		st := n.Status()
		if st.Leader == target {
			return target, nil
		}
		if st.Role == "leader" && st.Transferee == 0 && target != n.cfg.ID {
			if err := n.onRaft(ctx, func(rn *raft.RawNode) {
				if bs := rn.BasicStatus(); bs.RaftState == raft.StateLeader && bs.LeadTransferee == 0 {
					rn.TransferLeader(target)
				}
			}); err != nil {
				return 0, err
			}
		}
		_, changed := n.applied.next()
		select {
		case <-changed:
		case <-time.After(n.cfg.TickInterval):
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: member %d did not take the leadership in time: %v", errChangeRefused, target, ctx.Err())
		case <-n.stopc:
			return 0, errStopping
		}
	}
}
