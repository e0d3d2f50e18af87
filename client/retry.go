package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The one retry policy of the SDK. An attempt goes to the preferred member
// with RequestTimeout; if it fails in a way another attempt could fix
// (retryable), the next attempt goes at once to the leader the member named
// in its answer (cxkvpb.MetaLeader), or, when it named none, to the next
// member; after a full round of members that named no leader the loop
// sleeps a jittered, doubling backoff. A named leader also starts the
// backoff over: the failover it ends is survived, and a pause grown while
// the cluster had no leader must not delay the first attempt once it has
// one. The loop ends when an attempt succeeds or fails for good, when the
// caller's context ends, or after RetryTimeout.
//
// The backoff stays short (backoffMax) because a leaderless cluster answers
// at once, and an election lasts one to two election timeouts: a longer
// pause would outlast the election it waits for.
const (
	backoffBase = 20 * time.Millisecond
	backoffMax  = 200 * time.Millisecond
)

// attempt is one try of a call on one member; it returns the response
// header so the client learns who leads.
type attempt func(ctx context.Context, kv cxkvrpc.KVClient) (*cxkvpb.Header, error)

// write runs f, a write carrying the write id setID gives it, under the
// retry policy: a retry is answered from the cluster's memory of the first
// try rather than applied again. If the write cannot be settled, the error
// matches ErrOutcomeUnknown. A write the cluster refused for want of a
// session, with no earlier attempt that may have applied, was certainly not
// applied: it is issued again under a fresh client id.
func (c *Client) write(ctx context.Context, setID func(*cxkvpb.WriteID), f attempt) error {
	for {
		id, err := c.writes.begin(ctx)
		if err != nil {
			return err
		}
		if id.GetSeq() == 1 {
			if err := c.openSession(ctx, id); err != nil {
				return err
			}
			continue
		}
		setID(id)
		err = c.do(ctx, id, f)
		c.writes.end(id)
		var spent *sessionGoneError
		if !errors.As(err, &spent) {
			return err
		}
		c.writes.rotate(id)
	}
}

// sessionOpenKey is the key the no-op that opens a session compares; it is
// only read.
const sessionOpenKey = "cxkv/session-open"

// openSession sends seq 1 of a fresh id: a Txn that only compares, so it
// changes nothing, whose one job is to open the id's session. It goes first
// because a session opens only with the first attempt of seq 1: were seq 1 a
// caller's write, and its first attempt lost, every retry would be refused
// (the cluster cannot tell it from a write whose session it forgot) and the
// caller would get ErrOutcomeUnknown. A no-op can be lost harmlessly: then
// the id is spent and the next write opens a fresh one. An error is the
// caller's write's own: it was not sent.
//
// A refused no-op (PermissionDenied: the caller has no identity and auth is
// on) is not the caller's answer: its message would name the no-op's key,
// not the caller's. The caller's write goes on, on the id whose session did
// not open: the member judges it by its own keys and refuses it naming
// them, proposing nothing; or, if the caller may write by then, the cluster
// refuses it for want of a session, certainly not applied, and it is issued
// again under a fresh id.
func (c *Client) openSession(ctx context.Context, id *cxkvpb.WriteID) error {
	req := &cxkvpb.TxnRequest{Compares: []*cxkvpb.Compare{{Key: sessionOpenKey, Op: cxkvpb.Compare_ABSENT}}, WriteId: id}
	err := c.do(ctx, id, func(ctx context.Context, kv cxkvrpc.KVClient) (*cxkvpb.Header, error) {
		resp, err := kv.Txn(ctx, req)
		return resp.GetHeader(), err
	})
	c.writes.end(id)
	var spent *sessionGoneError
	switch {
	case err == nil, status.Code(err) == codes.PermissionDenied:
		return nil
	case errors.As(err, &spent), errors.Is(err, ErrOutcomeUnknown):
		c.writes.rotate(id)
		return nil
	}
	return err
}

type attemptTimeoutKey struct{}

// WithAttemptTimeout returns a context under which a call's attempt on one
// member is given up once the member has shown no progress for d (the
// RequestTimeout bounds it still): it neither answered nor, asked, said it
// leads with an applied index that moved, or leads in contact with a
// quorum, within d (client/progress.go). So a member that stopped (a
// paused leader) costs a call d before it tries another, not the whole
// RequestTimeout, while a leader that is working (through a long queue, or
// a slow sync of this very write) is waited for instead of being sent the
// write again at the back of its queue. For calls that must land within a
// deadline shorter than RequestTimeout, such as a lease renewal. An attempt
// given up may still apply: a write's retries carry its write id, so it
// applies at most once.
func WithAttemptTimeout(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, attemptTimeoutKey{}, d)
}

