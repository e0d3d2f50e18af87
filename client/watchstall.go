package client

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A watch stream stays on one member, and a member can stop applying while
// the cluster goes on: cut off from its peers but not from this client, or
// left behind by its leader. Its stream then falls silent, as an idle one
// does, and without a check the watch would deliver nothing until the
// member caught up, however long that took.
//
// What tells the two silences apart is the other members. A member that
// applies anything sends a progress notice within a tick, so a stream
// silent for WatchStallTimeout belongs to a member that applied nothing
// for that long. The check then asks it, and the others, how far they have
// applied (Status). If at the next check, another WatchStallTimeout on and
// the stream still silent, the member has not reached what another member
// had applied at the first, it was left behind: the stream is cut and the
// watch resumes from its position on another member, losing and repeating
// nothing (Watch's resume rules). A member too slow to answer the check
// within half the timeout is left the same way. On an idle cluster every
// member stands at the same index and no stream is cut.
//
// The answers are shared: every answer to Client.ask records the member's
// applied index (endpoint.seen) and when it came (endpoint.askedAt), and a
// check asks only the members not asked within half the timeout (one ask
// in flight per member), so a client with many idle watches (a lock
// queue's waiters, held locks' Lost) asks each member about twice per
// timeout, however many there are.

// minWatchStallTimeout is the shortest stall timeout: a member that applies
// sends a notice every 100ms at most, and a check asks within half the
// timeout.
const minWatchStallTimeout = 200 * time.Millisecond

// errLeftBehind ends a stream whose member was left behind; it is
// Unavailable, so Watch resumes elsewhere.
var errLeftBehind = status.Error(codes.Unavailable, "cxkv: the watch's member stopped applying while another member went on; resuming on another member")

// stallWatch checks one stream. It runs from a timer, not a goroutine of
// its own: a process holding ten thousand locks holds as many watches.
type stallWatch struct {
	c      *Client
	ep     *endpoint
	heard  *atomic.Int64 // when the stream's last message arrived (UnixNano)
	cancel context.CancelFunc
	ctx    context.Context // ends at end, cutting a check's asks short
	stop   context.CancelFunc

	mu      sync.Mutex
	t       *time.Timer
	ended   bool
	running sync.WaitGroup
	// target: what another member had applied at the last check, above
	// what ep had; 0 when no member was ahead.
	target uint64
	cut    atomic.Bool
}

// watchStall starts the check of a stream on ep, whose last message
// arrived at heard; cancel ends the stream.
func (c *Client) watchStall(ctx context.Context, cancel context.CancelFunc, ep *endpoint, heard *atomic.Int64) *stallWatch {
	w := &stallWatch{c: c, ep: ep, heard: heard, cancel: cancel}
	w.ctx, w.stop = context.WithCancel(ctx)
	w.mu.Lock()
	w.t = time.AfterFunc(c.cfg.WatchStallTimeout, w.check)
	w.mu.Unlock()
	return w
}

func (w *stallWatch) check() {
	w.mu.Lock()
	if w.ended {
		w.mu.Unlock()
		return
	}
	w.running.Add(1)
	w.mu.Unlock()
	defer w.running.Done()
	d := w.c.cfg.WatchStallTimeout
	next := d
	if silent := time.Since(time.Unix(0, w.heard.Load())); silent < d {
		w.target = 0
		next = d - silent
	} else {
		w.c.refresh(w.ctx, d/2)
		if w.ctx.Err() != nil {
			return
		}
		applied := w.ep.seen.Load()
		if !w.ep.answeredWithin(d) || (w.target > 0 && applied < w.target) {
			w.cut.Store(true)
			w.cancel()
			return
		}
		w.target = 0
		for _, o := range w.c.endpoints {
			if o != w.ep && o.answeredWithin(d) && o.seen.Load() > applied {
				w.target = max(w.target, o.seen.Load())
			}
		}
	}
	w.mu.Lock()
	if !w.ended {
		w.t.Reset(next)
	}
	w.mu.Unlock()
}

// end stops the check; it reports whether the check cut the stream.
func (w *stallWatch) end() bool {
	w.mu.Lock()
	w.ended = true
	w.t.Stop()
	w.mu.Unlock()
	w.stop()
	w.running.Wait()
	return w.cut.Load()
}

// answeredWithin reports whether the member answered a Status ask within
// d.
func (ep *endpoint) answeredWithin(d time.Duration) bool {
	return time.Since(time.Unix(0, ep.askedAt.Load())) < d
}

// refresh asks every member not asked within limit for its Status, at
// once, each within limit. Checks that find a member being asked wait for
// that ask (singleflight) instead of asking again: watches opened together
// check together.
func (c *Client) refresh(ctx context.Context, limit time.Duration) {
	var wg sync.WaitGroup
	for _, ep := range c.endpoints {
		if ep.answeredWithin(limit) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch := c.stallAsks.DoChan(ep.addr, func() (any, error) {
				// Close waits for the ask (its goroutine is
				// singleflight's).
				c.mu.Lock()
				if c.closed.Load() {
					c.mu.Unlock()
					return nil, nil
				}
				c.bg.Add(1)
				c.mu.Unlock()
				defer c.bg.Done()
				// Not ctx: the ask is shared, and one check ending must
				// not cut it short for the others.
				c.ask(c.ctx, ep, limit)
				return nil, nil
			})
			select {
			case <-ch:
			case <-ctx.Done():
			}
		}()
	}
	wg.Wait()
}
