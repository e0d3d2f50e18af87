package cmpxchg_test

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/kv"
)

// BenchmarkApply measures Apply alone (one command per batch commit, no
// fsync), with and without a write id: the cost of exactly-once. With
// dedup=swapped the writes of the one client arrive with neighbouring seqs
// swapped (1, 3, 2, 5, 4, ...), as a client with many writes in flight
// sends them: half arrive below the client's top seq. With batch=32, 32
// commands share one batch commit, as the entries of one Ready do under
// load (17-31 entries per fsync in BenchmarkPut/clients=128).
func BenchmarkApply(b *testing.B) {
	putReplace := func(i int, prev uint64) *cxkvpb.Command {
		return &cxkvpb.Command{Op: &cxkvpb.Command_Put{Put: &cxkvpb.PutRequest{Key: "k", Value: []byte("value"), ExpectIndex: prev}}}
	}
	for _, dedup := range []string{"false", "true", "swapped"} {
		b.Run(fmt.Sprintf("put-replace/dedup=%v", dedup), func(b *testing.B) {
			benchApply(b, dedup, 1, putReplace)
		})
		if dedup == "swapped" {
			b.Run("put-replace/dedup=swapped/batch=32", func(b *testing.B) {
				benchApply(b, dedup, 32, putReplace)
			})
			continue
		}
		b.Run(fmt.Sprintf("txn-transfer/dedup=%v", dedup), func(b *testing.B) {
			benchApply(b, dedup, 1, func(i int, prev uint64) *cxkvpb.Command {
				return &cxkvpb.Command{Op: &cxkvpb.Command_Txn{Txn: &cxkvpb.TxnRequest{
					Compares: []*cxkvpb.Compare{{Key: "a", Op: cxkvpb.Compare_VALUE_EQUAL, Value: []byte("x")}},
					Ops:      []*cxkvpb.TxnOp{{Type: cxkvpb.TxnOp_PUT, Key: "a", Value: []byte("x")}, {Type: cxkvpb.TxnOp_PUT, Key: "b", Value: []byte("y")}},
				}}}
			})
		})
	}
}

func benchApply(b *testing.B, dedup string, perBatch int, next func(i int, prev uint64) *cxkvpb.Command) {
	s, err := kv.Open("db", kv.Options{FS: vfs.NewMem()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	sm := cmpxchg.New(cmpxchg.DefaultLimits())
	seed := s.NewBatch()
	seed.Put(kv.Record{Key: "a", Value: []byte("x"), Index: 1, CreateIndex: 1})
	seed.Commit(false)
	seed.Close()
	var prev uint64
	var batch *kv.Batch
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd := next(i, prev)
		if dedup != "false" {
			id := &cxkvpb.WriteID{ClientId: 1, Seq: uint64(i + 1), AckedSeq: uint64(i), NewClient: i == 0}
			if dedup == "swapped" && i > 0 {
				// Every seq up to i-1 was applied before step i.
				id.Seq, id.AckedSeq = uint64((i-1)^1)+2, uint64(i-1)
			}
			if p := cmd.GetPut(); p != nil {
				p.WriteId = id
			} else {
				cmd.GetTxn().WriteId = id
			}
		}
		if batch == nil {
			batch = s.NewBatch()
		}
		res, err := sm.Apply(batch, uint64(i+2), cmd)
		if err != nil {
			b.Fatal(err)
		}
		if (i+1)%perBatch == 0 || i == b.N-1 {
			if err := batch.Commit(false); err != nil {
				b.Fatal(err)
			}
			batch.Close()
			batch = nil
		}
		if p := res.GetPut(); p != nil {
			if !p.GetSuccessful() {
				b.Fatalf("step %d: put failed: %v", i, p)
			}
			prev = p.GetRecord().GetIndex()
		} else if res.GetTxn() == nil {
			b.Fatalf("step %d: %v", i, res)
		}
	}
}
