package client

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// errRequeue says a waiter's entry vanished (it expired while the waiter
// could not renew it): the waiter must queue again, at the back.
var errRequeue = errors.New("cxkv: queue entry vanished")

// acquireQueued takes a place in the lock's queue and waits for its turn.
// The queue is the set of entries under name+queueInfix; each waiter's
// entry is created with put-if-absent, so create indexes order the queue,
// and the entry with the lowest one holds the lock. Its create index is
// the fencing token: successive holders hold in create-index order.
func (m *ProcessMonitor) acquireQueued(ctx context.Context, name string, wait bool) (*Lock, error) {
	for {
		l := m.newLock(name, name+queueInfix+randomID())
		res, err := l.create(ctx)
		if err != nil {
			return nil, fmt.Errorf("cxkv: lock %q: %w", name, err)
		}
		if !res.Successful {
			continue // a random id collided: draw another
		}
		l.token = res.Record.CreateIndex
		l.startRenewal()
		err = l.waitTurn(ctx, wait)
		if err == nil && l.lostErr() != nil {
			err = errRequeue // our lease ran out while we waited
		}
		if err == nil {
			l.mu.Lock()
			l.owner.AcquiredAt = time.Now()
			l.mu.Unlock()
			return l, nil
		}
		l.abandon()
		if !errors.Is(err, errRequeue) {
			return nil, fmt.Errorf("cxkv: lock %q: %w", name, err)
		}
	}
}

// waitTurn returns nil once no entry created before l's remains.
//
// Each round reads the queue, then follows it through a watch from the
// read's applied index. That index may precede the state the read returned;
// the replay of events the read already reflected can only make an earlier
// entry reappear for a while, never vanish early, because an entry, once
// deleted, is never written again (renewals compare its index). So "no
// earlier entry" is never concluded before it is true.
//
// A round that sees no release within a TTL starts over with a fresh read:
// a safety net that bounds the wait if the watch ever missed a release.
func (l *Lock) waitTurn(ctx context.Context, wait bool) error {
	for {
		err := l.waitRound(ctx, wait)
		if !errors.Is(err, errRoundOver) {
			return err
		}
	}
}

var errRoundOver = errors.New("cxkv: no release seen within a TTL; read the queue again")

func (l *Lock) waitRound(ctx context.Context, wait bool) error {
	c := l.m.c
	prefix := l.name + queueInfix
	queue := map[string]uint64{} // entry key → create index
	var from uint64
	after := ""
	for {
		// A member that has applied our own entry holds every entry
		// created before it, so a local (serializable) read there is as
		// good as a linearizable one and saves a ReadIndex round; a member
		// that lags is asked again linearizably.
		recs, more, applied, err := c.listPage(ctx, prefix, after, listPageSize, Serializable())
		if err == nil && applied < l.token {
			recs, more, applied, err = c.listPage(ctx, prefix, after, listPageSize)
		}
		if err != nil {
			return err
		}
		if from == 0 {
			from = applied
		}
		for _, r := range recs {
			queue[r.Key] = r.CreateIndex
		}
		if !more || len(recs) == 0 {
			break
		}
		after = recs[len(recs)-1].Key
	}
	first := func() string {
		var k string
		var min uint64
		for key, ci := range queue {
			if k == "" || ci < min {
				k, min = key, ci
			}
		}
		return k
	}
	if _, ok := queue[l.key]; !ok {
		return errRequeue
	}
	if first() == l.key {
		return nil
	}
	if !wait {
		holder, _ := c.Get(ctx, first())
		return lockedError(l.name, holder)
	}
	wctx, cancel := context.WithTimeout(ctx, l.m.opts.TTL)
	defer cancel()
	for ev, err := range c.Watch(wctx, prefix, from) {
		if err != nil {
			if ctx.Err() == nil && wctx.Err() != nil {
				return errRoundOver
			}
			return err
		}
		switch ev.Type {
		case EventPut:
			queue[ev.Record.Key] = ev.Record.CreateIndex
		default:
			if ev.Record.Key == l.key {
				return errRequeue
			}
			delete(queue, ev.Record.Key)
			if first() == l.key {
				return nil
			}
		}
	}
	return ctx.Err()
}
