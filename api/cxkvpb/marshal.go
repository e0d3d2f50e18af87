package cxkvpb

import "google.golang.org/protobuf/proto"

// VTMessage is a message with the marshalling vtprotobuf generates for this
// package (cxkv_vtproto.pb.go): every message here is one.
type VTMessage interface {
	proto.Message
	SizeVT() int
	MarshalToSizedBufferVT([]byte) (int, error)
}

// Marshal encodes m with its generated marshalling, 2-4x faster than
// proto.Marshal, which walks the message by reflection; it is what encodes
// the log's commands, the stored results (cmpxchg) and the messages gRPC
// sends (cxkvrpc.Codec).
//
// The generated code writes SizeVT bytes backwards from the end of the
// buffer. In the vtprotobuf version gRPC pins, one case writes fewer: a
// oneof whose message is nil (&Command_Put{}) is sized three bytes and
// written as two, so the buffer would start with a byte no decoder reads.
// proto.Marshal writes that case as an empty message. No code builds one;
// Marshal sends any message written shorter than its size to proto.Marshal,
// so a future one, at any depth, cannot be sent or logged undecodable.
func Marshal(m VTMessage) ([]byte, error) {
	size := m.SizeVT()
	buf := make([]byte, size)
	if ok, err := MarshalInto(m, buf); err != nil || !ok {
		if err != nil {
			return nil, err
		}
		return proto.Marshal(m)
	}
	return buf, nil
}

// MarshalInto encodes m into buf, which must be m.SizeVT() bytes long, and
// reports false when the generated code wrote less than that (see Marshal):
// then buf holds no encoding and the caller must use proto.Marshal.
func MarshalInto(m VTMessage, buf []byte) (bool, error) {
	n, err := m.MarshalToSizedBufferVT(buf)
	if err != nil {
		return false, err
	}
	return n == len(buf), nil
}
