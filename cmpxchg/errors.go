package cmpxchg

import (
	"errors"
	"fmt"

	"github.com/cxkv/cxkv/api/cxkvpb"
)

// The state machine speaks no RPC: it refuses a command with an Error
// carrying one of its own Codes, and the service layer (raftnode) maps codes
// to whatever its wire uses, in one place.

// Code says why the state machine refused a command.
//
// A code is stored as it is (CommandError.code) in the results the
// exactly-once table keeps, so it lives in the replicated state and in
// snapshots: a value never changes meaning and is never reused. The values
// are those stored before the state machine had codes of its own (it stored
// gRPC code numbers then), so old results read the same today. A new code
// takes a new number.
type Code uint32

const (
	// CodeInvalid: the command breaks a rule on keys, values, TTLs or the
	// shape of a transaction. Nothing was written.
	CodeInvalid Code = 3
	// CodeForgotten: a retry of a write whose result the exactly-once table
	// has forgotten. Nothing was written by the retry.
	CodeForgotten Code = 9
	// CodeNoSession: a put would attach its key to a session whose key does
	// not exist. Nothing was written.
	CodeNoSession Code = 5
	// CodeSessionFull: a put would take a session past MaxSessionKeys or
	// MaxSessionBytes. Nothing was written.
	CodeSessionFull Code = 10
)

// Error is a refusal by the state machine: a code for the caller to act on
// and a message naming the problem.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return e.Message }

func refusal(code Code, format string, args ...any) error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) error { return refusal(CodeInvalid, format, args...) }

// ResultError returns the refusal a command's result carries, or nil if the
// command was applied.
func ResultError(res *cxkvpb.CommandResult) error {
	e := res.GetError()
	if e == nil {
		return nil
	}
	return &Error{Code: Code(e.GetCode()), Message: e.GetMessage()}
}

// refused is the result of a command the state machine refused. Only Errors
// are stored: anything else would be a bug, and is stored as invalid rather
// than with a code no reader knows.
func refused(err error) *cxkvpb.CommandResult {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: CodeInvalid, Message: err.Error()}
	}
	return &cxkvpb.CommandResult{Result: &cxkvpb.CommandResult_Error{Error: &cxkvpb.CommandError{Code: uint32(e.Code), Message: e.Message}}}
}
