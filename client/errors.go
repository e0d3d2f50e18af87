package client

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrOutcomeUnknown matches (errors.Is) the error of a write that may or may
// not have been applied: the SDK sent it, lost the answer or had it refused
// after the write may have been proposed (the cluster said so, or gRPC
// failed the call after the request left this process), and could not
// settle it before the context ended or the retry budget ran out, or the
// cluster had forgotten the result by the time a retry asked (the client's
// session expired or was evicted). Read the key to find out; the owner value
// of a lock exists for exactly this.
var ErrOutcomeUnknown = errors.New("cxkv: write outcome unknown")

// ErrCompacted matches the error of a Watch asked for history the cluster no
// longer keeps. Re-read the keys, then watch from the index of that read.
var ErrCompacted = errors.New("cxkv: watch history compacted")

// ErrClosed is returned by calls on a closed Client. A write the closing
// cut short after an attempt of it was sent may still apply: it ends with
// an error matching both ErrOutcomeUnknown and ErrClosed.
var ErrClosed = errors.New("cxkv: client closed")

// outcomeUnknownError carries the last transport error of a write whose
// outcome is unknown.
type outcomeUnknownError struct{ last error }

func (e *outcomeUnknownError) Error() string {
	return fmt.Sprintf("cxkv: the write may or may not have been applied: %v", e.last)
}

func (e *outcomeUnknownError) Is(target error) bool { return target == ErrOutcomeUnknown }
func (e *outcomeUnknownError) Unwrap() error        { return e.last }

// IsUnavailable reports whether err means no member could serve the request
// (no quorum, all endpoints unreachable).
func IsUnavailable(err error) bool {
	return status.Code(err) == codes.Unavailable || errors.Is(err, errNoEndpoint)
}

var errNoEndpoint = errors.New("cxkv: no endpoint answered")

// retryable reports whether an attempt's error is worth another attempt,
// possibly on another member: the member was unreachable, had no quorum or
// was too busy to take a write, or the attempt's own timeout fired while the
// caller's context is alive.
func retryable(parent context.Context, err error) bool {
	if parent.Err() != nil {
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	case codes.Canceled:
		// The member cancelled (it is shutting down); ours is alive.
		return true
	case codes.ResourceExhausted:
		// A busy member says the write was not proposed; backing off is
		// what it asks for. Without that detail the code is gRPC's own
		// message-size limit, which another attempt would meet again.
		return outcomeOf(err, true) == attemptNotApplied
	}
	return false
}
