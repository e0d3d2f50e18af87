package lock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/jonboulle/clockwork"
)

// A ProcessMonitor holds one session (client/session.go) and attaches every lock
// key and queue entry it creates to it, so one renewal write every TTL/3
// keeps all of them, whatever their number.
//
// The lease. The monitor counts the session's lease from the moment it
// *sent* the write that set the session's TTL, on its own monotonic clock;
// the cluster counts from when it applied that write (later), and a new
// leader counts a full TTL from its takeover (later still). So the monitor
// always believes the session, and with it every attached lock, gone no later
// than the cluster deletes them, whatever the clocks' absolute values; only
// their rates must agree. A timer at the lease end (lockSession.leaseTimer)
// closes every attached lock's Lost there, whatever else the process does.

// lockSession is one session of a monitor. Once over it stays over: the
// monitor opens a new one for later acquisitions.
type lockSession struct {
	m     *ProcessMonitor
	id    string
	key   string
	value []byte // the monitor's owner; never changes, renewals compare it

	// mu guards what follows. It is never held across a network call.
	mu       sync.Mutex
	leaseEnd time.Time
	timer    clockwork.Timer
	locks    map[*Lock]struct{} // attached: held and waiting
	over     bool
	reason   string

	ctx       context.Context // ends with the session: a renewal in flight stops
	cancel    context.CancelFunc
	stopc     chan struct{}
	stopOnce  sync.Once
	renewDone chan struct{}
}

// openSession creates a session with put-if-absent. Like a lock's create, an
// attempt whose outcome was unknown is judged by the value the key holds,
// and the lease counts from the first attempt's sending.
func (m *ProcessMonitor) openSession(ctx context.Context) (*lockSession, error) {
	id := client.NewSessionID()
	s := &lockSession{
		m: m, id: id, key: client.SessionKey(id), value: m.sessionValue(),
		locks: map[*Lock]struct{}{}, stopc: make(chan struct{}), renewDone: make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	first := m.cfg.Clock.Now()
	if _, err := createOwned(ctx, m.c, []client.Compare{client.Absent(s.key)}, s.key, client.PutOp(s.key, s.value, m.opts.TTL), s.value); err != nil {
		s.cancel()
		return nil, fmt.Errorf("cxkv: open lock session: %w", err)
	}
	s.extendLease(first.Add(m.opts.TTL))
	go s.renewLoop(first)
	return s, nil
}

// createOwned runs a transaction whose put creates key holding value if
// compares hold. An attempt whose outcome is unknown may apply later, even
// after a retry under a new write id, so every answer is judged by the
// value: a key holding value is ours, whichever attempt wrote it. It
// returns the transaction's result; a failed compare is not an error.
func createOwned(ctx context.Context, c *client.Client, compares []client.Compare, key string, put client.Op, value []byte, more ...client.Op) (client.TxnResult, error) {
	for {
		res, err := c.Txn(ctx, compares, append([]client.Op{put}, more...))
		if errors.Is(err, client.ErrOutcomeUnknown) && ctx.Err() == nil {
			got, gerr := c.Get(ctx, key)
			if gerr != nil {
				return client.TxnResult{}, err
			}
			if !got.Exists() {
				continue // not applied yet: try again; the answer tells
			}
			if bytes.Equal(got.Value, value) {
				return client.TxnResult{Successful: true, Results: []client.Record{got}}, nil
			}
			return client.TxnResult{FailedCompare: 0, Compared: []client.Record{got}}, nil
		}
		if err != nil {
			return client.TxnResult{}, err
		}
		if !res.Successful && bytes.Equal(res.Compared[0].Value, value) {
			// An earlier attempt applied.
			return client.TxnResult{Successful: true, Results: []client.Record{res.Compared[0]}}, nil
		}
		return res, nil
	}
}

// attach registers l with the session; false if the session is over.
func (s *lockSession) attach(l *Lock) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.over {
		return false
	}
	s.locks[l] = struct{}{}
	return true
}

func (s *lockSession) detach(l *Lock) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.locks, l)
}

// extendLease moves the lease end to end, if later, and arms the timer
// that ends the session there. The caller sent the write that set the
// session's TTL at end minus the TTL.
func (s *lockSession) extendLease(end time.Time) {
	clock := s.m.cfg.Clock
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.over || !end.After(s.leaseEnd) {
		return
	}
	s.leaseEnd = end
	if s.timer == nil {
		s.timer = clock.AfterFunc(clock.Until(end), s.leaseExpired)
	} else {
		s.timer.Reset(clock.Until(end))
	}
}

