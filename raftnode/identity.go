package raftnode

import (
	"fmt"
	"hash/fnv"
	"sort"

	"github.com/cxkv/cxkv/kv"
)

// ClusterID names a cluster by its initial membership, so members started
// with different --cluster lists refuse each other's messages and data dirs.
func ClusterID(peers map[uint64]string) uint64 {
	ids := make([]uint64, 0, len(peers))
	for id := range peers {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	h := fnv.New64a()
	for _, id := range ids {
		fmt.Fprintf(h, "%d=%s,", id, peers[id])
	}
	return h.Sum64()
}

// checkIdentity makes sure the data dir belongs to this member of this
// cluster; a new data dir is claimed. A mismatch changes nothing.
func checkIdentity(store *kv.Store, member, cluster uint64) error {
	m, c, ok, err := store.Identity()
	if err != nil {
		return err
	}
	if !ok {
		return store.SetIdentity(member, cluster)
	}
	if m != member {
		return fmt.Errorf("data dir belongs to member %d, not member %d; refusing to touch it", m, member)
	}
	if c != cluster {
		return fmt.Errorf("data dir belongs to another cluster (id %x, this --cluster gives %x); refusing to touch it", c, cluster)
	}
	return nil
}
