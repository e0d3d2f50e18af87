package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// LockMode chooses how waiters wait.
type LockMode int

const (
	// QueueLock, the default, queues waiters in arrival order: each waiter
	// creates its own entry under "<name>/.lock/", the entry with the lowest
	// create index holds the lock, and a release wakes exactly the next
	// waiter (the recipe of ZooKeeper's lock and etcd's Mutex). No waiter
	// starves, and a release costs one write, not one per waiter.
	QueueLock LockMode = iota
	// PlainLock is put-if-absent on "<name>" itself. Waiters watch the key
	// and race to create it on every release: simplest, but unfair under
	// contention.
	PlainLock
)

func (m LockMode) String() string {
	if m == PlainLock {
		return "plain"
	}
	return "queue"
}

// queueInfix separates a lock's name from its waiters' entries. Lock names
// may not contain it.
const queueInfix = "/.lock/"

var (
	// ErrLocked is returned by TryLock when another process holds the lock.
	ErrLocked = errors.New("cxkv: lock is held by another owner")
	// ErrLockLost is returned by a lock's guarded writes and Unlock once the
	// lock is no longer held: it expired, its renewals failed, or an
	// operator force-released it.
	ErrLockLost = errors.New("cxkv: lock lost")
	// ErrNotLocked is returned by ForceRelease when nobody holds the lock.
	ErrNotLocked = errors.New("cxkv: lock is not held")
	// ErrLockModeMismatch is returned by Lock and TryLock when the name is
	// in use as a lock of the other LockMode: a PlainLock and a QueueLock
	// of one name would not exclude each other, so the second is refused.
	ErrLockModeMismatch = errors.New("cxkv: lock name in use in the other lock mode")
)

// LockOptions configure a ProcessMonitor.
type LockOptions struct {
	// TTL is how long a lock outlives its holder's last renewal: the time
	// after which a crashed holder's lock is released. Renewal runs every
	// TTL/3. Default 10s; at least 100ms.
	TTL time.Duration
	// Mode is how waiters wait; QueueLock by default.
	Mode LockMode
	// Name identifies this process in `cxkv locks`; default "host:pid".
	Name string
}

// ProcessMonitor hands out expiring locks for one process. Locks it still
// holds when Close is called are released.
type ProcessMonitor struct {
	c    *Client
	opts LockOptions
	host string

	mu    sync.Mutex
	held  map[*Lock]struct{}
	close bool
}

// NewProcessMonitor returns a ProcessMonitor taking locks through c.
func NewProcessMonitor(c *Client, opts LockOptions) *ProcessMonitor {
	if opts.TTL <= 0 {
		opts.TTL = 10 * time.Second
	}
	opts.TTL = max(opts.TTL, 100*time.Millisecond)
	if opts.Name == "" {
		opts.Name = defaultOwnerName()
	}
	host, _ := os.Hostname()
	return &ProcessMonitor{c: c, opts: opts, host: host, held: map[*Lock]struct{}{}}
}

