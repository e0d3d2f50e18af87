package kv

// The auth state (users, roles, grants, the enabled flag) is one opaque value
// among the state's meta keys: it is small, changes rarely, and is read
// whole. Being under the meta prefix, snapshots carry it and a restore
// replaces it like the rest of the state. Its encoding is the state
// machine's business (cmpxchg), not this package's.
const metaAuth = "auth"

// AuthState returns the stored auth state (nil if auth was never set up).
func (s *Store) AuthState() ([]byte, error) { return getBytes(s.db, metaKey(metaAuth)) }

// AuthState returns the auth state as this batch sees it.
func (b *Batch) AuthState() ([]byte, error) { return getBytes(b.b, metaKey(metaAuth)) }

// SetAuthState replaces the auth state.
func (b *Batch) SetAuthState(data []byte) error { return b.b.Set(metaKey(metaAuth), data, nil) }
