package client

import (
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// moveInto leaves a new message equal to the answer it was given, every
// field set (repeated and nested ones too) and the unknown fields of a
// newer member kept.
func TestMoveIntoKeepsEveryField(t *testing.T) {
	h := &cxkvpb.Header{MemberId: 1, LeaderId: 2, Term: 3, AppliedIndex: 4, QuorumContact: true}
	rec := func(k string) *cxkvpb.Record {
		return &cxkvpb.Record{Key: k, Value: []byte("v-" + k), Index: 7, CreateIndex: 5}
	}
	unknown := protowire.AppendTag(nil, 999, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 42)
	for _, src := range []proto.Message{
		&cxkvpb.PutResponse{Header: h, Successful: true, Record: rec("p")},
		&cxkvpb.DeleteResponse{Header: h, Successful: true, Record: rec("d"), Index: 9},
		&cxkvpb.GetResponse{Header: h, Record: rec("g"), Found: true},
		&cxkvpb.TxnResponse{Header: h, Successful: true, FailedCompare: -1, Index: 11,
			Compared: []*cxkvpb.Record{rec("a"), rec("b")},
			Results:  []*cxkvpb.TxnOpResult{{Found: true, Record: rec("c")}, {}}},
	} {
		src.ProtoReflect().SetUnknown(unknown)
		want := proto.Clone(src)
		dst := src.ProtoReflect().New().Interface()
		moveInto(dst, src)
		if !proto.Equal(dst, want) {
			t.Errorf("moved %T: got %v, want %v", src, dst, want)
		}
	}
}
