// Package bench measures cxkv against etcd with one set of workloads. Both
// systems sit behind Backend, so a figure for one and a figure for the other
// come from the same code path and differ only in the system underneath.
package bench

import (
	"context"
	"time"
)

// Backend is a cluster under test. Connect opens a new connection (a client
// of its own), so workloads decide how many connections they spread over.
type Backend interface {
	Name() string
	Connect(ctx context.Context) (Conn, error)
}

// Conn is one client connection. Revisions are each system's version of a
// key: cxkv's index, etcd's ModRevision; 0 means absent.
type Conn interface {
	// Get is a linearizable read.
	Get(ctx context.Context, key string) (value []byte, rev uint64, err error)
	// CAS writes value if key's revision is expect (0: only if absent). ok
	// is false on a failed compare, which is not an error; on success rev
	// is the key's new revision.
	CAS(ctx context.Context, key string, value []byte, expect uint64) (ok bool, rev uint64, err error)
	// DeleteIf deletes key if its revision is expect.
	DeleteIf(ctx context.Context, key string, expect uint64) (ok bool, err error)
	// Set writes value whatever the key holds: the unguarded write of a
	// critical section, which only a working lock keeps from losing updates.
	Set(ctx context.Context, key string, value []byte) error
	// Session opens a lock session whose locks expire ttl after their
	// holder stops renewing them.
	Session(ctx context.Context, ttl time.Duration) (LockSession, error)
	Close() error
}

// LockSession holds locks for one worker: a ProcessMonitor for cxkv, a
// lease Session for etcd.
type LockSession interface {
	// Lock blocks until the lock called name is held or ctx ends.
	Lock(ctx context.Context, name string) (Held, error)
	Close() error
}

// Held is an acquired lock.
type Held interface {
	Unlock(ctx context.Context) error
}
