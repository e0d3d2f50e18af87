package raftnode

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"go.etcd.io/raft/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// probeTimeout bounds how long a bootstrapping member waits for each peer's
// answer. A peer that does not answer in time counts as not reachable: it
// cannot block a genuine first start, when the other members are starting
// too.
const probeTimeout = 2 * time.Second

// bootstrap writes the first entries of a new cluster, after asking the
// peers whether this member has started before (defect 7 of issue 12: a
// member whose data dir was wiped would come back with no vote record and
// could vote twice in a term). It runs after the member serves, so members
// starting together answer each other's questions, and before the Ready
// loop runs, so it owns the RawNode.
func (n *Node) bootstrap() error {
	if err := n.probePeers(); err != nil {
		return err
	}
	// Every member writes these entries itself and raft never compares
	// them, so they must come out the same everywhere: in id order, each
	// with the member's address as its context.
	var peers []raft.Peer
	t := n.members.get()
	for _, id := range slices.Sorted(maps.Keys(t.members)) {
		ctx, err := proto.MarshalOptions{Deterministic: true}.Marshal(t.members[id])
		if err != nil {
			return err
		}
		peers = append(peers, raft.Peer{ID: id, Context: ctx})
	}
	if err := n.rn.Bootstrap(peers); err != nil {
		return err
	}
	return n.store.SetIdentity(n.cfg.ID, n.clusterID)
}

// probePeers refuses the first start if any peer that answers knows this
// member as started or removed, or belongs to another cluster.
func (n *Node) probePeers() error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for id, addr := range n.cfg.Peers {
		if id == n.cfg.ID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := memberList(addr, probeTimeout)
			if err != nil {
				n.cfg.Logger.Info("peer not reachable before bootstrap; going on", "peer", id, "addr", addr, "err", err)
				return
			}
			if err := n.checkProbe(id, addr, resp); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (n *Node) checkProbe(peer uint64, addr string, resp *cxkvpb.MemberListResponse) error {
	if resp.GetClusterId() != n.clusterID {
		return fmt.Errorf("member %d at %s belongs to cluster %x, but --cluster and --cluster-token give %x: every member of a new cluster starts with the same --cluster and --cluster-token", peer, addr, resp.GetClusterId(), n.clusterID)
	}
	if slices.Contains(resp.GetRemoved(), n.cfg.ID) {
		return fmt.Errorf("%w (member %d at %s says so); "+replaceRunbook, n.removedError(), peer, addr, n.cfg.ID)
	}
	for _, m := range resp.GetMembers() {
		if m.GetMember().GetId() == n.cfg.ID && m.GetMember().GetStarted() {
			return n.wipedError(addr)
		}
	}
	return nil
}

// wipedError refuses to start a member the cluster has seen started (the
// member at addr says so) from an empty data dir.
func (n *Node) wipedError(addr string) error {
	return fmt.Errorf("%w: member %d has run in cluster %x before (the member at %s says so), but data dir %s holds nothing; "+
		"a member that lost its disk must not rejoin under its old id (it would forget its votes and could vote twice in a term); "+replaceRunbook,
		errWipedMember, n.cfg.ID, n.clusterID, addr, n.cfg.DataDir, n.cfg.ID)
}

// joinInfo asks the first of Config.Join that answers for the cluster's id
// and membership, and checks that this member was added and may join.
func (n *Node) joinInfo() (uint64, *memberTable, error) {
	var resp *cxkvpb.MemberListResponse
	var errs []error
	var from string
	for _, addr := range n.cfg.Join {
		r, err := memberList(addr, 5*time.Second)
		if err == nil {
			resp, from = r, addr
			break
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	if resp == nil {
		return 0, nil, fmt.Errorf("no member of the cluster to join answered: %w", errors.Join(errs...))
	}
	id := resp.GetClusterId()
	if want := n.cfg.JoinClusterID; want != 0 && id != want {
		return 0, nil, fmt.Errorf("%s serves cluster %x, not cluster %x (--cluster-id): refusing to join the wrong cluster", from, id, want)
	}
	t := newMemberTable()
	for _, m := range resp.GetMembers() {
		t.members[m.GetMember().GetId()] = m.GetMember()
	}
	for _, r := range resp.GetRemoved() {
		t.removed[r] = true
	}
	n.clusterID = id
	if t.removed[n.cfg.ID] {
		return 0, nil, n.removedError()
	}
	me := t.members[n.cfg.ID]
	if me == nil {
		return 0, nil, fmt.Errorf("cluster %x (at %s) has no member %d: add it first with cxkv member add --id %d --addr %s --learner", id, from, n.cfg.ID, n.cfg.ID, n.cfg.peerAddr())
	}
	if me.GetStarted() {
		return 0, nil, n.wipedError(from)
	}
	if own := n.cfg.peerAddr(); me.GetAddr() != own {
		return 0, nil, fmt.Errorf("cluster %x knows member %d at peer address %s, but it starts at %s: start it there, or run cxkv member update %d --addr %s first", id, n.cfg.ID, me.GetAddr(), own, n.cfg.ID, own)
	}
	return id, t, nil
}

// memberList asks the member at addr for its membership.
func memberList(addr string, timeout time.Duration) (*cxkvpb.MemberListResponse, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return cxkvrpc.NewClusterClient(conn).MemberList(ctx, &cxkvpb.MemberListRequest{})
}
