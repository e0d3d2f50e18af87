package lock

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/client"
)

// Lock is a held lock. It stays held while its monitor's session lives and
// nobody deletes its key; Lost says when it no longer is. Release it with
// Unlock, typically deferred.
type Lock struct {
	m      *ProcessMonitor
	s      *lockSession // the session its key is attached to
	name   string
	key    string
	owner  Owner
	value  []byte // owner, encoded: what the key holds for as long as it is ours
	token  uint64
	index  uint64 // the key's index when it was created: the watch starts there
	waited time.Duration
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards unlocked, settled, stopWatch and watchDone. It is never
	// held across a network call: a write stuck in its retries must delay
	// neither the session's renewals nor its lease timer.
	mu       sync.Mutex
	unlocked bool
	// settled: Unlock has nothing left to delete (it deleted the key, or
	// found it gone or not ours, or the lock had been lost). Until then a
	// key Unlock failed to delete lives on with the session, so each
	// Unlock tries again.
	settled bool

	lost       chan struct{}
	lostOnce   sync.Once
	lostReason string // set before lost closes

	watchOnce sync.Once
	stopWatch func()
	watchDone chan struct{}
}

// Name is the lock's name.
func (l *Lock) Name() string { return l.name }

// Key is the key whose existence is the lock: the name itself (Plain)
// or the holder's queue entry (Queue).
func (l *Lock) Key() string { return l.key }

// Token is the fencing token: a number larger than that of every earlier
// holder of this lock. Pass it to the resources the lock protects and have
// them refuse a token smaller than one they have seen.
func (l *Lock) Token() uint64 { return l.token }

// Waited is how long Lock waited for the lock.
func (l *Lock) Waited() time.Duration { return l.waited }

// Lost is closed when the lock is lost: its key was deleted (an operator
// force-released it) or the monitor's session ended (a renewal found it
// expired or closed, or renewals failed until the lease ran out: a timer
// closes Lost then, at the lease end, before the cluster can give the lock
// to anyone else). It is not closed by Unlock.
//
// The first call to Lost or Context starts a watch of the lock's key from
// its creation, which closes Lost at once on a force-release, even one
// before the call. A lock nobody asks holds no watch stream: a process
// holding many locks costs the cluster no stream per lock (every member
// wakes every watch stream on every write). Its guarded writes and Unlock
// find a force-release all the same: the cluster's compare fails.
func (l *Lock) Lost() <-chan struct{} {
	l.watchKey()
	return l.lost
}

// Err returns an error matching ErrLost, with the reason, if the lock is
// known lost to this process now, else nil. Unlike Lost it starts no
// watch, so it costs nothing to ask of many locks: a session that ended
// (its lease ran out, or a renewal found it closed or expired) shows at
// once; a force-release only once Lost or Context has started the watch,
// or a guarded write or Unlock was refused.
func (l *Lock) Err() error { return l.lostErr() }

// Context is cancelled when the lock is lost or released: run the critical
// section under it to stop work the lock no longer protects. Like Lost, it
// starts the watch that notices a force-release at once.
func (l *Lock) Context() context.Context {
	l.watchKey()
	return l.ctx
}

// watchKey starts, once, the watch that follows the lock's key until it is
// released, unless it was released already.
func (l *Lock) watchKey() {
	l.watchOnce.Do(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.unlocked {
			return
		}
		ctx, cancel := context.WithCancel(l.ctx)
		l.stopWatch = cancel
		l.watchDone = make(chan struct{})
		go l.watch(ctx, l.watchDone)
	})
}

// watch marks the lock lost when its key is deleted or expires after its
// creation. A watch whose history was compacted reads the key instead and
// watches on from that read; any other failure ends the watch, and the
// session's renewals and lease timer remain the check.
func (l *Lock) watch(ctx context.Context, done chan struct{}) {
	defer close(done)
	from := l.index
	for {
		compacted := false
		for ev, err := range l.m.c.Watch(ctx, l.key, from) {
			if err != nil {
				compacted = errors.Is(err, client.ErrCompacted)
				break
			}
			if ev.Record.Key == l.key && ev.Type != client.EventPut {
				l.markLost(fmt.Sprintf("the key was %sd at index %d", ev.Type, ev.Record.Index))
				return
			}
		}
		if !compacted {
			return
		}
		page, err := l.m.c.ListPage(ctx, l.key, "", 1)
		if err != nil {
			return
		}
		if len(page.Records) == 0 || page.Records[0].Key != l.key || !bytes.Equal(page.Records[0].Value, l.value) {
			l.markLost("the key was deleted (found gone after the watch's history was compacted)")
			return
		}
		from = page.Applied
	}
}

