package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cxkv/cxkv/client/lock"
)

// The interactive scenario: one lock, a person at each terminal. ENTER asks
// for the lock (and waits in line), ENTER again releases it (or gives up
// waiting). Every terminal shows who holds the lock and who waits, as the
// store says, and warns when the holder stops renewing: a holder killed with
// kill -9 keeps the lock until its TTL runs out, then the next waiter gets it.

// InteractiveLock is the lock the interactive workers share.
const InteractiveLock = lockPrefix + "interactive/door"

func runInteractive(ctx context.Context, w *worker) error {
	out := w.cfg.Out
	fmt.Fprintf(out, "[%s] lock %q, TTL %s. ENTER: take the lock / release it. Ctrl-C: quit.\n", w.cfg.ID, InteractiveLock, w.cfg.LockTTL)
	lines := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(w.cfg.In)
		for sc.Scan() {
			select {
			case lines <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		close(lines)
	}()
	go showLock(ctx, w)

	type acquired struct {
		l   *lock.Lock
		err error
	}
	var (
		held     *lock.Lock
		lost     <-chan struct{}
		waiting  context.CancelFunc
		gotLock  = make(chan acquired, 1)
		released = func() {
			if held == nil {
				return
			}
			err := held.Unlock()
			switch {
			case errors.Is(err, lock.ErrLost):
				fmt.Fprintf(out, "[%s] released: it had already been lost\n", w.cfg.ID)
			case err != nil:
				fmt.Fprintf(out, "[%s] release failed: %v (the lock expires after its TTL)\n", w.cfg.ID, err)
			default:
				fmt.Fprintf(out, "[%s] released the lock\n", w.cfg.ID)
			}
			held, lost = nil, nil
		}
	)
	defer func() {
		if waiting != nil {
			waiting()
		}
		released()
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-lines:
			switch {
			case !ok:
				return nil
			case held != nil:
				released()
			case waiting != nil:
				waiting()
				waiting = nil
				fmt.Fprintf(out, "[%s] gave up waiting\n", w.cfg.ID)
			default:
				wctx, cancel := context.WithCancel(ctx)
				waiting = cancel
				fmt.Fprintf(out, "[%s] waiting for the lock ... (ENTER gives up)\n", w.cfg.ID)
				go func() {
					l, err := w.mon.Lock(wctx, InteractiveLock)
					gotLock <- acquired{l, err}
				}()
			}
		case a := <-gotLock:
			if waiting == nil { // gave up: the wait may still have won
				if a.err == nil {
					a.l.Unlock()
				}
				continue
			}
			waiting = nil
			if a.err != nil {
				fmt.Fprintf(out, "[%s] could not take the lock: %v\n", w.cfg.ID, a.err)
				continue
			}
			held, lost = a.l, a.l.Lost()
			fmt.Fprintf(out, "[%s] >>> YOU HOLD THE LOCK (fencing token %d, waited %s). ENTER releases it.\n",
				w.cfg.ID, a.l.Token(), a.l.Waited().Round(time.Millisecond))
		case <-lost:
			fmt.Fprintf(out, "[%s] !!! LOST THE LOCK (expired or force-released): guarded writes are refused now\n", w.cfg.ID)
			held.Unlock()
			held, lost = nil, nil
		}
	}
}

// showLock prints the lock's holder and waiters whenever they change, from
// a watch on its keys, and warns while the holder is not renewing.
func showLock(ctx context.Context, w *worker) {
	out := w.cfg.Out
	last := ""
	var holderIndex uint64
	var renewedAt time.Time
	refresh := func() {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		infos, err := lock.List(qctx, w.c, InteractiveLock)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintf(out, "[%s] cannot read the lock: %v\n", w.cfg.ID, err)
			}
			return
		}
		var info *lock.Info
		for i := range infos {
			if infos[i].Name == InteractiveLock {
				info = &infos[i]
			}
		}
		line := "lock is free"
		if info != nil {
			if info.Index != holderIndex {
				holderIndex, renewedAt = info.Index, time.Now()
			}
			line = fmt.Sprintf("held by %s (pid %d, token %d)", ownerName(info.Owner), info.Owner.PID, info.Token)
			var ws []string
			for _, o := range info.Waiters {
				ws = append(ws, ownerName(o))
			}
			if len(ws) > 0 {
				line += "; waiting: " + strings.Join(ws, ", ")
			} else {
				line += "; nobody waiting"
			}
			if stale := time.Since(renewedAt); stale > w.cfg.LockTTL/2 {
				fmt.Fprintf(out, "[%s] ... %s has not renewed for %s: crashed? The lock expires %s after its last renewal.\n",
					w.cfg.ID, ownerName(info.Owner), stale.Round(time.Second), info.TTL)
			}
		} else {
			holderIndex = 0
		}
		if line != last {
			fmt.Fprintf(out, "[%s] --- %s\n", w.cfg.ID, line)
			last = line
		}
	}
	changed := make(chan struct{}, 1)
	go func() {
		for {
			for _, err := range w.c.Watch(ctx, InteractiveLock, 0) {
				if err != nil {
					break
				}
				select {
				case changed <- struct{}{}:
				default:
				}
			}
			if ctx.Err() != nil {
				return
			}
			time.Sleep(time.Second) // the watch broke (compaction, shutdown): watch again
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		refresh()
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

func ownerName(o lock.Owner) string {
	if o.Name != "" {
		return o.Name
	}
	return fmt.Sprintf("%s:%d", o.Host, o.PID)
}
