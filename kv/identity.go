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
	return s.failed.guard(func() error { return s.db.Set(identityKey, v, pebble.Sync) })
}

// ReserveProposalIDs reserves n ids that this data dir has never handed out
// and returns the first. The stored mark moves past them durably before it
// returns, so after a restart or a crash the next reservation starts above
// every id handed out before. Callers serialize their calls.
func (s *Store) ReserveProposalIDs(n uint64) (first uint64, err error) {
	v, ok, err := getRaw(s.db, proposalIDsKey)
	if err != nil {
		return 0, err
	}
	if ok {
		if len(v) != 8 {
			return 0, fmt.Errorf("kv: data dir has a malformed proposal-id mark (%d bytes)", len(v))
		}
		first = binary.BigEndian.Uint64(v)
	}
	if first+n < first {
		return 0, fmt.Errorf("kv: proposal ids exhausted at %d", first)
	}
	mark := binary.BigEndian.AppendUint64(nil, first+n)
	if err := s.failed.guard(func() error { return s.db.Set(proposalIDsKey, mark, pebble.Sync) }); err != nil {
		return 0, err
	}
	return first, nil
}
