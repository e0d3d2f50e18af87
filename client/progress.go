package client

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
)

// A call under WithAttemptTimeout(d) must leave a stalled member within d,
// yet wait for a busy one: under a saturated leader a write spends longer
// than d in the log's pipeline (measured at 250–400 ms in process with 512
// acquiring goroutines, and about 1.7 s with 640 across 10 processes), and
// an attempt cut there is sent again as a new proposal at the back of the
// same pipeline, to be cut again: a lock session's renewal never came back
// and every lock of the monitor was lost, with no fault (issue 17).
//
// What tells the two apart is progress, not time: the attempt lives on as
// long as the member, while leading, has shown progress within the last d:
// a higher applied index, or its word (cxkvpb.Header.quorum_contact) that
// it heard from a quorum within the last election timeout. Every answer
// this client gets from the member counts (Client.observe), so a busy
// client needs nothing more; when none came within d/2, the watch asks the
// member for its Status (bounded by d/2). A leader in contact with a
// quorum is working through its pipeline, in which a write it took in
// stays (or it loses leadership, and its answers stop counting). The
// applied index alone is not enough: on a cluster with nothing else to
// apply, a leader whose disk is slow to sync the attempt's own write
// applies nothing until that sync ends, and a renewal cut there and sent
// again waited behind the same slow disk each time, until the lease ran
// out (TTL 1.5 s, syncs of 400 ms; issue 17). A paused member answers
// nothing; a leader cut off from its peers, or whose sync stalls, applies
// nothing and loses its quorum contact within an election timeout (and
// soon steps down); a follower's progress does not count, since a write it
// forwarded may have been lost while it applies others'. Each of these is
// left within d of its last progress. A member too old to send
// quorum_contact is judged by its applied index alone.
type progressWatch struct {
	cut    atomic.Bool
	stop   chan struct{}
	exited chan struct{}
}

// watchProgress starts the watch of an attempt on ep, under actx, which
// cancel ends; end must follow the attempt.
func (c *Client) watchProgress(actx context.Context, cancel context.CancelFunc, ep *endpoint, d time.Duration) *progressWatch {
	w := &progressWatch{stop: make(chan struct{}), exited: make(chan struct{})}
	start := time.Now()
	since := func() time.Duration {
		return time.Since(time.Unix(0, max(start.UnixNano(), ep.progressed.Load())))
	}
	go func() {
		defer close(w.exited)
		t := time.NewTimer(d / 2)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-actx.Done():
				return
			case <-t.C:
			}
			if since() >= d/2 {
				c.ask(actx, ep, d/2)
			}
			if since() >= d {
				w.cut.Store(true)
				cancel()
				return
			}
			t.Reset(min(d/2, d-since()))
		}
	}()
	return w
}

// ask has member ep report its progress (to Client.observe) within limit,
// and records when it answered (endpoint.askedAt).
func (c *Client) ask(ctx context.Context, ep *endpoint, limit time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if resp, err := ep.kv.Status(ctx, &cxkvpb.StatusRequest{}); err == nil {
		c.observe(ep, resp.GetHeader())
		ep.seen.Store(resp.GetHeader().GetAppliedIndex())
		ep.askedAt.Store(time.Now().UnixNano())
	}
}

// end stops the watch; it reports whether the watch cut the attempt.
func (w *progressWatch) end() bool {
	close(w.stop)
	<-w.exited
	return w.cut.Load()
}
