package lock_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/grpc"
)

// BenchmarkLock is the bench's two lock workloads in process (members and
// clients in one process, so CPU and allocations per op are the whole
// path's; `-memprofile` with `-focus 'raftnode|cmpxchg|kv\.'` isolates the
// members'): many workers each on a random one of 1000 names (mostly
// uncontended: one Txn to acquire, one to release), and 16 workers on one
// name (every acquisition a hand-off: create, list, watch the predecessor,
// whose deletion's event carries the queue's head). One op is one acquisition and its release; the calls it
// made are reported per op by method (txn/op, list/op, get/op, watch/op:
// streams opened), the round-trip budget the recipe spends.
func BenchmarkLock(b *testing.B) {
	for _, c := range []struct {
		name           string
		workers, names int
	}{{"many", 32, 1000}, {"contended", 16, 1}} {
		b.Run(c.name, func(b *testing.B) {
			cl := raftnodetest.Start(b, 3)
			cl.WaitLeader()
			var calls sync.Map // method -> *atomic.Int64
			count := func(method string) {
				n, _ := calls.LoadOrStore(path.Base(method), new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
			cli, err := client.New(client.Config{Endpoints: cl.Endpoints(), DialOptions: []grpc.DialOption{
				grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
					count(method)
					return invoker(ctx, method, req, reply, cc, opts...)
				}),
				grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
					count(method)
					return streamer(ctx, desc, cc, method, opts...)
				}),
			}})
			if err != nil {
				b.Fatal(err)
			}
			defer cli.Close()
			mons := make([]*lock.ProcessMonitor, c.workers)
			for i := range mons {
				mons[i] = lock.NewProcessMonitor(cli, lock.Options{TTL: 10 * time.Second, Name: fmt.Sprintf("w%d", i)})
				defer mons[i].Close()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			var next atomic.Int64
			var wg sync.WaitGroup
			calls.Clear()
			b.ReportAllocs()
			b.ResetTimer()
			for _, mon := range mons {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						l, err := mon.Lock(ctx, fmt.Sprintf("bench/%d", rand.IntN(c.names)))
						if err != nil {
							b.Error(err)
							return
						}
						if err := l.Unlock(); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			for _, m := range []string{"Txn", "List", "Get", "Watch"} {
				v := 0.0
				if n, ok := calls.Load(m); ok {
					v = float64(n.(*atomic.Int64).Load())
				}
				b.ReportMetric(v/float64(b.N), strings.ToLower(m)+"/op")
			}
		})
	}
}
