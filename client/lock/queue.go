package lock

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/cxkv/cxkv/client"
)

// errRequeue says a waiter's entry vanished (its session ended, or an
// operator deleted it): the waiter must queue again, at the back.
var errRequeue = errors.New("cxkv: queue entry vanished")

// acquireQueued takes a place in the lock's queue and waits for its turn.
// The queue is the set of entries under name+queueInfix; each waiter's
// entry is created with put-if-absent, so create indexes order the queue,
// and the entry with the lowest one holds the lock. Its create index is
// the fencing token: successive holders hold in create-index order. The
// write that creates the entry also answers the queue's head, so an
// uncontended acquisition is that one write.
func (m *ProcessMonitor) acquireQueued(ctx context.Context, name string, wait bool) (*Lock, error) {
	for {
		l, err := m.newLock(ctx, name, name+queueInfix+queueEntryID(m.cfg.Clock.Now()))
		if err != nil {
			return nil, err
		}
		rec, head, ok, err := l.create(ctx)
		switch {
		case errors.Is(err, errSessionGone):
			l.abandon()
			continue
		case err != nil:
			l.abandon()
			return nil, err
		case !ok:
			l.abandon()
			continue // an id collided: draw another
		}
		l.token = rec.CreateIndex
		switch {
		case head.Key == l.key:
			return l, nil
		case head.Exists() && !wait:
			l.abandon()
			return nil, lockedError(name, head)
		}
		err = l.waitTurn(ctx, wait)
		if err == nil && l.lostErr() != nil {
			err = errRequeue // the session ended while we waited
		}
		if err == nil {
			return l, nil
		}
		l.abandon()
		if !errors.Is(err, errRequeue) {
			return nil, err
		}
	}
}

// waitTurn returns nil once no entry created before l's remains.
//
// It reads the queue, finds the entry just before its own (its
// predecessor), and watches only that key until it is deleted or expires.
// The predecessor may have been a waiter that gave up, not the holder, so
// the waiter must then learn the queue's head: the watch asks the member to
// send it with the event (client.WatchHead), and only when that head is
// another entry (or the member is too old to send it) does the waiter read
// the queue again. So each release wakes exactly one waiter (no herd, and
// one watch event per release instead of one per waiter), as etcd's Mutex
// and ZooKeeper's lock recipe do, and the woken waiter needs no read after
// the event before it holds the lock.
//
// The head the event carries is read by the member after it applied the
// deletion, so it says what a read after the event would: our entry is the
// head exactly when it still exists and no entry created before it does.
//
// A read must reflect at least our own entry and the deletion that woke us:
// an entry, once deleted, is never written again (renewals compare its
// owner value, which needs the key to exist), so such a read never shows an
// earlier entry as gone before it is.
// A wait that sees no deletion within a TTL reads again: a safety net that
// bounds the wait if a watch ever missed one. A watch that fails (its
// history was compacted, or its stream broke for good) reads again at once:
// what it would have reported is in the queue read. Watches that fail one
// after another are paced (pauseAfterBreaks), so a member that refuses every
// watch is not asked in a tight loop.
func (l *Lock) waitTurn(ctx context.Context, wait bool) error {
	c := l.m.c
	atLeast := l.token
	breaks := 0
	for {
		queue, applied, err := l.readQueue(ctx, atLeast)
		if err != nil {
			return err
		}
		var pred, head client.Record
		mine := false
		for _, r := range queue {
			if r.Key == l.key {
				mine = true
				continue
			}
			if r.CreateIndex < l.token {
				if r.CreateIndex > pred.CreateIndex {
					pred = r
				}
				if head.Key == "" || r.CreateIndex < head.CreateIndex {
					head = r
				}
			}
		}
		switch {
		case !mine:
			return errRequeue
		case pred.Key == "":
			return nil
		case !wait:
			return lockedError(l.name, head)
		}
		if err := pauseAfterBreaks(ctx, c, breaks, l.m.opts.TTL); err != nil {
			return err
		}
		gone, first, broke, err := waitGone(ctx, c, pred.Key, applied, l.m.opts.TTL, client.WatchHead(l.name+queueInfix))
		if err != nil {
			return err
		}
		switch {
		case first == nil: // not told (an older member, or no room): read the queue
		case first.Key == l.key && first.CreateIndex == l.token:
			return nil
		case !first.Exists():
			return errRequeue // the queue is empty: our entry is gone too
		}
		breaks = nextBreaks(breaks, broke)
		atLeast = max(atLeast, gone)
	}
}

// queuePageSize is the page readQueue asks for: a queue of up to that many
// waiters is one read.
const queuePageSize = 1000

// readQueue reads every entry of l's queue, and the applied index of the
// member that answered, which has applied at least index atLeast.
func (l *Lock) readQueue(ctx context.Context, atLeast uint64) (queue []client.Record, applied uint64, err error) {
	prefix := l.name + queueInfix
	after := ""
	for {
		// A member that has applied atLeast answers as well from its local
		// state as a linearizable read would, without a ReadIndex round; a
		// member that lags is asked again linearizably.
		page, err := l.m.c.ListPage(ctx, prefix, after, queuePageSize, client.Serializable())
		if err == nil && page.Applied < atLeast {
			page, err = l.m.c.ListPage(ctx, prefix, after, queuePageSize)
		}
		if err != nil {
			return nil, 0, err
		}
		if applied == 0 {
			applied = page.Applied
		}
		queue = append(queue, page.Records...)
		if !page.More || len(page.Records) == 0 {
			return queue, applied, nil
		}
		after = page.Records[len(page.Records)-1].Key
	}
}

// waitGone waits until key is deleted or expires after index, and returns
// the index of the deletion, and the event's Head (nil unless opts asked
// for it and the member sent it); or 0 after a wait of limit with neither,
// or with broke set when the watch failed: either way the caller reads
// again. Only ctx's end and a closed Client are errors. The limit is
// jittered (±25%) so that waiters that fell back to reading again do not
// do it in step.
func waitGone(ctx context.Context, c *client.Client, key string, index uint64, limit time.Duration, opts ...client.WatchOption) (gone uint64, head *client.Record, broke bool, err error) {
	limit = limit*3/4 + rand.N(limit/2+1)
	wctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for ev, err := range c.Watch(wctx, key, index, opts...) {
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return 0, nil, false, ctx.Err()
			case errors.Is(err, client.ErrClosed):
				return 0, nil, false, err
			case wctx.Err() != nil:
				return 0, nil, false, nil // the safety net: read again
			}
			return 0, nil, true, nil // compacted or broken: read again
		}
		if ev.Record.Key == key && ev.Type != client.EventPut {
			return ev.Record.Index, ev.Head, false, nil
		}
	}
	return 0, nil, false, ctx.Err()
}

// watchPauseBase is the first pause between failing watches.
const watchPauseBase = 20 * time.Millisecond

// pauseAfterBreaks waits before the next watch when the last breaks
// watches in a row failed: 20 ms after the second, doubling up to TTL/3.
func pauseAfterBreaks(ctx context.Context, c *client.Client, breaks int, ttl time.Duration) error {
	if breaks < 2 {
		return nil // the first failure reads again at once
	}
	t := c.Config().Clock.NewTimer(min(watchPauseBase<<min(breaks-2, 16), ttl/3))
	defer t.Stop()
	select {
	case <-t.Chan():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func nextBreaks(breaks int, broke bool) int {
	if broke {
		return breaks + 1
	}
	return 0
}
