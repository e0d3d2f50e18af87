package raftnode_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// BenchmarkPut: replicated Put-if-index on a 3-member in-process cluster
// (real gRPC on loopback, real fsyncs), with 1, 16 and 128 concurrent
// clients each on its own key. Throughput should grow with concurrency:
// the Ready loop puts many proposals into one fsync. entries/fsync reports
// how many log entries the leader persisted per synced write.
func BenchmarkPut(b *testing.B) {
	for _, clients := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			c := raftnodetest.Start(b, 3, func(cfg *raftnode.Config) { cfg.TickInterval = 50_000_000 })
			lead := c.WaitLeader()
			kv := c.Client(lead)
			syncs0, ents0 := c.Members[lead].Metrics()
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for w := 0; w < clients; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					key := fmt.Sprintf("bench/%d", w)
					var idx uint64
					for next.Add(1) <= int64(b.N) {
						r, err := kv.Put(context.Background(), &cxkvpb.PutRequest{Key: key, Value: []byte("value"), ExpectIndex: idx})
						if err != nil || !r.GetSuccessful() {
							b.Errorf("put %s: %v %v", key, err, r.GetSuccessful())
							return
						}
						idx = r.GetRecord().GetIndex()
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			syncs1, ents1 := c.Members[lead].Metrics()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
			if d := syncs1 - syncs0; d > 0 {
				b.ReportMetric(float64(ents1-ents0)/float64(d), "entries/fsync")
			}
		})
	}
}
