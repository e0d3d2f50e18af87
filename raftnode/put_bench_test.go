package raftnode_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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
			proc0 := readProcCounters()
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
			readProcCounters().report(b, proc0)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
			if d := syncs1 - syncs0; d > 0 {
				b.ReportMetric(float64(ents1-ents0)/float64(d), "entries/fsync")
			}
		})
	}
}

// procCounters are the process's own costs: the three members and their
// client share it, so per write they sum what the whole cluster spent.
// Unlike the time per write, these barely move with the machine's load,
// which is what makes a per-write fixed cost visible on a busy machine.
type procCounters struct {
	cpu            time.Duration // user + system
	ctxsw          int64         // voluntary and involuntary context switches
	reads, writes  int64         // read and write syscalls (/proc/self/io; Linux only)
	haveSyscallsIO bool
}

func readProcCounters() procCounters {
	var pc procCounters
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		pc.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		pc.ctxsw = int64(ru.Nvcsw + ru.Nivcsw)
	}
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return pc
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		v, err := strconv.ParseInt(val, 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "syscr":
			pc.reads, pc.haveSyscallsIO = v, true
		case "syscw":
			pc.writes = v
		}
	}
	return pc
}

// report adds what was spent since before, per put, to b's results.
func (pc procCounters) report(b *testing.B, before procCounters) {
	n := float64(b.N)
	b.ReportMetric(float64(pc.cpu-before.cpu)/float64(time.Microsecond)/n, "cpu-us/op")
	b.ReportMetric(float64(pc.ctxsw-before.ctxsw)/n, "ctxsw/op")
	if pc.haveSyscallsIO && before.haveSyscallsIO {
		b.ReportMetric(float64(pc.writes-before.writes)/n, "syscw/op")
		b.ReportMetric(float64(pc.reads-before.reads)/n, "syscr/op")
	}
}
