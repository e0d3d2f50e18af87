package raftnode

import (
	"context"
	"errors"

	"github.com/cxkv/cxkv/cmpxchg"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const unavailable = codes.Unavailable

func codeOf(c uint32) codes.Code { return codes.Code(c) }

// contextError maps a request's ended context to its gRPC code. A write that
// may already be in the log says so: the client must not assume it failed.
func contextError(err error, maybeApplied bool) error {
	code := codes.DeadlineExceeded
	if errors.Is(err, context.Canceled) {
		code = codes.Canceled
	}
	if maybeApplied {
		return cmpxchg.Errorf(code, "%v before the write was applied; it may or may not have been applied (retry with the same write id)", err)
	}
	return cmpxchg.Errorf(code, "%v", err)
}

// toStatus is the one place an internal error becomes a gRPC status: errors
// that already carry a code keep it, contexts map to theirs, and anything
// else (a store failure) is Internal.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return contextError(err, false)
	case errors.Is(err, errNotLeader):
		return cmpxchg.Errorf(codes.Unavailable, "no leader: the cluster has no quorum right now")
	}
	return cmpxchg.Errorf(codes.Internal, "%v", err)
}
