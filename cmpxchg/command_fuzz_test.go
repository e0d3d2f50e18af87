package cmpxchg_test

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/kv"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Log entries are input the state machine must not trust: a member applies
// whatever the log holds. These targets feed it arbitrary bytes and arbitrary
// requests; the seed corpora are under testdata/fuzz/<target>/.

// fuzzStore is a store with a little state for a command to meet: a plain
// key, a key with a TTL, and an exactly-once session, at indexes 1-3. It is
// built the same way every time, so two of them are identical.
func fuzzStore(t *testing.T) *kv.Store {
	t.Helper()
	s, err := kv.Open("db", kv.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	sm := cmpxchg.New(cmpxchg.DefaultLimits())
	setup := []*cxkvpb.Command{
		{StampUnixMs: 1000, Op: &cxkvpb.Command_Put{Put: &cxkvpb.PutRequest{Key: "a", Value: []byte("1")}}},
		{StampUnixMs: 1000, Op: &cxkvpb.Command_Put{Put: &cxkvpb.PutRequest{Key: "b", Value: []byte("2"), TtlMs: 5000}}},
		{StampUnixMs: 1000, Op: &cxkvpb.Command_Put{Put: &cxkvpb.PutRequest{Key: "c", Value: []byte("3"),
			WriteId: &cxkvpb.WriteID{ClientId: 7, Seq: 1, NewClient: true}}}},
	}
	for i, cmd := range setup {
		b := s.NewBatch()
		if _, err := sm.Apply(b, uint64(i+1), cmd); err != nil {
			t.Fatalf("setup %d: %v", i, err)
		}
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
		b.Close()
	}
	return s
}

// applyAt applies cmd at index 10 and returns its result and the state
// afterwards as a snapshot stream. Apply may refuse a command with a result,
// but a Go error means the store failed, which an in-memory store does not.
func applyAt(t *testing.T, s *kv.Store, cmd *cxkvpb.Command) (*cxkvpb.CommandResult, []byte) {
	t.Helper()
	b := s.NewBatch()
	defer b.Close()
	res, err := cmpxchg.New(cmpxchg.DefaultLimits()).Apply(b, 10, cmd)
	if err != nil {
		t.Fatalf("Apply(%v) returned an error on a healthy store: %v", cmd, err)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	ss := s.NewStateSnapshot()
	defer ss.Close()
	var state bytes.Buffer
	if _, err := ss.WriteTo(&state); err != nil {
		t.Fatal(err)
	}
	return res, state.Bytes()
}

// FuzzApplyCommand: any log payload either fails to decode or applies
// without panicking or failing, and applying it is a pure function of
// (state, index, command): two identical stores reach the same state and
// return the same result.
func FuzzApplyCommand(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := cmpxchg.DecodeCommand(data)
		if err != nil {
			return
		}
		res1, state1 := applyAt(t, fuzzStore(t), cmd)
		res2, state2 := applyAt(t, fuzzStore(t), cmd)
		if !proto.Equal(res1, res2) {
			t.Fatalf("Apply is not deterministic: %v then %v", res1, res2)
		}
		if !bytes.Equal(state1, state2) {
			t.Fatalf("Apply of %v left two identical stores in different states", cmd)
		}
	})
}

// FuzzValidate: the checks a member runs before proposing never panic on any
// request, and a request they accept applies without a store error.
func FuzzValidate(f *testing.F) {
	f.Fuzz(func(t *testing.T, kind byte, data []byte) {
		l := cmpxchg.DefaultLimits()
		var cmd *cxkvpb.Command
		switch kind % 3 {
		case 0:
			r := &cxkvpb.PutRequest{}
			if proto.Unmarshal(data, r) != nil || cmpxchg.ValidatePut(r, l) != nil {
				return
			}
			cmd = &cxkvpb.Command{StampUnixMs: 2000, Op: &cxkvpb.Command_Put{Put: r}}
		case 1:
			r := &cxkvpb.DeleteRequest{}
			if proto.Unmarshal(data, r) != nil || cmpxchg.ValidateDelete(r, l) != nil {
				return
			}
			cmd = &cxkvpb.Command{StampUnixMs: 2000, Op: &cxkvpb.Command_Delete{Delete: r}}
		case 2:
			r := &cxkvpb.TxnRequest{}
			if proto.Unmarshal(data, r) != nil || cmpxchg.ValidateTxn(r, l) != nil {
				return
			}
			cmd = &cxkvpb.Command{StampUnixMs: 2000, Op: &cxkvpb.Command_Txn{Txn: r}}
		}
		applyAt(t, fuzzStore(t), cmd)
	})
}

