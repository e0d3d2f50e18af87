package lock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cxkv/cxkv/client"
)

// Mode chooses how waiters wait.
type Mode int

const (
	// Queue, the default, queues waiters in arrival order: each waiter
	// creates its own entry under "<name>/.lock/", the entry with the lowest
	// create index holds the lock, and a release wakes exactly the next
	// waiter (the recipe of ZooKeeper's lock and etcd's Mutex). No waiter
	// starves, and a release costs one write, not one per waiter.
	Queue Mode = iota
	// Plain is put-if-absent on "<name>" itself. Waiters watch the key
	// and race to create it on every release: simplest, but unfair under
	// contention.
	Plain
)

func (m Mode) String() string {
	if m == Plain {
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
	// ErrLost is returned by a lock's guarded writes and Unlock once the
	// lock is no longer held: it expired, its renewals failed, or an
	// operator force-released it.
	ErrLost = errors.New("cxkv: lock lost")
	// ErrNotLocked is returned by ForceRelease when nobody holds the lock.
	ErrNotLocked = errors.New("cxkv: lock is not held")
	// ErrModeMismatch is returned by Lock and TryLock when the name is
	// in use as a lock of the other Mode: a Plain lock and a Queue lock
	// of one name would not exclude each other, so the second is refused.
	ErrModeMismatch = errors.New("cxkv: lock name in use in the other lock mode")
)

// Options configure a ProcessMonitor.
type Options struct {
	// TTL is how long the monitor's locks outlive its last renewal: the
	// time after which a crashed process's locks are released. The monitor
	// renews its one session every TTL/3, whatever the number of locks.
	// Default 10s; at least 100ms.
	TTL time.Duration
	// Mode is how waiters wait; Queue by default.
	Mode Mode
	// Name identifies this process in `cxkv locks`; default "host:pid".
	Name string
}

// ProcessMonitor hands out expiring locks for one process. It opens one
// session (a lease, client/session.go) on its first acquisition and attaches every
// lock key and queue entry to it: one renewal write every TTL/3 keeps all of
// them, and if the process dies they all go when the session expires. Locks
// it still holds when Close is called are released.
type ProcessMonitor struct {
	c    *client.Client
	cfg  client.Config // c's: its clock times leases, its request timeout releases
	opts Options
	host string
	pid  int

	mu      sync.Mutex // never held across a network call
	held    map[*Lock]struct{}
	close   bool
	sess    *lockSession  // the live session, nil if none
	opening chan struct{} // closed when an opening under way ends
}

// NewProcessMonitor returns a ProcessMonitor taking locks through c.
func NewProcessMonitor(c *client.Client, opts Options) *ProcessMonitor {
	if opts.TTL <= 0 {
		opts.TTL = 10 * time.Second
	}
	opts.TTL = max(opts.TTL, 100*time.Millisecond)
	if opts.Name == "" {
		opts.Name = defaultOwnerName()
	}
	host, _ := os.Hostname()
	return &ProcessMonitor{c: c, cfg: c.Config(), opts: opts, host: host, pid: os.Getpid(), held: map[*Lock]struct{}{}}
}

// Close releases every lock this monitor still holds and closes its
// session, in one write: deleting the session deletes every key attached to
// it. It returns an error matching ErrLost for each lock that had been
// lost.
func (m *ProcessMonitor) Close() error {
	m.mu.Lock()
	m.close = true
	locks := make([]*Lock, 0, len(m.held))
	for l := range m.held {
		locks = append(locks, l)
	}
	s := m.sess
	m.mu.Unlock()
	var errs []error
	for _, l := range locks {
		if _, _, err := l.release(); err != nil {
			errs = append(errs, err)
		}
	}
	if s != nil {
		// The whole retry budget, not one attempt's: the session's end
		// deletes every key attached to it in one entry, which for 10,000
		// locks outlasted a 2 s RequestTimeout on a loaded machine.
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.RetryTimeout)
		defer cancel()
		if err := s.close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("cxkv: close lock session: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (m *ProcessMonitor) sessionValue() []byte {
	b, err := json.Marshal(monitorSession{Monitor: m.opts.Name, Host: m.host, PID: m.pid, OpenedAt: m.cfg.Clock.Now()})
	if err != nil {
		panic(err) // strings, an int and a time always marshal
	}
	return b
}

var errMonitorClosed = errors.New("process monitor closed")

// session returns the monitor's live session, opening one if there is none.
// One acquisition opens it; the others wait for that one.
func (m *ProcessMonitor) session(ctx context.Context) (*lockSession, error) {
	for {
		m.mu.Lock()
		if m.close {
			m.mu.Unlock()
			return nil, errMonitorClosed
		}
		if s := m.sess; s != nil {
			m.mu.Unlock()
			return s, nil
		}
		if wait := m.opening; wait != nil {
			m.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		m.opening = done
		m.mu.Unlock()
		s, err := m.openSession(ctx)
		m.mu.Lock()
		m.opening = nil
		close(done)
		closed := m.close
		if err == nil && !closed {
			m.sess = s
		}
		m.mu.Unlock()
		if err == nil && closed {
			s.close(ctx)
			return nil, errMonitorClosed
		}
		return s, err
	}
}

// sessionOver forgets s once it is over.
func (m *ProcessMonitor) sessionOver(s *lockSession) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sess == s {
		m.sess = nil
	}
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
	start := m.cfg.Clock.Now()
	var (
		l   *Lock
		err error
	)
	if m.opts.Mode == Plain {
		l, err = m.acquirePlain(ctx, name, wait)
	} else {
		l, err = m.acquireQueued(ctx, name, wait)
	}
	if err != nil {
		return nil, fmt.Errorf("cxkv: lock %q: %w", name, err)
	}
	l.waited = m.cfg.Clock.Since(start)
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

// newLock returns a lock whose key will be attached to the monitor's live
// session (opened if need be), registered with it so that the session's end
// marks it lost.
func (m *ProcessMonitor) newLock(ctx context.Context, name, key string) (*Lock, error) {
	for {
		s, err := m.session(ctx)
		if err != nil {
			return nil, err
		}
		now := m.cfg.Clock.Now()
		l := &Lock{
			m: m, s: s, name: name, key: key,
			owner: Owner{ID: randomID(), Name: m.opts.Name, Host: m.host, PID: m.pid, Session: s.id},
			lost:  make(chan struct{}),
		}
		if m.opts.Mode == Queue {
			l.owner.QueuedAt = now
		} else {
			l.owner.AcquiredAt = now
		}
		l.value = l.owner.encode()
		l.ctx, l.cancel = context.WithCancel(context.Background())
		if s.attach(l) {
			return l, nil
		}
		l.cancel() // the session ended meanwhile: take the next
	}
}

// create writes the lock's key attached to the session, if absent, and
// asks in the same write for the oldest entry of name's queue: for a
// Queue lock, whether the new entry holds the lock at once; for a
// Plain lock, whether a queue of the other mode exists. A queue entry is
// created only while NAME is absent, so of a Plain lock and a queue that
// overlap, the later always sees the earlier and gives way.
//
// It returns the key's record and the queue's head (Index 0: none, or not
// known because an earlier attempt is what applied); or, with ok false, the
// record that failed the compare (the current holder's, for a Plain lock).
func (l *Lock) create(ctx context.Context) (rec, head client.Record, ok bool, err error) {
	compares := []client.Compare{client.Absent(l.key)}
	if l.key != l.name {
		compares = append(compares, client.Absent(l.name))
	}
	put := client.PutOp(l.key, l.value, 0).InSession(l.s.id)
	res, err := createOwned(ctx, l.m.c, compares, l.key, put, l.value, client.HeadOp(l.name+queueInfix))
	if client.IsNoSession(err) {
		l.s.end("the monitor's session expired or was closed")
		return client.Record{}, client.Record{}, false, errSessionGone
	}
	if err != nil {
		return client.Record{}, client.Record{}, false, err
	}
	switch {
	case res.Successful:
		l.index = res.Results[0].Index
		if len(res.Results) > 1 {
			head = res.Results[1]
		}
		return res.Results[0], head, true, nil
	case res.Compared[0].Exists():
		return res.Compared[0], client.Record{}, false, nil
	default:
		return client.Record{}, client.Record{}, false, l.modeMismatch(res.Compared[1])
	}
}

// errSessionGone says the session a write attached to had ended: the
// acquisition starts over on a new one.
var errSessionGone = errors.New("cxkv: lock session gone")

// modeMismatch is the error for a name held by a lock of the other mode:
// holder is the other mode's key.
func (l *Lock) modeMismatch(holder client.Record) error {
	other, what := Plain, "a plain lock's key"
	if l.m.opts.Mode == Plain {
		other, what = Queue, "a lock queue"
	}
	if _, isOwner := decodeOwner(holder.Value); !isOwner && other == Plain {
		return fmt.Errorf("%w: key %q exists and is not a lock: a lock's name must not be a key of its own", ErrModeMismatch, l.name)
	}
	return fmt.Errorf("%w: %q is in use as %s (a %s lock), and this monitor takes %s locks", ErrModeMismatch, l.name, what, other, l.m.opts.Mode)
}

// abandon gives up a key that never became (or no longer is) the lock: it
// leaves the session and is deleted if it is still ours.
func (l *Lock) abandon() {
	l.mu.Lock()
	l.unlocked = true
	l.mu.Unlock()
	l.cancel()
	l.s.detach(l)
	if l.index == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.m.cfg.RequestTimeout)
	defer cancel()
	l.m.c.Txn(ctx, []client.Compare{l.held()}, []client.Op{client.DeleteOp(l.key)})
}

// acquirePlain races for the key name itself.
func (m *ProcessMonitor) acquirePlain(ctx context.Context, name string, wait bool) (*Lock, error) {
	breaks := 0
	for {
		l, err := m.newLock(ctx, name, name)
		if err != nil {
			return nil, err
		}
		rec, queue, ok, err := l.create(ctx)
		if ok && queue.Index == 0 {
			// An earlier attempt applied, so the write's own look at the
			// queue is not ours: look again.
			var page client.Page
			if page, err = m.c.ListPage(ctx, name+queueInfix, "", 1); err == nil && len(page.Records) > 0 {
				queue = page.Records[0]
			}
		}
		if err == nil && queue.Exists() {
			err = l.modeMismatch(queue)
		}
		if err != nil {
			l.abandon()
			if errors.Is(err, errSessionGone) {
				continue
			}
			return nil, err
		}
		if ok {
			l.token = rec.Index
			return l, nil
		}
		l.abandon()
		if !wait {
			return nil, lockedError(name, rec)
		}
		// Wait for the holder's key to go (or a TTL, as a safety net, or
		// the watch to fail), then race for it again.
		if err := pauseAfterBreaks(ctx, m.c, breaks, m.opts.TTL); err != nil {
			return nil, err
		}
		_, _, broke, err := waitGone(ctx, m.c, name, rec.Index, m.opts.TTL)
		if err != nil {
			return nil, err
		}
		breaks = nextBreaks(breaks, broke)
	}
}

func lockedError(name string, holder client.Record) error {
	if o, ok := decodeOwner(holder.Value); ok {
		return fmt.Errorf("%w: %q is held by %s (owner %s)", ErrLocked, name, o.Name, o.ID)
	}
	return fmt.Errorf("%w: %q", ErrLocked, name)
}
