package cxkvrpc_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

// The codec's bytes decode to the message it was given, for cxkv's
// messages below and above gRPC's buffer pooling threshold (the two ways
// it writes them) and for a message of another package (gRPC's own codec).
func TestCodecRoundTrips(t *testing.T) {
	big := bytes.Repeat([]byte("v"), 64<<10)
	for _, m := range []proto.Message{
		&cxkvpb.CallRequest{Id: 7, TimeoutUs: 1000, Op: &cxkvpb.CallRequest_Put{Put: &cxkvpb.PutRequest{Key: "k", Value: []byte("v"), ExpectIndex: 3,
			WriteId: &cxkvpb.WriteID{ClientId: 1, Seq: 2, AckedSeq: 1}}}},
		&cxkvpb.CallRequest{Id: 8, Op: &cxkvpb.CallRequest_Put{Put: &cxkvpb.PutRequest{Key: "big", Value: big}}},
		&cxkvpb.CallResponse{Id: 7, Op: &cxkvpb.CallResponse_Txn{Txn: &cxkvpb.TxnResponse{Successful: true, FailedCompare: -1, Index: 9,
			Compared: []*cxkvpb.Record{{Key: "a", Value: []byte("x"), Index: 4, CreateIndex: 2}}}}},
		&cxkvpb.RaftBatch{ClusterId: 1, From: 2, To: 3, Messages: [][]byte{[]byte("m1"), big}},
		&cxkvpb.SnapshotChunk{ClusterId: 1, Data: big},
		&healthpb.HealthCheckRequest{Service: "cxkv"},
	} {
		data, err := cxkvrpc.Codec{}.Marshal(m)
		if err != nil {
			t.Fatalf("marshal %T: %v", m, err)
		}
		got := m.ProtoReflect().New().Interface()
		if err := (cxkvrpc.Codec{}).Unmarshal(data, got); err != nil {
			t.Fatalf("unmarshal %T: %v", m, err)
		}
		data.Free()
		if !proto.Equal(got, m) {
			t.Errorf("%T came back as %v", m, got)
		}
	}
}

// A oneof holding a nil message is written by vtprotobuf one byte short of
// the size it reports (cxkvpb.Marshal); the codec must send what
// proto.Marshal sends instead, both ways it writes.
func TestCodecSendsANilOneofDecodable(t *testing.T) {
	for _, m := range []*cxkvpb.CallRequest{
		{Id: 1, Op: &cxkvpb.CallRequest_Put{}},
		{Id: 2, Authorization: strings.Repeat("t", 64<<10), Op: &cxkvpb.CallRequest_Put{}},
	} {
		data, err := cxkvrpc.Codec{}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		want, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := data.Materialize(); !bytes.Equal(got, want) {
			t.Errorf("call %d: the codec wrote %d bytes %x..., proto.Marshal %d bytes %x...", m.Id, len(got), got[:min(8, len(got))], len(want), want[:min(8, len(want))])
		}
		data.Free()
	}
}
