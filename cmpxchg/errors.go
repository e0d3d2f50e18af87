package cmpxchg

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Errors meant for clients are gRPC status errors created here, so the code
// a client sees is decided in one place and the message names the problem.

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// Errorf makes a client-facing error with the given code; raftnode uses it for
// Unavailable and the like so every status error comes from this package.
func Errorf(code codes.Code, format string, args ...any) error {
	return status.Errorf(code, format, args...)
}

func statusMessage(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Message()
	}
	return err.Error()
}

func statusOf(err error) (*status.Status, bool) { return status.FromError(err) }
