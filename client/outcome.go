package client

import (
	"context"
	"strconv"
	"sync/atomic"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// What a failed write attempt proves about the write, decided from status
// codes and details only, never from an error's text.
//
// A member that fails a write says how far it got in an ErrorInfo detail
// (domain cxkvpb.ErrorDomain). An error without one came from the network or
// from gRPC (a refused connection, a cut stream, an answer over the receive
// limit); then what decides is whether the request left this process: a
// request that was never handed to a connection cannot be in the log, and
// any other may be.
type attemptOutcome uint8

const (
	// attemptNotApplied: this attempt cannot have applied (earlier ones may).
	attemptNotApplied attemptOutcome = iota
	// attemptSettled: the log refused the write and wrote nothing; every
	// attempt of it gets the same answer.
	attemptSettled
	// attemptMaybeApplied: this attempt may be in the log.
	attemptMaybeApplied
)

func outcomeOf(err error, sent bool) attemptOutcome {
	for _, d := range status.Convert(err).Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != cxkvpb.ErrorDomain {
			continue
		}
		switch info.GetReason() {
		case cxkvpb.ReasonWriteNotApplied:
			return attemptNotApplied
		case cxkvpb.ReasonWriteRefused:
			return attemptSettled
		case cxkvpb.ReasonWriteOutcomeUnknown:
			return attemptMaybeApplied
		}
	}
	if !sent {
		return attemptNotApplied
	}
	return attemptMaybeApplied
}

// leaderHint is the leader a member named in a failed call's ErrorInfo
// (cxkvpb.MetaLeader), 0 if it named none.
func leaderHint(err error) uint64 {
	for _, d := range status.Convert(err).Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != cxkvpb.ErrorDomain {
			continue
		}
		if id, err := strconv.ParseUint(info.GetMetadata()[cxkvpb.MetaLeader], 10, 64); err == nil {
			return id
		}
	}
	return 0
}

// sendProbe is a gRPC stats handler that marks a call whose request message
// was handed to a connection: gRPC reports OutPayload only then, so a call
// that failed to connect, or to open a stream, was never seen by a member.
type sendProbe struct{}

type sentKey struct{}

// probeSend returns ctx marked for the probe, and the flag it sets.
func probeSend(ctx context.Context) (context.Context, *atomic.Bool) {
	sent := new(atomic.Bool)
	return context.WithValue(ctx, sentKey{}, sent), sent
}

func (sendProbe) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (sendProbe) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if p, ok := s.(*stats.OutPayload); ok && p.IsClient() {
		if sent, ok := ctx.Value(sentKey{}).(*atomic.Bool); ok {
			sent.Store(true)
		}
	}
}

func (sendProbe) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (sendProbe) HandleConn(context.Context, stats.ConnStats)                       {}
