package raftnode_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// BenchmarkWrites64 compares, with 64 concurrent clients on a 3-member
// cluster, the three write shapes a user mixes: a single-key put without a
// write id, the same put with a write id (what the SDK sends: the price of
// exactly-once), and a two-key transfer as one Txn (two index compares, two
// puts, with a write id). Each client owns its keys, so no compare fails.
// cpu-us/op is what the three members and the client spent per write
// (user + system time of the process), the figure that moves least with
// the machine's load.
func BenchmarkWrites64(b *testing.B) {
	const clients = 64
	shapes := []struct {
		name  string
		write func(kv cxkvrpc.KVClient, w int, seq uint64, idx []uint64) ([]uint64, error)
	}{
		{"put", func(kv cxkvrpc.KVClient, w int, _ uint64, idx []uint64) ([]uint64, error) {
			return benchPut(kv, w, nil, idx)
		}},
		{"put+dedup", func(kv cxkvrpc.KVClient, w int, seq uint64, idx []uint64) ([]uint64, error) {
			return benchPut(kv, w, &cxkvpb.WriteID{ClientId: uint64(w + 1), Seq: seq, AckedSeq: seq - 1, NewClient: seq == 1}, idx)
		}},
		{"txn-transfer", func(kv cxkvrpc.KVClient, w int, seq uint64, idx []uint64) ([]uint64, error) {
			a, bk := fmt.Sprintf("acct/%d/a", w), fmt.Sprintf("acct/%d/b", w)
			req := &cxkvpb.TxnRequest{
				Ops:     []*cxkvpb.TxnOp{{Key: a, Value: []byte("90")}, {Key: bk, Value: []byte("110")}},
				WriteId: &cxkvpb.WriteID{ClientId: uint64(w + 1), Seq: seq, AckedSeq: seq - 1, NewClient: seq == 1},
			}
			for i, k := range []string{a, bk} {
				if idx[i] == 0 {
					req.Compares = append(req.Compares, &cxkvpb.Compare{Key: k, Op: cxkvpb.Compare_ABSENT})
				} else {
					req.Compares = append(req.Compares, &cxkvpb.Compare{Key: k, Index: idx[i]})
				}
			}
			r, err := kv.Txn(context.Background(), req)
			if err != nil || !r.GetSuccessful() {
				return nil, fmt.Errorf("transfer: %v, failed compare %d", err, r.GetFailedCompare())
			}
			return []uint64{r.GetIndex(), r.GetIndex()}, nil
		}},
	}
	for _, shape := range shapes {
		b.Run(shape.name, func(b *testing.B) {
			c := raftnodetest.Start(b, 3, func(cfg *raftnode.Config) { cfg.TickInterval = 50 * time.Millisecond })
			kv := c.Client(c.WaitLeader())
			var (
				next sync.Mutex
				n    int
				mu   sync.Mutex
				lat  []time.Duration
				wg   sync.WaitGroup
				fail atomic.Bool
			)
			proc0 := readProcCounters()
			take := func() bool {
				next.Lock()
				defer next.Unlock()
				n++
				return n <= b.N
			}
			b.ResetTimer()
			for w := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					idx := []uint64{0, 0}
					var mine []time.Duration
					for seq := uint64(1); take() && !fail.Load(); seq++ {
						t0 := time.Now()
						var err error
						if idx, err = shape.write(kv, w, seq, idx); err != nil {
							b.Error(err)
							fail.Store(true)
							return
						}
						mine = append(mine, time.Since(t0))
					}
					mu.Lock()
					lat = append(lat, mine...)
					mu.Unlock()
				}()
			}
			wg.Wait()
			b.StopTimer()
			readProcCounters().report(b, proc0)
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			}
		})
	}
}

func benchPut(kv cxkvrpc.KVClient, w int, wid *cxkvpb.WriteID, idx []uint64) ([]uint64, error) {
	r, err := kv.Put(context.Background(), &cxkvpb.PutRequest{Key: fmt.Sprintf("k/%d", w), Value: []byte("value"), ExpectIndex: idx[0], WriteId: wid})
	if err != nil || !r.GetSuccessful() {
		return nil, fmt.Errorf("put: %v %v", err, r.GetSuccessful())
	}
	return []uint64{r.GetRecord().GetIndex(), 0}, nil
}
