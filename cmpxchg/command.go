package cmpxchg

import (
	"fmt"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"google.golang.org/protobuf/proto"
)

// Commands travel in the Raft log as Protocol Buffers: the one encoder, the
// same one the API uses, with generated (not reflective) fast paths.

// EncodeCommand encodes a command for the log.
func EncodeCommand(c *cxkvpb.Command) ([]byte, error) { return proto.Marshal(c) }

// DecodeCommand decodes a log entry's payload; malformed input is an error,
// never a panic.
func DecodeCommand(data []byte) (*cxkvpb.Command, error) {
	c := &cxkvpb.Command{}
	if err := proto.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("cmpxchg: malformed command (%d bytes): %w", len(data), err)
	}
	return c, nil
}
