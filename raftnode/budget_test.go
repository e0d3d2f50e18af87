package raftnode_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A burst of large writes is pushed back, not queued without bound: past
// the member's bytes of writes in flight, a write is refused at once with
// ResourceExhausted, and it did not apply.
func TestWriteFloodIsPushedBack(t *testing.T) {
	defer raftnode.SetProposalBudget(4 << 20)()
	c := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) { cfg.ElectionTicks = 100 })
	kv := c.Client(c.WaitLeader())
	val := bytes.Repeat([]byte{'f'}, 1<<20)
	const writers = 32
	errs := make([]error, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			<-start
			_, errs[i] = kv.Put(ctx, &cxkvpb.PutRequest{Key: fmt.Sprintf("flood/%02d", i), Value: val})
		}()
	}
	close(start)
	wg.Wait()
	busy := 0
	for i, err := range errs {
		switch status.Code(err) {
		case codes.OK:
		case codes.ResourceExhausted:
			busy++
			if !strings.Contains(err.Error(), "not proposed") {
				t.Errorf("write %d: %v; want the refusal to say the write was not proposed", i, err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r, err := kv.Get(ctx, &cxkvpb.GetRequest{Key: fmt.Sprintf("flood/%02d", i)})
			cancel()
			if err != nil || r.GetFound() {
				t.Errorf("write %d was refused, yet its key is there (%v, %v)", i, r.GetFound(), err)
			}
		case codes.Unavailable, codes.DeadlineExceeded:
			// A failover on a loaded machine (the race detector): an
			// unknown outcome, which is not what this test is about.
		default:
			t.Errorf("write %d: %v; want success or ResourceExhausted", i, err)
		}
	}
	t.Logf("%d of %d concurrent 1 MiB writes refused as busy", busy, writers)
	if busy == 0 {
		t.Fatalf("%d MiB of writes at once through a member with a 4 MiB budget were all queued; want some pushed back", writers)
	}
}

// TestFloodPeakRSS measures the peak RSS of a 3-member in-process cluster
// (and its clients) while CXKV_FLOOD_WRITERS writers (default 96) put 1 MiB
// values through the leader as fast as it answers; it runs only with
// CXKV_FLOOD_SECONDS set:
//
//	CXKV_FLOOD_SECONDS=20 go test -run TestFloodPeakRSS -v ./raftnode
func TestFloodPeakRSS(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("CXKV_FLOOD_SECONDS"))
	if secs <= 0 {
		t.Skip("a measurement: set CXKV_FLOOD_SECONDS")
	}
	writers, _ := strconv.Atoi(os.Getenv("CXKV_FLOOD_WRITERS"))
	if writers <= 0 {
		writers = 96
	}
	c := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) { cfg.ElectionTicks = 50 })
	kv := c.Client(c.WaitLeader())
	val := bytes.Repeat([]byte{'f'}, 1<<20)
	var ok, busy atomic.Int64
	var mu sync.Mutex
	other := map[codes.Code]int{}
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline); i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: fmt.Sprintf("flood/%d/%d", w, i), Value: val})
				cancel()
				switch status.Code(err) {
				case codes.OK:
					ok.Add(1)
				case codes.ResourceExhausted:
					busy.Add(1)
					time.Sleep(50 * time.Millisecond)
				default:
					mu.Lock()
					other[status.Code(err)]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	status, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM") || strings.HasPrefix(line, "VmRSS") {
			t.Log(line)
		}
	}
	t.Logf("%d writers, %ds: %d written, %d refused as busy, other errors by code: %v", writers, secs, ok.Load(), busy.Load(), other)
}
