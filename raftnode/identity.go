package raftnode

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"

	"github.com/cxkv/cxkv/api/cxkvpb"
)

// ClusterID is the id a cluster takes when its members bootstrap it: a
// hash of the operator's cluster token and the sorted initial member ids.
// Every bootstrapping member computes it alone and gets the same id; it
// does not depend on addresses, so members may move. From the first start
// on, each data dir stores the id and the flags no longer matter: members
// that join later learn it from the cluster.
func ClusterID(token string, peers map[uint64]string) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "cxkv cluster\x00%s\x00", token)
	for _, id := range slices.Sorted(maps.Keys(peers)) {
		fmt.Fprintf(h, "%d,", id)
	}
	return h.Sum64()
}

// identity decides which cluster the member belongs to and who its peers
// are, before anything is served. A data dir that holds state keeps the
// cluster id and membership it stores, whatever the flags say (so a member
// restarted at a new address, or with a stale --cluster, keeps working). An
// empty one either joins (Config.Join: the cluster says who it is) or
// bootstraps from Config.Peers, which start() confirms with the peers before
// writing anything. A mismatch changes nothing on disk.
func (n *Node) identity(fresh bool) error {
	member, cluster, claimed, err := n.store.Identity()
	if err != nil {
		return err
	}
	if claimed && member != n.cfg.ID {
		return fmt.Errorf("data dir belongs to member %d, not member %d; refusing to touch it", member, n.cfg.ID)
	}
	switch {
	case !fresh:
		if !claimed {
			return fmt.Errorf("data dir holds state but names no member or cluster; refusing to touch it")
		}
		if n.cfg.JoinClusterID != 0 && cluster != n.cfg.JoinClusterID {
			return fmt.Errorf("data dir belongs to cluster %x, not cluster %x (--cluster-id); refusing to touch it", cluster, n.cfg.JoinClusterID)
		}
		n.clusterID = cluster
		t, err := n.loadMembers()
		if err != nil {
			return err
		}
		removed, err := n.store.Removed()
		if err != nil {
			return err
		}
		if removed || t.removed[n.cfg.ID] {
			return n.removedError()
		}
		n.members.set(t)
	case len(n.cfg.Join) > 0:
		id, t, err := n.joinInfo()
		if err != nil {
			return err
		}
		if claimed && cluster != id {
			return fmt.Errorf("data dir was claimed for cluster %x, but --join reaches cluster %x; refusing to touch it", cluster, id)
		}
		n.clusterID = id
		n.members.set(t)
		if err := n.store.SetIdentity(n.cfg.ID, id); err != nil {
			return err
		}
	default:
		id := ClusterID(n.cfg.ClusterToken, n.cfg.Peers)
		if claimed && cluster != id {
			return fmt.Errorf("data dir was claimed for cluster %x, but --cluster and --cluster-token give %x; refusing to touch it", cluster, id)
		}
		n.clusterID = id
		t := newMemberTable()
		for id, addr := range n.cfg.Peers {
			t.members[id] = &cxkvpb.Member{Id: id, Addr: addr}
		}
		n.members.set(t)
		n.bootstrapping = true
	}
	// The transport dials, and the metrics label, the members of the
	// table; this member listens on its own address.
	peers := n.members.get().addrs()
	peers[n.cfg.ID] = n.cfg.peerAddr()
	n.cfg.Peers = peers
	return nil
}
