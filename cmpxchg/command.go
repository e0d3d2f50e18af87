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
// bytes and written as two, at the end of the buffer, so the bytes returned
// no longer decode. proto.Marshal writes it as an empty message. No code
// builds one; encodeVT sends a message whose written length is not its
// size to proto.Marshal, so a future one (at any depth) cannot log bytes
// that no member can decode.

// EncodeCommand encodes a command for the log.
func EncodeCommand(c *cxkvpb.Command) ([]byte, error) { return encodeVT(c) }

// EncodeResult encodes a write's result for the exactly-once table.
func EncodeResult(r *cxkvpb.CommandResult) ([]byte, error) { return encodeVT(r) }

// vtMessage is a message with vtprotobuf's generated marshalling.
type vtMessage interface {
	proto.Message
	SizeVT() int
	MarshalToSizedBufferVT([]byte) (int, error)
}

// encodeVT is MarshalVT, which writes SizeVT bytes backwards from the end
// of the buffer, except that a message it writes shorter than its size
// goes to proto.Marshal.
func encodeVT(m vtMessage) ([]byte, error) {
	size := m.SizeVT()
	buf := make([]byte, size)
	n, err := m.MarshalToSizedBufferVT(buf)
	if err != nil {
		return nil, err
	}
	if n != size {
		return proto.Marshal(m)
	}
	return buf, nil
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
