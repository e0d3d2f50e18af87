package kv

import "github.com/cockroachdb/pebble/v2"

// The replicated membership (member ids, addresses, roles, which members
// have started) is part of the state: it is written in the same batch as
// the entry that changed it, so it always matches the applied index and the
// conf state, and a snapshot carries it. kv keeps it opaque.

const metaMembers = "members"

// SetMembers stores the membership as of the entry this batch applies.
func (b *Batch) SetMembers(data []byte) error {
	return b.b.Set(metaKey(metaMembers), data, nil)
}

// Members returns the stored membership (nil if none was ever stored).
func (s *Store) Members() ([]byte, error) { return getBytes(s.db, metaKey(metaMembers)) }

// removedKey marks a data dir whose member was removed from its cluster: a
// member may learn of its removal from a peer before it applies it, so the
// state alone does not always say so. Not part of a snapshot.
var removedKey = prefixed(prefixIdentity, "removed")

// MarkRemoved records, durably, that this data dir's member was removed.
func (s *Store) MarkRemoved() error {
	return s.failed.guard(func() error { return s.db.Set(removedKey, []byte{1}, pebble.Sync) })
}

// Removed reports whether MarkRemoved was called on this data dir.
func (s *Store) Removed() (bool, error) {
	_, ok, err := getRaw(s.db, removedKey)
	return ok, err
}
