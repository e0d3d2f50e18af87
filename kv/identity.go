package kv

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Identity returns the member and cluster ids the data dir was claimed for,
// and false if it was never claimed. The identity is never part of a
// snapshot: it names the directory, not the state.
func (s *Store) Identity() (member, cluster uint64, ok bool, err error) {
	v, ok, err := getRaw(s.db, identityKey)
	if err != nil || !ok {
		return 0, 0, false, err
	}
	if len(v) != 16 {
		return 0, 0, false, fmt.Errorf("kv: data dir has a malformed identity (%d bytes)", len(v))
	}
	return binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:]), true, nil
}

// SetIdentity claims the data dir for a member of a cluster, durably.
func (s *Store) SetIdentity(member, cluster uint64) error {
	v := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, member), cluster)
	return guard(func() error { return s.db.Set(identityKey, v, pebble.Sync) })
}
