package kv

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
