package cxkvrpc

import (
	"github.com/cxkv/cxkv/api/cxkvpb"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// Codec is gRPC's proto codec with cxkvpb.Marshal for cxkv's own messages:
// the members' answers and the SDK's requests are encoded by generated code
// instead of by reflection. The bytes are a valid encoding of the message
// whichever encoder wrote them, so either side may run either codec.
// Decoding is gRPC's own (proto.Unmarshal), which refuses strings that are
// not UTF-8 before anything reads them; other messages (health checks,
// Raft's) go through gRPC's codec both ways.
//
// Members install it with grpc.ForceServerCodecV2, clients with
// grpc.ForceCodecV2 as a default call option.
type Codec struct{}

var protoCodec = encoding.GetCodecV2(grpcproto.Name)

// Name is gRPC's proto codec's: the content type on the wire is unchanged.
func (Codec) Name() string { return grpcproto.Name }

func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(cxkvpb.VTMessage)
	if !ok {
		return protoCodec.Marshal(v)
	}
	// As gRPC's codec does: a small message gets a buffer of its own, a
	// larger one a pooled buffer that gRPC frees once it is written.
	size := m.SizeVT()
	var pool mem.BufferPool
	var buf *[]byte
	if mem.IsBelowBufferPoolingThreshold(size) {
		b := make([]byte, size)
		buf = &b
	} else {
		pool = mem.DefaultBufferPool()
		buf = pool.Get(size)
	}
	written, err := cxkvpb.MarshalInto(m, *buf)
	if err != nil || !written {
		if pool != nil {
			pool.Put(buf)
		}
		if err != nil {
			return nil, err
		}
		return protoCodec.Marshal(v) // see cxkvpb.Marshal
	}
	if pool == nil {
		return mem.BufferSlice{mem.SliceBuffer(*buf)}, nil
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

func (Codec) Unmarshal(data mem.BufferSlice, v any) error { return protoCodec.Unmarshal(data, v) }
