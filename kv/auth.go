package kv

import "sync/atomic"

// The auth state (users, roles, grants, the enabled flag) is one opaque value
// among the state's meta keys: it is small, changes rarely, and is read
// whole. Being under the meta prefix, snapshots carry it and a restore
// replaces it like the rest of the state. Its encoding is the state
// machine's business (cmpxchg), not this package's.
const metaAuth = "auth"

// authMemo keeps the auth state in memory: every request reads it, and a
// Pebble point read per request cost the leader 13-15% of its CPU at
// cas-parallel. gen counts the changes to the stored value (a committed
// batch that set it, an installed snapshot); it is bumped after the change
// is visible in Pebble and before the call that made it returns, so a
// reader that sees the memo's gen equal to the current one holds a value
// at least as new as every change whose commit has returned: the applier
// publishes an applied index only after its batch's Commit returns.
type authMemo struct {
	gen  atomic.Uint64
	last atomic.Pointer[authRead]
}

type authRead struct {
	gen  uint64
	data []byte
}

func (m *authMemo) changed() { m.gen.Add(1) }

// AuthState returns the stored auth state (nil if auth was never set up).
// The slice is shared: the caller must not modify it.
func (s *Store) AuthState() ([]byte, error) {
	gen := s.auth.gen.Load()
	if r := s.auth.last.Load(); r != nil && r.gen == gen {
		return r.data, nil
	}
	data, err := getBytes(s.db, metaKey(metaAuth))
	if err != nil {
		return nil, err
	}
	// Read after gen was loaded, so data is at least as new as gen says;
	// a change since then bumps gen and the next call reads again.
	s.auth.last.Store(&authRead{gen: gen, data: data})
	return data, nil
}

// AuthState returns the auth state as this batch sees it. Until the batch
// sets it, that is the stored state: only batches change it, and only one
// is open for writing at a time.
func (b *Batch) AuthState() ([]byte, error) {
	if !b.setsAuth {
		return b.s.AuthState()
	}
	return getBytes(b.b, metaKey(metaAuth))
}

// SetAuthState replaces the auth state.
func (b *Batch) SetAuthState(data []byte) error {
	b.setsAuth = true
	return b.b.Set(metaKey(metaAuth), data, nil)
}