func (s *lockSession) leaseExpired() {
	s.mu.Lock()
	if left := s.m.cfg.Clock.Until(s.leaseEnd); left > 0 && !s.over {
		s.timer.Reset(left) // a renewal raced the timer
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.end("the monitor's session lease ran out before a renewal succeeded")
}

func (s *lockSession) leaseLeft() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.cfg.Clock.Until(s.leaseEnd)
}

// end marks the session over and every lock attached to it lost. It does
// not wait for the renewal loop (it may be running on it).
func (s *lockSession) end(reason string) {
	s.mu.Lock()
	if s.over {
		s.mu.Unlock()
		return
	}
	s.over, s.reason = true, reason
	if s.timer != nil {
		s.timer.Stop()
	}
	locks := s.locks
	s.locks = nil
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stopc) })
	s.cancel()
	s.m.sessionOver(s)
	for l := range locks {
		l.markLost(reason)
	}
}

// close ends the session on purpose: renewals stop and its key is deleted,
// which deletes whatever is still attached.
func (s *lockSession) close(ctx context.Context) error {
	s.end("the process monitor was closed")
	<-s.renewDone
	_, err := s.m.c.Txn(ctx, []client.Compare{client.ValueIs(s.key, s.value)}, []client.Op{client.DeleteOp(s.key)})
	return err
}

// renewLoop rewrites the session's key if it still holds the monitor's
// owner. A failed compare means the session expired or was closed: it is
// over at once. Errors are retried sooner, until the lease timer ends the
// session.
//
// The schedule counts from sends, as the lease does: a renewal is due TTL/3
// after the previous one was sent, and a retry at most TTL/12 after the
// failed attempt was sent; either goes at once if its moment passed while
// the answer was awaited. So every renewal leaves with 2·TTL/3 of the lease
// ahead of it (TTL minus the previous answer's latency, past TTL/3), never
// less by the time earlier answers took. opened is when the session's open
// was sent.
func (s *lockSession) renewLoop(opened time.Time) {
	defer close(s.renewDone)
	ttl := s.m.opts.TTL
	interval := ttl / 3
	clock := s.m.cfg.Clock
	timer := clock.NewTimer(clock.Until(opened.Add(interval)))
	defer timer.Stop()
	for {
		select {
		case <-s.stopc:
			return
		case <-s.m.c.Ctx().Done():
			return // the client is closed: nothing can renew
		case <-timer.Chan():
		}
		sent := clock.Now()
		ok, retry := s.renewOnce(sent, ttl)
		if !ok {
			return
		}
		next := sent.Add(interval)
		if retry {
			next = sent.Add(min(interval/4, max(s.leaseLeft()/2, 10*time.Millisecond)))
		}
		timer.Reset(clock.Until(next))
	}
}

// minRenewAttempt keeps very short TTLs from cutting every renewal attempt
// before a loaded member can answer it.
const minRenewAttempt = 200 * time.Millisecond

// renewOnce makes one renewal, sent at sent. It returns ok false once the
// session is over, and retry true when the renewal should be tried again
// soon.
//
// A renewal compares the owner value, which no renewal changes, so one
// whose outcome is unknown needs no reading back: if it applies late, the
// next renewal's compare holds all the same. Only a renewal known to have
// applied extends the lease, from the moment it was sent.
func (s *lockSession) renewOnce(sent time.Time, ttl time.Duration) (ok, retry bool) {
	left := s.leaseLeft()
	if left <= 0 {
		s.end("the monitor's session lease ran out before a renewal succeeded")
		return false, false
	}
	// The renewal may not outlive the lease (past it, the cluster may have
	// handed the locks to someone else), nor the session.
	ctx, cancel := context.WithTimeout(s.ctx, left)
	defer cancel()
	stop := context.AfterFunc(s.m.c.Ctx(), cancel)
	defer stop()
	// A leader that stopped (paused, partitioned) must not hold the renewal
	// for a whole RequestTimeout, which may exceed the lease: an attempt on
	// a member that shows no progress for half a renewal interval is left
	// for the next member (or the leader it names). A leader that keeps
	// applying is waited for, however long its queue: cut and sent again,
	// the renewal would only join the back of the same queue.
	ctx = client.WithAttemptTimeout(ctx, max(ttl/6, minRenewAttempt))
	res, err := s.m.c.Txn(ctx, []client.Compare{client.ValueIs(s.key, s.value)}, []client.Op{client.PutOp(s.key, s.value, ttl)})
	if err != nil {
		return true, true
	}
	if !res.Successful {
		s.end("the monitor's session was closed or expired")
		return false, false
	}
	s.extendLease(sent.Add(ttl))
	return true, false
}
