package raftnode

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
)

// A member halts when it cannot persist: its Ready loop stops for good, and
// everything it would still answer is suspect (its state is behind the
// cluster's, it may not be leader any more, and its store may be broken).
// So a halted member answers nothing, not even a serializable read or
// Status; requests in flight end with the same error; Done and Err tell the
// process, which must exit non-zero so a supervisor restarts it. Restarting
// loses no acknowledged write: a write is acknowledged only after it was
// synced on a majority and applied.

// errStoppedCause ends the member's life context on a clean Stop.
var errStoppedCause = errors.New("member stopped")

// lifetime is a context that ends when the member halts or stops; its cause
// says which.
type lifetime struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func (l *lifetime) init() { l.ctx, l.cancel = context.WithCancelCause(context.Background()) }

// Done is closed when the member stops serving: it halted on a storage
// failure (Err says which) or Stop was called.
func (n *Node) Done() <-chan struct{} { return n.life.ctx.Done() }

// Err is the storage failure the member halted on, or nil if it has not
// halted (a clean Stop is not an error).
func (n *Node) Err() error {
	if err := context.Cause(n.life.ctx); err != nil && !errors.Is(err, errStoppedCause) {
		return err
	}
	return nil
}

// halt records the failure that stops the member; the first cause wins.
func (n *Node) halt(err error) {
	if errors.Is(err, errRemoved) {
		n.cfg.Logger.Error("member stopped serving: it was removed from the cluster", "err", err)
		if merr := n.store.MarkRemoved(); merr != nil {
			n.cfg.Logger.Error("could not mark the data dir as removed", "err", merr)
		}
		n.life.cancel(err)
		return
	}
	n.cfg.Logger.Error("member halted: storage failed; the process must restart", "err", err)
	n.life.cancel(err)
}

func (n *Node) haltedError() error {
	if err := n.Err(); errors.Is(err, errRemoved) {
		return err
	} else if err != nil {
		return fmt.Errorf("%w (%v); it serves nothing until restarted, and a write in flight may or may not have been applied", errHalted, err)
	}
	return nil
}

// refuseWhenHalted refuses every call to a halted member and ends the calls
// in flight when it halts.
func (n *Node) refuseWhenHalted(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(n.life.ctx, cancel)()
	return n.refuseCallWhenHalted(ctx, req, info, handler)
}

// refuseCallWhenHalted is refuseWhenHalted for the calls of a Calls
// stream: their contexts come from the stream's, which already ends when
// the member halts (refuseStreamWhenHalted), so a context of each call's
// own tied to the member's life would only repeat it (it was 3% of a
// leader's CPU at cas-parallel).
func (n *Node) refuseCallWhenHalted(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := n.haltedError(); err != nil {
		return nil, toStatus(err)
	}
	resp, err := handler(ctx, req)
	if herr := n.haltedError(); herr != nil {
		return nil, toStatus(herr)
	}
	return resp, err
}

// refuseStreamWhenHalted is refuseWhenHalted for streams (Watch, peers).
func (n *Node) refuseStreamWhenHalted(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := n.haltedError(); err != nil {
		return toStatus(err)
	}
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	defer context.AfterFunc(n.life.ctx, cancel)()
	err := handler(srv, &streamWithContext{ServerStream: ss, ctx: ctx})
	if herr := n.haltedError(); herr != nil {
		return toStatus(herr)
	}
	return err
}

type streamWithContext struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *streamWithContext) Context() context.Context { return s.ctx }
