package raftnode

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
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
	errPeerRefused   = errors.New("raft messages refused")
)

// outcome is how far a failed write got: what its client may conclude.
type outcome uint8

const (
	// notProposed: this attempt did not apply and cannot: it never reached
	// the log, or Apply refused it without writing.
	notProposed outcome = iota + 1
	// settledRefused: Apply refused the write and wrote nothing; a retry
	// with the same write id is answered the same.
	settledRefused
	// unknownOutcome: the write may be in the log.
	unknownOutcome
)

var reasons = map[outcome]string{
	notProposed:    cxkvpb.ReasonWriteNotApplied,
	settledRefused: cxkvpb.ReasonWriteRefused,
	unknownOutcome: cxkvpb.ReasonWriteOutcomeUnknown,
}

// writeError is a failed write and how far it got; toStatus sends the
// outcome as a detail so the client decides on it, never on the text.
type writeError struct {
	err     error
	outcome outcome
	member  uint64 // the member that answered, for the detail's metadata
}

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// beforeProposing marks an error that ended a write before it was handed to
// Raft.
func beforeProposing(err error) error { return &writeError{err: err, outcome: notProposed} }

// writeFailure gives a failed write's error its outcome, unless it was
// marked where it happened: a refusal by Apply is settled if its code says
// nothing was written; anything else may have reached the log.
func writeFailure(err error, member uint64) error {
	var we *writeError
	if !errors.As(err, &we) {
		we = &writeError{err: err, outcome: unknownOutcome}
		var refusal *cmpxchg.Error
		if errors.As(err, &refusal) {
			if r, ok := refusals[refusal.Code]; ok {
				we.outcome = r.outcome
			}
		}
	}
	we.member = member
	return we
}

// refusals maps the state machine's codes to gRPC codes and to what a
// refusal tells the writer.
var refusals = map[cmpxchg.Code]struct {
	code    codes.Code
	outcome outcome
}{
	// Nothing was written, and a retry with the same write id gets the
	// same answer.
	cmpxchg.CodeInvalid: {codes.InvalidArgument, settledRefused},
	// This attempt was not applied; whether an earlier one was, the table
	// no longer knows.
	cmpxchg.CodeForgotten: {codes.FailedPrecondition, notProposed},
	// The session a put would attach to does not exist, or is full; nothing
	// was written, and a retry with the same write id gets the same answer.
	cmpxchg.CodeNoSession:   {codes.NotFound, settledRefused},
	cmpxchg.CodeSessionFull: {codes.FailedPrecondition, settledRefused},
	// The identity may not do this (cmpxchg/auth.go); nothing was written.
	cmpxchg.CodePermissionDenied: {codes.PermissionDenied, settledRefused},
	// An auth change naming a missing user or role, or adding one that
	// exists; nothing was written.
	cmpxchg.CodeAuthNotFound: {codes.NotFound, settledRefused},
	cmpxchg.CodeAuthExists:   {codes.AlreadyExists, settledRefused},
}

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
// A failed write also says how far it got (cxkvpb.ErrorDomain's reasons).
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // from gRPC itself (a peer or stream call): keep its code
	}
	st := status.New(codeOf(err), err.Error())
	if reason := memberReason(err); reason != "" {
		info := &errdetails.ErrorInfo{Domain: cxkvpb.ErrorDomain, Reason: reason}
		var mr *memberRemoved
		if errors.As(err, &mr) {
			info.Metadata = map[string]string{cxkvpb.MetaRemoved: strconv.FormatUint(mr.id, 10)}
		}
		if withInfo, err := st.WithDetails(info); err == nil {
			st = withInfo
		}
	}
	var we *writeError
	if errors.As(err, &we) {
		info := &errdetails.ErrorInfo{Domain: cxkvpb.ErrorDomain, Reason: reasons[we.outcome]}
		if we.member != 0 {
			info.Metadata = map[string]string{cxkvpb.MetaMember: strconv.FormatUint(we.member, 10)}
		}
		if withInfo, err := st.WithDetails(info); err == nil {
			st = withInfo
		}
	}
	return st.Err()
}

// hintLeader adds, to every Unavailable answer of the client API, the leader
// this member knows (cxkvpb.MetaLeader), so the client's next attempt goes
// straight to it rather than to each member in turn. It runs on the status
// toStatus made, outside the handlers, so every path that refuses (a write
// without a leader, a read cut short, a halted or stopping member) carries
// it without each having to know the leader.
func (n *Node) hintLeader(err error) error {
	st, ok := status.FromError(err)
	if err == nil || !ok || st.Code() != codes.Unavailable {
		return err
	}
	leader := n.Status().Leader
	if leader == 0 {
		return err
	}
	hint := func(info *errdetails.ErrorInfo) {
		if info.Metadata == nil {
			info.Metadata = map[string]string{}
		}
		info.Metadata[cxkvpb.MetaMember] = strconv.FormatUint(n.cfg.ID, 10)
		info.Metadata[cxkvpb.MetaLeader] = strconv.FormatUint(leader, 10)
	}
	var details []protoadapt.MessageV1
	hinted := false
	for _, d := range st.Details() {
		m, ok := d.(protoadapt.MessageV1)
		if !ok {
			continue // a detail this build cannot decode: nothing sets one
		}
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == cxkvpb.ErrorDomain && !hinted {
			info = proto.Clone(info).(*errdetails.ErrorInfo)
			hint(info)
			m, hinted = info, true
		}
		details = append(details, m)
	}
	if !hinted {
		info := &errdetails.ErrorInfo{Domain: cxkvpb.ErrorDomain, Reason: cxkvpb.ReasonUnavailable}
		hint(info)
		details = append(details, info)
	}
	out, derr := status.New(st.Code(), st.Message()).WithDetails(details...)
	if derr != nil {
		return err
	}
	return out.Err()
}

func (n *Node) hintLeaderUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	return resp, n.hintLeader(err)
}

func (n *Node) hintLeaderStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return n.hintLeader(handler(srv, ss))
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
		if r, ok := refusals[refusal.Code]; ok {
			return r.code
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
	case errors.Is(err, errPeerRefused):
		return codes.PermissionDenied
	case errors.Is(err, errRemoved):
		return codes.Unavailable
	case errors.Is(err, errInvalid):
		return codes.InvalidArgument
	case errors.Is(err, errMemberTaken):
		return codes.AlreadyExists
	case errors.Is(err, errNotMember):
		return codes.NotFound
	case errors.Is(err, errChangeRefused), errors.Is(err, errWipedMember), errors.Is(err, errNotLeader):
		return codes.FailedPrecondition
	case errors.Is(err, errUnauthenticated):
		return codes.Unauthenticated
	}
	return codes.Internal
}
