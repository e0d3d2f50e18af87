package raftnode

import (
	"context"
	"errors"
	"fmt"

	"github.com/cxkv/cxkv/cmpxchg"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Failures of the member rather than of the request. Errors that need more
// words wrap one of these (fmt.Errorf with %w); toStatus decides the code
// from the value, and the message is the error's text.
var (
	errStopping      = errors.New("member is shutting down")
	errHalted        = errors.New("member halted: it could not write to its storage and must restart")
	errNoLeader      = errors.New("no leader to take the write: the cluster has no quorum right now")
	errLeaderChanged = errors.New("leadership changed while the write was in flight")
	errCompacted     = errors.New("watch history compacted")
	errOverloaded    = errors.New("the write was not proposed (retry after a pause)")
)

// contextError says what an ended request context means for a write that
// may already be in the log: the client must not assume it failed.
func contextError(err error, maybeApplied bool) error {
	if maybeApplied {
		return fmt.Errorf("%w before the write was applied; it may or may not have been applied (retry with the same write id)", err)
	}
	return err
}

// toStatus is the one place an error becomes a gRPC status: the state
// machine's refusals by their code, the member's own failures and ended
// contexts by their value, and anything else (a store failure) as Internal.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // from gRPC itself (a peer or stream call): keep its code
	}
	return status.Error(codeOf(err), err.Error())
}

// StatusOf is toStatus for code that stands in for the service in tests
// (cmpxchgtest runs the state machine without a member), so it reports
// errors exactly as a member does.
func StatusOf(err error) error { return toStatus(err) }

// codeOf is the gRPC code of an error that reaches a client.
func codeOf(err error) codes.Code {
	var refusal *cmpxchg.Error
	switch {
	case errors.As(err, &refusal):
		switch refusal.Code {
		case cmpxchg.CodeInvalid:
			return codes.InvalidArgument
		case cmpxchg.CodeForgotten:
			return codes.FailedPrecondition
		}
		// A code this build does not know: a result stored by a newer one.
		return codes.Internal
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, errStopping), errors.Is(err, errHalted),
		errors.Is(err, errNoLeader), errors.Is(err, errLeaderChanged):
		return codes.Unavailable
	case errors.Is(err, errCompacted):
		return codes.OutOfRange
	case errors.Is(err, errOverloaded):
		return codes.ResourceExhausted
	}
	return codes.Internal
}
