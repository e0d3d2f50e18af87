package client

import (
	"bytes"
	"context"
	"time"
)

// The lease. A holder counts its lease from the moment it *sent* the write
// that set the TTL, on its own monotonic clock; the cluster counts from when
// it applied that write (later), and a new leader counts a full TTL from its
// takeover (later still). So the holder always believes the lock is gone no
// later than the cluster deletes it, whatever the clocks' absolute values;
// only their rates must agree.

func (l *Lock) startRenewal() {
	l.stopc = make(chan struct{})
	l.renewDone = make(chan struct{})
	go l.renewLoop()
}

func (l *Lock) stopRenewal() {
	if l.stopc == nil {
		return
	}
	l.stopOnce.Do(func() { close(l.stopc) })
	<-l.renewDone
}

// renewLoop rewrites the key every TTL/3 with put-if-index on the index it
// holds. A failed compare means someone else removed or rewrote the key: the
// lock is lost at once. Errors are retried until the lease runs out.
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
			timer.Reset(min(interval/4, max(clock.Until(l.leaseEnd)/2, 10*time.Millisecond)))
		} else {
			timer.Reset(interval)
		}
	}
}

// renewOnce makes one renewal. It returns ok false once the lock is lost,
// and retry true when the renewal should be tried again soon.
func (l *Lock) renewOnce(ttl time.Duration) (ok, retry bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	clock := l.m.c.cfg.Clock
	if clock.Now().After(l.leaseEnd) {
		l.markLost("the lease ran out before a renewal succeeded")
		return false, false
	}
	// The renewal may not outlive the lease: past it, the cluster may have
	// handed the lock to someone else.
	ctx, cancel := context.WithTimeout(l.m.c.ctx, clock.Until(l.leaseEnd))
	defer cancel()
	sent := clock.Now()
	owner := l.owner
	owner.ExpiresAt = sent.Add(ttl).Round(time.Millisecond)
	value := owner.encode()
	res, err := l.m.c.Put(ctx, l.key, value, l.index, WithTTL(ttl))
	if err != nil {
		// Settle an unknown outcome by reading back: our value means the
		// renewal applied.
		rec, gerr := l.m.c.Get(ctx, l.key)
		switch {
		case gerr != nil || rec.Index == l.index:
			return true, true
		case bytes.Equal(rec.Value, value):
			res, err = PutResult{Successful: true, Record: rec}, nil
		default:
			l.markLost("the key was deleted or rewritten by someone else")
			return false, false
		}
	}
	if !res.Successful {
		l.markLost("the key was deleted or rewritten by someone else")
		return false, false
	}
	l.index = res.Record.Index
	l.owner = owner
	l.leaseEnd = sent.Add(ttl)
	return true, false
}
