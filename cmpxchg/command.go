package cmpxchg

import (
	"fmt"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"google.golang.org/protobuf/proto"
)

// Commands travel in the Raft log as Protocol Buffers: the one encoder, the
// same one the API uses. The log's commands and the results the
// exactly-once table keeps are encoded by the marshalling code vtprotobuf
// generates for api/cxkvpb (MarshalVT, 2-4x faster than proto.Marshal,
// which walks the message by reflection): every write encodes its command
// once and its result once on every member. Decoding stays with
// proto.Unmarshal, which also refuses strings that are not UTF-8.
//
// What must hold: the encoders write exactly the bytes proto.Marshal writes
// (FuzzEncodingsAgree, TestEncodersAgreeOnEveryOperation). A stored result
// is part of the replicated state, so members of two versions during a
// rolling upgrade, and a snapshot or a backup read by either, must hold the
// same bytes for it. One case breaks that in the vtprotobuf version gRPC
// pins: an operation whose message is nil (&Command_Put{}) is sized three
// bytes and written as two, which no longer decode. proto.Marshal writes it
// as an empty message, so such a command or result goes to proto.Marshal.
// No code builds one; the guard keeps a future one from logging bytes that
// no member can decode.

// EncodeCommand encodes a command for the log.
func EncodeCommand(c *cxkvpb.Command) ([]byte, error) {
	if nilOp(c) {
		return proto.Marshal(c)
	}
	return c.MarshalVT()
}

// EncodeResult encodes a write's result for the exactly-once table.
func EncodeResult(r *cxkvpb.CommandResult) ([]byte, error) {
	if nilResult(r) {
		return proto.Marshal(r)
	}
	return r.MarshalVT()
}

// nilOp reports whether c's operation is set to a nil message.
func nilOp(c *cxkvpb.Command) bool {
	switch op := c.GetOp().(type) {
	case *cxkvpb.Command_Put:
		return op.Put == nil
	case *cxkvpb.Command_Delete:
		return op.Delete == nil
	case *cxkvpb.Command_Txn:
		return op.Txn == nil
	case *cxkvpb.Command_Expire:
		return op.Expire == nil
	case *cxkvpb.Command_Auth:
		return op.Auth == nil
	}
	return false
}

// nilResult reports whether r's result is set to a nil message.
func nilResult(r *cxkvpb.CommandResult) bool {
	switch res := r.GetResult().(type) {
	case *cxkvpb.CommandResult_Put:
		return res.Put == nil
	case *cxkvpb.CommandResult_Delete:
		return res.Delete == nil
	case *cxkvpb.CommandResult_Txn:
		return res.Txn == nil
	case *cxkvpb.CommandResult_Error:
		return res.Error == nil
	case *cxkvpb.CommandResult_Auth:
		return res.Auth == nil
	}
	return false
}

// DecodeCommand decodes a log entry's payload; malformed input is an error,
// never a panic.
func DecodeCommand(data []byte) (*cxkvpb.Command, error) {
	c := &cxkvpb.Command{}
	if err := proto.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("cmpxchg: malformed command (%d bytes): %w", len(data), err)
	}
	return c, nil
}