func (c *Client) attemptTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Value(attemptTimeoutKey{}).(time.Duration); ok && d > 0 && d < c.cfg.RequestTimeout {
		return d
	}
	return c.cfg.RequestTimeout
}

// sessionGoneError is a write the cluster refused as outcome unknown when
// no attempt of it could have applied: its client id's session is gone.
type sessionGoneError struct{ err error }

func (e *sessionGoneError) Error() string { return e.err.Error() }

// do runs f under the retry policy. wid is the write id f carries, nil for
// a read.
//
// The call ends RetryTimeout after it began, or at the caller's deadline if
// sooner. Its context (ctx below) is made only once an attempt failed: a
// context with a deadline costs a timer, and nearly every call is one
// attempt, whose own context carries the call's deadline too.
func (c *Client) do(parent context.Context, wid *cxkvpb.WriteID, f attempt) error {
	if c.closed.Load() {
		return ErrClosed
	}
	end := time.Now().Add(c.cfg.RetryTimeout)
	ctx, stop := parent, context.CancelFunc(nil)
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	var (
		last      error
		ambiguous bool // a write attempt may have reached the log
		r         = retrier{c: c}
		write     = wid != nil
	)
	for {
		i, ep := c.pick()
		actx, acancel := context.WithDeadline(ctx, earliest(time.Now().Add(c.cfg.RequestTimeout), end))
		actx, sent := probeSend(actx)
		var watch *progressWatch
		d := c.attemptTimeout(ctx)
		if d < c.cfg.RequestTimeout {
			watch = c.watchProgress(actx, acancel, ep, d)
		}
		h, err := f(actx, ep.kv)
		if watch != nil && watch.end() && err != nil {
			err = status.Errorf(codes.DeadlineExceeded, "cxkv: member at %s showed no progress for %v", ep.addr, d)
		}
		acancel()
		if err == nil {
			c.observe(ep, h)
			return nil
		}
		if stop == nil {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(parent, end)
			stop = cancel
		}
		if write {
			switch outcomeOf(err, sent.Load()) {
			case attemptSettled:
				return err // the log's own answer to this write id
			case attemptMaybeApplied:
				ambiguous = true
				wid.NewClient = false // sent: a later attempt is a retry
			}
			if status.Code(err) == codes.FailedPrecondition {
				// The cluster no longer knows this write id's outcome.
				if ambiguous {
					return &outcomeUnknownError{last: err}
				}
				return &sessionGoneError{err: err}
			}
		}
		if !retryable(ctx, err) {
			if ambiguous {
				return &outcomeUnknownError{last: err}
			}
			return err
		}
		last = err
		if werr := r.next(ctx, i, err); werr != nil {
			if werr == ErrClosed {
				// Closing ends the call, not what an attempt already
				// sent: that may still apply.
				if ambiguous {
					return &outcomeUnknownError{last: ErrClosed}
				}
				return ErrClosed
			}
			if ambiguous {
				return &outcomeUnknownError{last: last}
			}
			return last
		}
	}
}

// retrier paces the attempts of one call after failures: the named leader
// or the next member at once, and after each full round of members that
// named no leader a jittered, doubling pause.
type retrier struct {
	c       *Client
	tries   int
	backoff time.Duration
	// hops counts attempts sent to a leader named by lead, the last leader a
	// member named; members that keep naming a leader that keeps failing
	// get the ordinary pacing after one hop per member.
	hops int
	lead uint64
}

// next moves off the member at position failed, whose attempt failed with
// err: to the leader err names (cxkvpb.MetaLeader) if that is another
// member this client knows, else to the next member, waiting if a round is
// complete. It returns ctx's error or ErrClosed if the wait was cut short.
func (r *retrier) next(ctx context.Context, failed int, err error) error {
	lead := leaderHint(err)
	if lead != r.lead {
		r.lead, r.hops = lead, 0
	}
	if i, ok := r.c.endpointOf(lead); ok && i != failed && r.hops < len(r.c.endpoints) {
		r.hops++
		r.c.preferred.Store(int32(i))
		r.reset()
		return nil
	}
	r.c.follow(lead) // an endpoint not known yet: learn it for the next call
	r.c.failed(failed)
	r.tries++
	if r.tries%len(r.c.endpoints) != 0 {
		return nil
	}
	if r.backoff == 0 {
		r.backoff = backoffBase
	}
	sleep := r.backoff/2 + rand.N(r.backoff/2+1)
	r.backoff = min(2*r.backoff, backoffMax)
	t := time.NewTimer(sleep)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-r.c.ctx.Done():
		return ErrClosed
	}
}

// reset starts the pacing over, after progress.
func (r *retrier) reset() { r.tries, r.backoff = 0, 0 }

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