// Close releases every lock this monitor still holds.
func (m *ProcessMonitor) Close() error {
	m.mu.Lock()
	m.close = true
	locks := make([]*Lock, 0, len(m.held))
	for l := range m.held {
		locks = append(locks, l)
	}
	m.mu.Unlock()
	var errs []error
	for _, l := range locks {
		if err := l.Unlock(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Lock blocks until it holds the lock called name, or ctx ends.
//
//	lock, err := mon.Lock(ctx, "rooms/deluxe")
//	if err != nil { return err }
//	defer lock.Unlock()
func (m *ProcessMonitor) Lock(ctx context.Context, name string) (*Lock, error) {
	return m.acquire(ctx, name, true)
}

// TryLock takes the lock called name if nobody holds it, and returns an
// error matching ErrLocked otherwise. It does not wait.
func (m *ProcessMonitor) TryLock(ctx context.Context, name string) (*Lock, error) {
	return m.acquire(ctx, name, false)
}

func validLockName(name string) error {
	if name == "" || strings.Contains(name, queueInfix) {
		return fmt.Errorf("cxkv: lock name %q: must be non-empty and must not contain %q", name, queueInfix)
	}
	return nil
}

func (m *ProcessMonitor) acquire(ctx context.Context, name string, wait bool) (*Lock, error) {
	if err := validLockName(name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	closed := m.close
	m.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("cxkv: lock %q: process monitor closed", name)
	}
	start := m.c.cfg.Clock.Now()
	var (
		l   *Lock
		err error
	)
	if m.opts.Mode == PlainLock {
		l, err = m.acquirePlain(ctx, name, wait)
	} else {
		l, err = m.acquireQueued(ctx, name, wait)
	}
	if err != nil {
		return nil, err
	}
	l.waited = m.c.cfg.Clock.Since(start)
	l.watchKey()
	m.mu.Lock()
	m.held[l] = struct{}{}
	m.mu.Unlock()
	return l, nil
}

func (m *ProcessMonitor) forget(l *Lock) {
	m.mu.Lock()
	delete(m.held, l)
	m.mu.Unlock()
}

func (m *ProcessMonitor) newLock(name, key string) *Lock {
	now := m.c.cfg.Clock.Now()
	l := &Lock{
		m: m, name: name, key: key,
		owner: Owner{ID: randomID(), Name: m.opts.Name, Host: m.host, PID: os.Getpid()},
		lost:  make(chan struct{}), stopc: make(chan struct{}), renewDone: make(chan struct{}),
	}
	if m.opts.Mode == QueueLock {
		l.owner.QueuedAt = now
	} else {
		l.owner.AcquiredAt = now
	}
	l.value = l.owner.encode()
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// create writes the lock's entry if absent, and for a QueueLock only while
// no PlainLock holds the name. It returns the entry's record, or on a failed
// compare the record that failed it (the current holder's, for a
// PlainLock; Index 0 if the entry was absent and the name was not).
//
// An attempt whose outcome is unknown may apply later, even after a retry
// under a new write id, so every answer is judged by the value: an entry
// holding this acquisition's owner is ours, whichever attempt wrote it. The
// lease counts from the first attempt's sending, the earliest any of them
// can have set the TTL.
func (l *Lock) create(ctx context.Context) (rec Record, ok bool, err error) {
	compares := []Compare{Absent(l.key)}
	if l.key != l.name {
		compares = append(compares, Absent(l.name))
	}
	first := l.m.c.cfg.Clock.Now()
	for {
		res, err := l.m.c.Txn(ctx, compares, []Op{PutOp(l.key, l.value, l.m.opts.TTL)})
		if errors.Is(err, ErrOutcomeUnknown) && ctx.Err() == nil {
			got, gerr := l.m.c.Get(ctx, l.key)
			if gerr != nil {
				return Record{}, false, err
			}
			if !got.Exists() {
				continue // not applied yet: try again; the answer tells
			}
			res = TxnResult{Compared: []Record{got}}
			if bytes.Equal(got.Value, l.value) {
				res = TxnResult{Successful: true, Results: []Record{got}}
			}
		} else if err != nil {
			return Record{}, false, err
		}
		switch {
		case res.Successful:
			rec, ok = res.Results[0], true
		case bytes.Equal(res.Compared[0].Value, l.value):
			rec, ok = res.Compared[0], true // an earlier attempt applied
		case res.Compared[0].Exists():
			return res.Compared[0], false, nil
		default:
			return Record{}, false, l.modeMismatch(res.Compared[1])
		}
		l.index = rec.Index
		l.extendLease(first.Add(l.m.opts.TTL))
		return rec, true, nil
	}
}

// modeMismatch is the error for a name held by a lock of the other mode:
// holder is the other mode's key.
func (l *Lock) modeMismatch(holder Record) error {
	other, what := PlainLock, "a PlainLock"
	if l.m.opts.Mode == PlainLock {
		other, what = QueueLock, "a QueueLock queue"
	}
	if _, isOwner := decodeOwner(holder.Value); !isOwner && other == PlainLock {
		return fmt.Errorf("%w: key %q exists and is not a lock: a lock's name must not be a key of its own", ErrLockModeMismatch, l.name)
	}
	return fmt.Errorf("%w: %q is in use as %s (a %s lock), and this monitor takes %s locks", ErrLockModeMismatch, l.name, what, other, l.m.opts.Mode)
}

// abandon gives up an entry that never became (or no longer is) the lock:
// renewal stops and the entry is deleted if it is still ours.
func (l *Lock) abandon() {
	l.mu.Lock()
	l.unlocked = true
	l.mu.Unlock()
	l.cancel()
	l.stopRenewal()
	l.stopLease()
	ctx, cancel := context.WithTimeout(context.Background(), l.m.c.cfg.RequestTimeout)
	defer cancel()
	if l.index != 0 {
		l.m.c.Txn(ctx, []Compare{l.held()}, []Op{DeleteOp(l.key)})
	}
}

// acquirePlain races for the key name itself. Once it holds the key it
// checks that no QueueLock queue of the name exists: a queue entry is
// created only while the key is absent, so of a PlainLock and a queue that
// overlap, the later one always sees the earlier and gives way.
func (m *ProcessMonitor) acquirePlain(ctx context.Context, name string, wait bool) (*Lock, error) {
	breaks := 0
	for {
		l := m.newLock(name, name)
		rec, ok, err := l.create(ctx)
		if err != nil {
			return nil, fmt.Errorf("cxkv: lock %q: %w", name, err)
		}
		if ok {
			queue, _, err := m.c.ListPage(ctx, name+queueInfix, "", 1)
			if err == nil && len(queue) > 0 {
				err = l.modeMismatch(queue[0])
			}
			if err != nil {
				l.abandon()
				return nil, fmt.Errorf("cxkv: lock %q: %w", name, err)
			}
			l.token = rec.Index
			l.startRenewal()
			return l, nil
		}
		l.abandon()
		if !wait {
			return nil, lockedError(name, rec)
		}
		// Wait for the holder's key to go (or a TTL, as a safety net, or
		// the watch to fail), then race for it again.
		if err := pauseAfterBreaks(ctx, m.c, breaks, m.opts.TTL); err != nil {
			return nil, fmt.Errorf("cxkv: lock %q: %w", name, err)
		}
		_, broke, err := waitGone(ctx, m.c, name, rec.Index, m.opts.TTL)
		if err != nil {
			return nil, fmt.Errorf("cxkv: lock %q: %w", name, err)
		}
		breaks = nextBreaks(breaks, broke)
	}
}

func lockedError(name string, holder Record) error {
	if o, ok := decodeOwner(holder.Value); ok {
		return fmt.Errorf("%w: %q is held by %s (owner %s)", ErrLocked, name, o.Name, o.ID)
	}
	return fmt.Errorf("%w: %q", ErrLocked, name)
}
