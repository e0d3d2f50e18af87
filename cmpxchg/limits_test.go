package cmpxchg_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/kv"
	"google.golang.org/grpc/codes"
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
	if codes.Code(e.GetCode()) != codes.InvalidArgument || !strings.Contains(e.GetMessage(), "70000") {
		t.Fatalf("refusal = %v %q; want InvalidArgument naming the 70000 ops", codes.Code(e.GetCode()), e.GetMessage())
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
