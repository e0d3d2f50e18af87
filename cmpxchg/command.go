package cmpxchg

import (
	"fmt"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"google.golang.org/protobuf/proto"
)

// Commands travel in the Raft log as Protocol Buffers: the one encoder, the
// same one the API uses (cxkvpb.Marshal, vtprotobuf's generated
// marshalling). Every write encodes its command once and its result once on
// every member. Decoding stays with proto.Unmarshal, which also refuses
// strings that are not UTF-8.
//
// What must hold: the encoder writes exactly the bytes proto.Marshal writes
// (FuzzEncodingsAgree, TestEncodersAgreeOnEveryOperation). A stored result
// is part of the replicated state, so members of two versions during a
// rolling upgrade, and a snapshot or a backup read by either, must hold the
// same bytes for it.

// EncodeCommand encodes a command for the log.
func EncodeCommand(c *cxkvpb.Command) ([]byte, error) { return cxkvpb.Marshal(c) }

// EncodeResult encodes a write's result for the exactly-once table.
func EncodeResult(r *cxkvpb.CommandResult) ([]byte, error) { return cxkvpb.Marshal(r) }

// DecodeCommand decodes a log entry's payload; malformed input is an error,
// never a panic.
func DecodeCommand(data []byte) (*cxkvpb.Command, error) {
	c := &cxkvpb.Command{}
	if err := proto.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("cmpxchg: malformed command (%d bytes): %w", len(data), err)
	}
	return c, nil
}
