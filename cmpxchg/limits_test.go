package cmpxchg_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/kv"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
)

// applyOnce applies cmd at index on a fresh batch of s and commits it; a Go
// error from Apply fails the test, since every member would halt on it.
func applyOnce(t *testing.T, s *kv.Store, sm *cmpxchg.StateMachine, index uint64, cmd *cxkvpb.Command) *cxkvpb.CommandResult {
	t.Helper()
	b := s.NewBatch()
	defer b.Close()
	res, err := sm.Apply(b, index, cmd)
	if err != nil {
		t.Fatalf("Apply of entry %d failed (every member would halt on it at every restart): %v", index, err)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	return res
}

func openStore(t *testing.T) *kv.Store {
	t.Helper()
	s, err := kv.Open("db", kv.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A Txn above the hard ops limit may reach the log from a leader whose
// flags were wrong (or from before the limit existed): every member must
// refuse it the same way, as a result, whatever its own flags.
func TestApplyRefusesTxnAboveOpsLimitAsResult(t *testing.T) {
	s := openStore(t)
	l := cmpxchg.DefaultLimits()
	l.MaxTxnOps = cmpxchg.MaxTxnOpsLimit // the most any member may be configured with
	sm := cmpxchg.New(l)
	txn := &cxkvpb.TxnRequest{}
	for i := range 70000 {
		txn.Ops = append(txn.Ops, &cxkvpb.TxnOp{Type: cxkvpb.TxnOp_PUT, Key: fmt.Sprintf("k%06d", i), Value: []byte("v")})
	}
	res := applyOnce(t, s, sm, 1, &cxkvpb.Command{Op: &cxkvpb.Command_Txn{Txn: txn}})
	e := res.GetError()
	if e == nil {
		t.Fatalf("a Txn of 70000 ops applied: %v", res.GetTxn().GetSuccessful())
	}
	if cmpxchg.Code(e.GetCode()) != cmpxchg.CodeInvalid || !strings.Contains(e.GetMessage(), "70000") {
		t.Fatalf("refusal = %v %q; want CodeInvalid naming the 70000 ops", e.GetCode(), e.GetMessage())
	}
	if _, found, err := s.Get("k000000"); err != nil || found {
		t.Fatalf("the refused Txn left k000000 (found=%v, err=%v)", found, err)
	}
}

// Limits a member is configured with cannot pass what the storage layer and
// the message size allow: such a member would accept entries others (and it
// itself) cannot apply or answer.
func TestLimitsAboveHardLimitsAreRefused(t *testing.T) {
	if err := cmpxchg.DefaultLimits().Validate(); err != nil {
		t.Fatalf("default limits refused: %v", err)
	}
	for _, c := range []struct {
		name string
		set  func(*cmpxchg.Limits)
		want string
	}{
		{"ops", func(l *cmpxchg.Limits) { l.MaxTxnOps = cmpxchg.MaxTxnOpsLimit + 1 }, "max-txn-ops"},
		{"ops zero", func(l *cmpxchg.Limits) { l.MaxTxnOps = 0 }, "max-txn-ops"},
		{"value", func(l *cmpxchg.Limits) { l.MaxValueBytes = cmpxchg.MaxValueBytesLimit + 1 }, "max-value-bytes"},
		{"txn bytes", func(l *cmpxchg.Limits) { l.MaxTxnBytes = cmpxchg.MaxTxnBytesLimit + 1 }, "max-txn-bytes"},
	} {
		l := cmpxchg.DefaultLimits()
		c.set(&l)
		err := l.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Validate() = %v; want an error naming %s", c.name, err, c.want)
		}
	}
}

// The answer of a Txn is bounded, whatever the request's size: 70 gets of
// one 1 MiB key and one put make a ~73 MB answer from a ~2 KB request.
// Apply refuses it whole (the put does not happen), the exactly-once table
// keeps only the refusal, and the state stays one a snapshot restores.
func TestApplyRefusesTxnWhoseAnswerExceedsMessageLimit(t *testing.T) {
	s := openStore(t)
	sm := cmpxchg.New(cmpxchg.DefaultLimits())
	big := make([]byte, cmpxchg.MaxValueBytesLimit)
	if res := applyOnce(t, s, sm, 1, &cxkvpb.Command{Op: &cxkvpb.Command_Put{Put: &cxkvpb.PutRequest{Key: "big", Value: big}}}); !res.GetPut().GetSuccessful() {
		t.Fatalf("put big: %v", res)
	}
	txn := &cxkvpb.TxnRequest{WriteId: &cxkvpb.WriteID{ClientId: 7, Seq: 1, NewClient: true}}
	for range 70 {
		txn.Ops = append(txn.Ops, &cxkvpb.TxnOp{Type: cxkvpb.TxnOp_GET, Key: "big"})
	}
	txn.Ops = append(txn.Ops, &cxkvpb.TxnOp{Type: cxkvpb.TxnOp_PUT, Key: "marker", Value: []byte("x")})
	cmd := &cxkvpb.Command{Op: &cxkvpb.Command_Txn{Txn: txn}}
	if n := proto.Size(cmd); n > 4<<10 {
		t.Fatalf("the request is %d bytes; the test wants a small one", n)
	}
	for i, index := range []uint64{2, 3} { // the second is a retry, answered from the table
		res := applyOnce(t, s, sm, index, cmd)
		if n := proto.Size(res); n > cxkvpb.MaxMessageBytes {
			t.Fatalf("apply %d: the answer is %d bytes; the message limit is %d", i, n, cxkvpb.MaxMessageBytes)
		}
		e := res.GetError()
		if e == nil || codes.Code(e.GetCode()) != codes.InvalidArgument || !strings.Contains(e.GetMessage(), "answer") {
			t.Fatalf("apply %d: %v; want the Txn refused as InvalidArgument naming its answer's size", i, res)
		}
	}
	if _, found, err := s.Get("marker"); err != nil || found {
		t.Fatalf("the refused Txn's put applied (found=%v, err=%v)", found, err)
	}
	var buf bytes.Buffer
	snap := s.NewStateSnapshot()
	_, err := snap.WriteTo(&buf)
	snap.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := openStore(t).RestoreState(&buf); err != nil {
		t.Fatalf("restore: %v", err)
	}
}
