package raftnode

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"sort"

	"github.com/cockroachdb/pebble/v2"
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
func checkIdentity(db *pebble.DB, member, cluster uint64) error {
	v, ok, err := get(db, kv.IdentityKey())
	if err != nil {
		return err
	}
	if ok {
		if len(v) != 16 {
			return fmt.Errorf("raftnode: data dir has a malformed identity (%d bytes)", len(v))
		}
		m, c := binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
		if m != member {
			return fmt.Errorf("data dir belongs to member %d, not member %d; refusing to touch it", m, member)
		}
		if c != cluster {
			return fmt.Errorf("data dir belongs to another cluster (id %x, this --cluster gives %x); refusing to touch it", c, cluster)
		}
		return nil
	}
	id := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, member), cluster)
	return db.Set(kv.IdentityKey(), id, pebble.Sync)
}
