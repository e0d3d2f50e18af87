package bench

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

var fanout = flag.Bool("fanout", false, "run TestWatchFanout: write latency beside idle watchers of another prefix")

// TestWatchFanout measures what idle watchers cost writes they have nothing
// to do with: cas-seq and cas-parallel with 0, 16 and 64 watchers on
// unrelated prefixes, on an in-process cluster (so "cpu/op" is the whole
// process: members and clients). Ideally the figures do not move; on
// 2026-11-25 16 watchers doubled cas-seq's p50 (BENCHMARKS.md). Off by
// default: it takes 20 s and asserts nothing.
//
//	go test -run WatchFanout -fanout -v .
func TestWatchFanout(t *testing.T) {
	if !*fanout {
		t.Skip("measurement; run with -fanout")
	}
	cl := raftnodetest.Start(t, 3)
	b := Cxkv{Endpoints: cl.Endpoints()}
	for _, n := range []int{0, 16, 64} {
		ctx, cancel := context.WithCancel(t.Context())
		for i := range n {
			c, err := client.New(client.Config{Endpoints: cl.Endpoints()})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			go func() {
				for range c.Watch(ctx, fmt.Sprintf("elsewhere/%d/", i), 0) {
				}
			}()
		}
		// Let the watch streams open before the clock starts.
		time.Sleep(300 * time.Millisecond)
		for _, wl := range []string{CASSeq, CASParallel} {
			res, err := Run(t.Context(), b, wl, Config{Duration: 3 * time.Second, Prefix: fmt.Sprintf("fanout/%d/%s", n, wl)})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("idle watchers %3d  %-13s %7.0f ops/s  p50 %.2fms  p99 %.2fms  cpu/op %.2fms", n, wl, res.OpsPerSec, res.P50, res.P99, res.ClientCPUPerOp)
		}
		cancel()
	}
}
