package cmpxchg_test

import (
	"errors"
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
)

// The TTL limit holds at its boundary, before proposing and in Apply's own
// check (a command logged by an older member that did not validate it is
// refused on every member alike).
func TestTTLBoundary(t *testing.T) {
	limit := cmpxchg.MaxTTL.Milliseconds()
	l := cmpxchg.DefaultLimits()
	for _, tc := range []struct {
		ttl int64
		ok  bool
	}{{limit, true}, {limit + 1, false}, {1 << 62, false}, {-1, false}, {0, true}} {
		put := &cxkvpb.PutRequest{Key: "k", Value: []byte("v"), TtlMs: tc.ttl}
		txn := &cxkvpb.TxnRequest{Ops: []*cxkvpb.TxnOp{{Type: cxkvpb.TxnOp_PUT, Key: "k", Value: []byte("v"), TtlMs: tc.ttl}}}
		for what, err := range map[string]error{"put": cmpxchg.ValidatePut(put, l), "txn": cmpxchg.ValidateTxn(txn, l)} {
			if got := err == nil; got != tc.ok || !tc.ok && !isInvalid(err) {
				t.Errorf("validate %s with ttl %d: %v; want ok=%v or CodeInvalid", what, tc.ttl, err, tc.ok)
			}
		}
		m := newMachine(t, l)
		const stamp = 1_000_000
		for i, cmd := range []*cxkvpb.Command{
			{Op: &cxkvpb.Command_Put{Put: put}, StampUnixMs: stamp},
			{Op: &cxkvpb.Command_Txn{Txn: txn}, StampUnixMs: stamp},
		} {
			b := m.store.NewBatch()
			res, err := m.sm.Apply(b, uint64(i+1), cmd)
			b.Close()
			if err != nil {
				t.Fatal(err)
			}
			if refused := cmpxchg.ResultError(res); (refused == nil) != tc.ok || !tc.ok && !isInvalid(refused) {
				t.Errorf("apply %T with ttl %d: refused = %v; want refused=%v with CodeInvalid", cmd.GetOp(), tc.ttl, refused, !tc.ok)
			}
			rec := res.GetPut().GetRecord()
			if txn := res.GetTxn(); txn != nil && len(txn.GetResults()) == 1 {
				rec = txn.GetResults()[0].GetRecord()
			}
			if tc.ok && tc.ttl > 0 && rec.GetExpiresAtUnixMs() != stamp+tc.ttl {
				t.Errorf("ttl %d: expires at %d; want %d", tc.ttl, rec.GetExpiresAtUnixMs(), stamp+tc.ttl)
			}
		}
	}
}

func isInvalid(err error) bool {
	var e *cmpxchg.Error
	return errors.As(err, &e) && e.Code == cmpxchg.CodeInvalid
}
