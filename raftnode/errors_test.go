package raftnode

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
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