// FuzzEncodingsAgree holds EncodeCommand and EncodeResult to the bytes
// proto.Marshal writes for any command or result a log entry or a stored
// result can decode to (unknown fields, repeated fields and oneofs
// included): a stored result is replicated state, so members that encode
// with either must store the same bytes.
func FuzzEncodingsAgree(f *testing.F) {
	wid := &cxkvpb.WriteID{ClientId: 0x1234567890, Seq: 999, AckedSeq: 998}
	for _, m := range []proto.Message{
		&cxkvpb.Command{StampUnixMs: 1_700_000_000_000, Op: &cxkvpb.Command_Put{Put: &cxkvpb.PutRequest{Key: "k", Value: []byte("v"), ExpectIndex: 12, TtlMs: 5000, WriteId: wid}}},
		&cxkvpb.Command{Op: &cxkvpb.Command_Delete{Delete: &cxkvpb.DeleteRequest{Key: "k", ExpectIndex: 3}}},
		&cxkvpb.Command{Op: &cxkvpb.Command_Txn{Txn: &cxkvpb.TxnRequest{
			Compares: []*cxkvpb.Compare{{Key: "q/.lock/1", Op: cxkvpb.Compare_ABSENT}, {Key: "q", Op: cxkvpb.Compare_VALUE_EQUAL, Value: []byte{}}},
			Ops:      []*cxkvpb.TxnOp{{Type: cxkvpb.TxnOp_PUT, Key: "q/.lock/1", Value: []byte("owner"), Session: "s1"}, {Type: cxkvpb.TxnOp_HEAD, Key: "q/.lock/"}},
			WriteId:  wid}}},
		&cxkvpb.CommandResult{},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd := &cxkvpb.Command{}
		if proto.Unmarshal(data, cmd) == nil {
			agree(t, cmd, func() ([]byte, error) { return cmpxchg.EncodeCommand(cmd) })
		}
		res := &cxkvpb.CommandResult{}
		if proto.Unmarshal(data, res) == nil {
			agree(t, res, func() ([]byte, error) { return cmpxchg.EncodeResult(res) })
		}
	})
}

// TestEncodersAgreeOnEveryOperation covers what decoding never yields, so
// FuzzEncodingsAgree cannot: each case of a command's operation and of a
// result, set to an empty message and to a nil one (which the vtprotobuf
// version gRPC pins writes shorter than its size, see cxkvpb.Marshal). The
// cases are read from the .proto's descriptor, so a case added there is
// covered here.
func TestEncodersAgreeOnEveryOperation(t *testing.T) {
	for _, c := range []struct {
		new    func() proto.Message
		oneof  string // its name in the .proto
		field  string // the Go field that holds it
		encode func(proto.Message) ([]byte, error)
	}{
		{func() proto.Message { return &cxkvpb.Command{} }, "op", "Op",
			func(m proto.Message) ([]byte, error) { return cmpxchg.EncodeCommand(m.(*cxkvpb.Command)) }},
		{func() proto.Message { return &cxkvpb.CommandResult{} }, "result", "Result",
			func(m proto.Message) ([]byte, error) { return cmpxchg.EncodeResult(m.(*cxkvpb.CommandResult)) }},
	} {
		od := c.new().ProtoReflect().Descriptor().Oneofs().ByName(protoreflect.Name(c.oneof))
		if od == nil || od.Fields().Len() == 0 {
			t.Fatalf("%T has no oneof %q with cases", c.new(), c.oneof)
		}
		for i := range od.Fields().Len() {
			fd := od.Fields().Get(i)
			for _, nilMessage := range []bool{false, true} {
				m := c.new()
				r := m.ProtoReflect()
				r.Set(fd, r.NewField(fd))
				if nilMessage {
					// The oneof holds its wrapper (&Command_Put{Put: ...}); nil the message in it.
					inner := reflect.ValueOf(m).Elem().FieldByName(c.field).Elem().Elem().Field(0)
					inner.Set(reflect.Zero(inner.Type()))
				}
				t.Run(fmt.Sprintf("%s/%s/nil=%v", r.Descriptor().Name(), fd.Name(), nilMessage), func(t *testing.T) {
					agree(t, m, func() ([]byte, error) { return c.encode(m) })
				})
			}
		}
	}
}

// A repeated message field may hold a nil element, which decoding never
// yields either: both encoders write it as an empty message.
func TestEncodersAgreeOnNilElements(t *testing.T) {
	cmd := &cxkvpb.Command{Op: &cxkvpb.Command_Txn{Txn: &cxkvpb.TxnRequest{
		Compares: []*cxkvpb.Compare{nil, {Key: "k"}},
		Ops:      []*cxkvpb.TxnOp{{Type: cxkvpb.TxnOp_HEAD, Key: "q/"}, nil},
	}}}
	agree(t, cmd, func() ([]byte, error) { return cmpxchg.EncodeCommand(cmd) })
	res := &cxkvpb.CommandResult{Result: &cxkvpb.CommandResult_Txn{Txn: &cxkvpb.TxnResponse{
		Compared: []*cxkvpb.Record{nil},
		Results:  []*cxkvpb.TxnOpResult{nil, {Record: nil}},
	}}}
	agree(t, res, func() ([]byte, error) { return cmpxchg.EncodeResult(res) })
}

func agree(t *testing.T, m proto.Message, encode func() ([]byte, error)) {
	t.Helper()
	want, err := proto.Marshal(m)
	if err != nil {
		return // proto.Marshal refuses it (a string that is not UTF-8): nothing to compare
	}
	got, err := encode()
	if err != nil {
		t.Fatalf("%T: proto.Marshal encodes it, MarshalVT fails: %v", m, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%T encodes to\n%x\nwith MarshalVT, to\n%x\nwith proto.Marshal", m, got, want)
	}
}
