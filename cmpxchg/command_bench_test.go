package cmpxchg_test

import (
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"google.golang.org/protobuf/proto"
)

// BenchmarkEncode compares the encoders of what every write encodes: its
// command (on the proposing member) and its result (on every member, for
// the exactly-once table), as cas-parallel's and lock-many's writes are.
// encoder=proto is proto.Marshal, which cxkv used before; encoder=cxkv is
// what it uses (EncodeCommand, EncodeResult).
func BenchmarkEncode(b *testing.B) {
	wid := &cxkvpb.WriteID{ClientId: 0x1234567890, Seq: 999, AckedSeq: 998}
	put := &cxkvpb.Command{StampUnixMs: 1_700_000_000_000, ClusterMs: proto.Int64(1_700_000_000_000),
		Op: &cxkvpb.Command_Put{Put: &cxkvpb.PutRequest{Key: "bench/cas/000123", Value: []byte("0123456789abcdef0123456789abcdef"), ExpectIndex: 12345, WriteId: wid}}}
	lock := &cxkvpb.Command{StampUnixMs: 1_700_000_000_000, ClusterMs: proto.Int64(1_700_000_000_000),
		Op: &cxkvpb.Command_Txn{Txn: &cxkvpb.TxnRequest{
			Compares: []*cxkvpb.Compare{{Key: "bench/lock/12/.lock/0123456789abcdef", Op: cxkvpb.Compare_ABSENT}, {Key: "bench/lock/12", Op: cxkvpb.Compare_ABSENT}},
			Ops: []*cxkvpb.TxnOp{{Type: cxkvpb.TxnOp_PUT, Key: "bench/lock/12/.lock/0123456789abcdef", Value: []byte(`{"id":"0123456789abcdef","name":"bench","session":"s01"}`), Session: "s01"},
				{Type: cxkvpb.TxnOp_HEAD, Key: "bench/lock/12/.lock/"}},
			WriteId: wid}}}
	result := &cxkvpb.CommandResult{Result: &cxkvpb.CommandResult_Txn{Txn: &cxkvpb.TxnResponse{Successful: true,
		Results: []*cxkvpb.TxnOpResult{{Record: &cxkvpb.Record{Key: "bench/lock/12/.lock/0123456789abcdef", Index: 4711, CreateIndex: 4711}},
			{Record: &cxkvpb.Record{Key: "bench/lock/12/.lock/0123456789abcdef", Index: 4711, CreateIndex: 4711}}}}}}
	for _, c := range []struct {
		name string
		m    proto.Message
		cxkv func() ([]byte, error)
	}{
		{"put", put, func() ([]byte, error) { return cmpxchg.EncodeCommand(put) }},
		{"lock-txn", lock, func() ([]byte, error) { return cmpxchg.EncodeCommand(lock) }},
		{"txn-result", result, func() ([]byte, error) { return cmpxchg.EncodeResult(result) }},
	} {
		b.Run(c.name+"/encoder=proto", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := proto.Marshal(c.m); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/encoder=cxkv", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.cxkv(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