// stopWatching stops the watch, if one started, and waits for it to end.
func (l *Lock) stopWatching() {
	l.mu.Lock()
	stop, done := l.stopWatch, l.watchDone
	l.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

func (l *Lock) markLost(reason string) {
	l.lostOnce.Do(func() {
		l.lostReason = reason
		// Cancel first: whoever sees Lost closed must find the context ended.
		l.cancel()
		close(l.lost)
	})
}

// held is the compare every write through the lock carries: the key still
// holds this acquisition's owner. Nothing rewrites the value while the key
// lives, so the compare holds exactly as long as the key is ours.
func (l *Lock) held() client.Compare { return client.ValueIs(l.key, l.value) }

// IsOwner is the compare that holds while this acquisition still owns the
// lock (as etcd's concurrency.Mutex.IsOwner): a write that must happen
// under several locks carries the others' IsOwner in the Txn of one of
// them, so it is refused if any was lost, even before its holder learns
// of the loss. A Txn through a lock carries that lock's own already.
func (l *Lock) IsOwner() client.Compare { return l.held() }

func (l *Lock) lostErr() error {
	select {
	case <-l.lost:
		return fmt.Errorf("%w: %q: %s", ErrLost, l.name, l.lostReason)
	default:
		return nil
	}
}

// Unlock releases the lock. If the lock had been lost, it deletes nothing and
// returns an error matching ErrLost. If it returns another error, the key
// may still be there, held by the monitor's live session: call Unlock again
// (each call tries the deletion again), or close the monitor. Once Unlock
// has returned nil, calling it again returns nil.
func (l *Lock) Unlock() error {
	ctx, cancel := context.WithTimeout(context.Background(), l.m.cfg.RequestTimeout)
	defer cancel()
	return l.UnlockContext(ctx)
}

// release ends the lock in this process (no watch, not the monitor's, not
// attached to the session's bookkeeping) without deleting its key: Unlock
// deletes it next, ProcessMonitor.Close deletes the whole session. Only
// the first call does that; every call reports whether the key still needs
// deleting (again: an earlier call's deletion failed, and may have
// applied), and the first one the loss error if the lock had been lost.
func (l *Lock) release() (deleteKey, again bool, err error) {
	l.mu.Lock()
	if l.unlocked {
		defer l.mu.Unlock()
		return !l.settled, !l.settled, nil
	}
	l.unlocked = true
	l.mu.Unlock()
	l.cancel()
	l.stopWatching() // before the key's deletion, which it would take for a loss
	l.m.forget(l)
	l.s.detach(l)
	if err := l.lostErr(); err != nil {
		l.settle()
		return false, false, err
	}
	return true, false, nil
}

func (l *Lock) settle() {
	l.mu.Lock()
	l.settled = true
	l.mu.Unlock()
}

// UnlockContext is Unlock under ctx.
func (l *Lock) UnlockContext(ctx context.Context) error {
	deleteKey, again, err := l.release()
	if !deleteKey || err != nil {
		return err
	}
	res, err := l.m.c.Txn(ctx, []client.Compare{l.held()}, []client.Op{client.DeleteOp(l.key)})
	if errors.Is(err, client.ErrOutcomeUnknown) {
		if rec, gerr := l.m.c.Get(ctx, l.key); gerr == nil && !bytes.Equal(rec.Value, l.value) {
			l.settle()
			return nil // our delete applied, or the lock was gone anyway
		}
	}
	if err != nil {
		return fmt.Errorf("cxkv: unlock %q: %w", l.name, err)
	}
	l.settle()
	if !res.Successful && !again {
		l.markLost("the key was deleted or rewritten by someone else")
		return l.lostErr()
	}
	// Deleted now; or, after a failed call, by that call's delete or
	// anyone else's: either way the lock is not held.
	return nil
}

// Put writes key (whatever its index) only if this lock is still held, in
// one transaction with that check. It returns the key as written, or an
// error matching ErrLost.
func (l *Lock) Put(ctx context.Context, key string, value []byte, opts ...client.PutOption) (client.Record, error) {
	var req cxkvpb.PutRequest
	for _, f := range opts {
		f(&req)
	}
	res, err := l.Txn(ctx, nil, []client.Op{client.PutOp(key, value, time.Duration(req.TtlMs)*time.Millisecond)})
	if err != nil {
		return client.Record{}, err
	}
	return res.Results[0], nil
}

// Delete deletes key if its index is expect and this lock is still held.
// A failed compare on key is Successful false, as for client.Client.Delete;
// a lost lock is an error matching ErrLost.
func (l *Lock) Delete(ctx context.Context, key string, expect uint64) (client.DeleteResult, error) {
	res, err := l.Txn(ctx, []client.Compare{client.IndexIs(key, expect)}, []client.Op{client.DeleteOp(key)})
	if err != nil {
		return client.DeleteResult{}, err
	}
	out := client.DeleteResult{Successful: res.Successful, Record: res.Compared[0]}
	if res.Successful {
		out.Index = res.Index
	}
	return out, nil
}

// Txn runs a transaction that also requires this lock to be still held.
// If the lock is not, nothing applies and the error matches ErrLost;
// otherwise the result is as client.Client.Txn's for the caller's compares.
//
// It holds no lock while it runs: a write that retries for long delays
// neither the session's renewals nor Lost. The cluster's compare, not this
// process's belief, decides whether it applies.
func (l *Lock) Txn(ctx context.Context, compares []client.Compare, ops []client.Op) (client.TxnResult, error) {
	l.mu.Lock()
	unlocked := l.unlocked
	l.mu.Unlock()
	if unlocked {
		return client.TxnResult{}, fmt.Errorf("%w: %q was unlocked", ErrLost, l.name)
	}
	if err := l.lostErr(); err != nil {
		return client.TxnResult{}, err
	}
	all := append([]client.Compare{l.held()}, compares...)
	res, err := l.m.c.Txn(ctx, all, ops)
	if err != nil {
		return client.TxnResult{}, err
	}
	if !res.Successful && res.FailedCompare == 0 {
		l.markLost("the lock's key was deleted or rewritten by someone else")
		return client.TxnResult{}, l.lostErr()
	}
	res.Compared = res.Compared[1:]
	if !res.Successful {
		res.FailedCompare--
	}
	return res, nil
}
