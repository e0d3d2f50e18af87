package raftnode

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Every error a member returns gets its code in toStatus, with the error's
// text as the message.
func TestToStatus(t *testing.T) {
	refusal := func(c uint32) error {
		return cmpxchg.ResultError(&cxkvpb.CommandResult{Result: &cxkvpb.CommandResult_Error{Error: &cxkvpb.CommandError{Code: c, Message: "refused"}}})
	}
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{cmpxchg.ValidateKey(""), codes.InvalidArgument},
		{refusal(uint32(cmpxchg.CodeForgotten)), codes.FailedPrecondition},
		{refusal(77), codes.Internal}, // stored by a newer build
		{contextError(context.DeadlineExceeded, true), codes.DeadlineExceeded},
		{contextError(context.Canceled, false), codes.Canceled},
		{errStopped, codes.Unavailable},
		{fmt.Errorf("%w (x)", errNoLeader), codes.Unavailable},
		{errLeaderChanged, codes.Unavailable},
		{errHalted, codes.Unavailable},
		{fmt.Errorf("%w before index 3", errCompacted), codes.OutOfRange},
		{errors.New("pebble: disk on fire"), codes.Internal},
		{status.Error(codes.Aborted, "from grpc"), codes.Aborted},
	} {
		got := toStatus(tc.err)
		s, _ := status.FromError(got)
		if s.Code() != tc.want || s.Message() != status.Convert(tc.err).Message() {
			t.Errorf("toStatus(%v) = %v; want code %v with the error's text", tc.err, got, tc.want)
		}
	}
	if toStatus(nil) != nil {
		t.Error("toStatus(nil) is not nil")
	}
}

// A failed write says how far it got, in a detail the client decides on.
func TestWriteFailureDetails(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{beforeProposing(cmpxchg.ValidateKey("")), cxkvpb.ReasonWriteNotApplied},
		{beforeProposing(fmt.Errorf("%w (dropped)", errNoLeader)), cxkvpb.ReasonWriteNotApplied},
		{beforeProposing(contextError(context.DeadlineExceeded, false)), cxkvpb.ReasonWriteNotApplied},
		{cmpxchg.ResultError(&cxkvpb.CommandResult{Result: &cxkvpb.CommandResult_Error{Error: &cxkvpb.CommandError{Code: uint32(cmpxchg.CodeInvalid)}}}), cxkvpb.ReasonWriteRefused},
		{cmpxchg.ResultError(&cxkvpb.CommandResult{Result: &cxkvpb.CommandResult_Error{Error: &cxkvpb.CommandError{Code: uint32(cmpxchg.CodeForgotten)}}}), cxkvpb.ReasonWriteNotApplied},
		{contextError(context.DeadlineExceeded, true), cxkvpb.ReasonWriteOutcomeUnknown},
		{errLeaderChanged, cxkvpb.ReasonWriteOutcomeUnknown},
		{errStopped, cxkvpb.ReasonWriteOutcomeUnknown},
		{errors.New("pebble: disk on fire"), cxkvpb.ReasonWriteOutcomeUnknown},
	} {
		s := status.Convert(toStatus(writeFailure(tc.err, 7)))
		var info *errdetails.ErrorInfo
		for _, d := range s.Details() {
			if i, ok := d.(*errdetails.ErrorInfo); ok {
				info = i
			}
		}
		if info.GetDomain() != cxkvpb.ErrorDomain || info.GetReason() != tc.want || info.GetMetadata()["member"] != "7" {
			t.Errorf("write failing with %v: detail %v; want reason %s from member 7", tc.err, info, tc.want)
		}
		if s.Code() != codeOf(tc.err) {
			t.Errorf("write failing with %v: code %v; want %v as for any request", tc.err, s.Code(), codeOf(tc.err))
		}
	}
	// Reads carry no write detail.
	if d := status.Convert(toStatus(errStopping)).Details(); len(d) != 0 {
		t.Errorf("a read's error carries %v", d)
	}
}
