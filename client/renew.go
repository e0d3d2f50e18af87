package client

import (
	"context"
	"time"
)

// The lease. A holder counts its lease from the moment it *sent* the write
// that set the TTL, on its own monotonic clock; the cluster counts from when
// it applied that write (later), and a new leader counts a full TTL from its
// takeover (later still). So the holder always believes the lock is gone no
// later than the cluster deletes it, whatever the clocks' absolute values;
// only their rates must agree. The lease end is enforced by a timer
// (Lock.extendLease), not by whichever renewal or write happens to look.

// startRenewal starts the renewal loop. Only the goroutine that acquires
// the lock calls it, before it hands the lock to anyone.
func (l *Lock) startRenewal() {
	l.renewing = true
	go l.renewLoop()
}

func (l *Lock) stopRenewal() {
	l.stopOnce.Do(func() { close(l.stopc) })
	if l.renewing {
		<-l.renewDone
	}
}

// renewLoop rewrites the key every TTL/3, if it still holds this
// acquisition's owner. A failed compare means someone else removed or
// rewrote the key: the lock is lost at once. Errors are retried sooner, until
// the lease timer ends the lock.
func (l *Lock) renewLoop() {
	defer close(l.renewDone)
	ttl := l.m.opts.TTL
	interval := ttl / 3
	clock := l.m.c.cfg.Clock
	timer := clock.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-l.stopc:
			return
		case <-l.m.c.ctx.Done():
			return // the client is closed: nothing can renew
		case <-timer.Chan():
		}
		ok, retry := l.renewOnce(ttl)
		if !ok {
			return
		}
		if retry {
			timer.Reset(min(interval/4, max(l.leaseLeft()/2, 10*time.Millisecond)))
		} else {
			timer.Reset(interval)
		}
	}
}

// renewOnce makes one renewal. It returns ok false once the lock is lost,
// and retry true when the renewal should be tried again soon.
//
// A renewal compares the owner value, which no renewal changes, so one whose
// outcome is unknown needs no reading back: if it applies late, the next
// renewal's compare holds all the same. Only a renewal known to have applied
// extends the lease, from the moment it was sent.
func (l *Lock) renewOnce(ttl time.Duration) (ok, retry bool) {
	left := l.leaseLeft()
	if left <= 0 {
		l.markLost("the lease ran out before a renewal succeeded")
		return false, false
	}
	// The renewal may not outlive the lease (past it, the cluster may have
	// handed the lock to someone else), nor the lock.
	ctx, cancel := context.WithTimeout(l.ctx, left)
	defer cancel()
	stop := context.AfterFunc(l.m.c.ctx, cancel)
	defer stop()
	sent := l.m.c.cfg.Clock.Now()
	res, err := l.m.c.Txn(ctx, []Compare{l.held()}, []Op{PutOp(l.key, l.value, ttl)})
	if err != nil {
		return true, true
	}
	if !res.Successful {
		l.markLost("the key was deleted or rewritten by someone else")
		return false, false
	}
	l.extendLease(sent.Add(ttl))
	return true, false
}
