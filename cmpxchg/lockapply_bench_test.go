package cmpxchg_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/kv"
)

// BenchmarkApplyLockOps applies what one operation of the bench's lock-many
// workload logs, on a store on disk: a queue entry created under a session
// with the queue's head asked in the same Txn, the counter's unguarded
// write, the entry's guarded delete; 32 clients with a session each, 1000
// locks, 8 commands per batch commit, each with a write id. One op of the
// benchmark is those three commands. It is where a lock operation's apply
// CPU goes, without Raft or gRPC; run long enough for the memtable to flush
// (-benchtime 20000x or more), as the members' stores do.
func BenchmarkApplyLockOps(b *testing.B) {
	const (
		clients  = 32
		locks    = 1000
		perBatch = 8
	)
	s, err := kv.Open(b.TempDir(), kv.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	sm := cmpxchg.New(cmpxchg.DefaultLimits())
	index := uint64(1)
	seq := make([]uint64, clients)
	var batch *kv.Batch
	n := 0
	apply := func(g int, cmd *cxkvpb.Command) *cxkvpb.TxnResponse {
		seq[g]++
		wid := &cxkvpb.WriteID{ClientId: uint64(g + 1), Seq: seq[g], AckedSeq: seq[g] - 1, NewClient: seq[g] == 1}
		cmd.GetTxn().WriteId = wid
		cmd.StampUnixMs = 1_700_000_000_000 + int64(index)
		if batch == nil {
			batch = s.NewBatch()
		}
		index++
		res, err := sm.Apply(batch, index, cmd)
		if err != nil {
			b.Fatal(err)
		}
		if n++; n%perBatch == 0 {
			if err := batch.Commit(false); err != nil {
				b.Fatal(err)
			}
			batch.Close()
			batch = nil
		}
		if res.GetTxn() == nil {
			b.Fatalf("index %d: %v", index, res)
		}
		return res.GetTxn()
	}
	txn := func(compares []*cxkvpb.Compare, ops ...*cxkvpb.TxnOp) *cxkvpb.Command {
		return &cxkvpb.Command{Op: &cxkvpb.Command_Txn{Txn: &cxkvpb.TxnRequest{Compares: compares, Ops: ops}}}
	}
	session := func(g int) string { return fmt.Sprintf("s%02d", g) }
	for g := range clients {
		key := cxkvpb.SessionKey(session(g))
		apply(g, txn([]*cxkvpb.Compare{{Key: key, Op: cxkvpb.Compare_ABSENT}},
			&cxkvpb.TxnOp{Type: cxkvpb.TxnOp_PUT, Key: key, Value: []byte(`{"monitor":"bench"}`), TtlMs: 10_000}))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g, k := i%clients, rng.IntN(locks)
		name := fmt.Sprintf("bench/lock/%d", k)
		entry := fmt.Sprintf("%s/.lock/%016x", name, rng.Uint64())
		owner := []byte(fmt.Sprintf(`{"id":"%016x","name":"bench","session":%q}`, rng.Uint64(), session(g)))
		res := apply(g, txn([]*cxkvpb.Compare{{Key: entry, Op: cxkvpb.Compare_ABSENT}, {Key: name, Op: cxkvpb.Compare_ABSENT}},
			&cxkvpb.TxnOp{Type: cxkvpb.TxnOp_PUT, Key: entry, Value: owner, Session: session(g)},
			&cxkvpb.TxnOp{Type: cxkvpb.TxnOp_HEAD, Key: name + "/.lock/"}))
		if !res.GetSuccessful() {
			b.Fatalf("create %s: %v", entry, res)
		}
		counter := fmt.Sprintf("bench/counter/%d", k)
		apply(g, txn(nil, &cxkvpb.TxnOp{Type: cxkvpb.TxnOp_PUT, Key: counter, Value: []byte(fmt.Sprint(i))}))
		res = apply(g, txn([]*cxkvpb.Compare{{Key: entry, Op: cxkvpb.Compare_VALUE_EQUAL, Value: owner}},
			&cxkvpb.TxnOp{Type: cxkvpb.TxnOp_DELETE, Key: entry}))
		if !res.GetSuccessful() {
			b.Fatalf("release %s: %v", entry, res)
		}
	}
	b.StopTimer()
	if batch != nil {
		batch.Close()
	}
}
