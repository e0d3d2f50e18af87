package client_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// A rolling restart of every member, each stopped as SIGTERM stops it (a
// leader hands off its leadership first), under writers and lock holders
// that run throughout: no request the SDK could retry fails, no lock is
// lost, and every acknowledged write is there afterwards. The longest a
// write took is logged: the stall a rolling restart costs.
func TestRollingRestartUnderLoad(t *testing.T) {
	cl, c := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		acked    = map[string]string{}
		inflight = map[string]string{}
		longest  atomic.Int64
		writes   atomic.Int64
		lockRuns atomic.Int64
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				key, val := fmt.Sprintf("w%d/%d", w, i%50), fmt.Sprintf("%d", i)
				mu.Lock()
				inflight[key] = val // it may apply even if its answer is cut off
				mu.Unlock()
				start := time.Now()
				wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
				cur, err := c.Get(wctx, key)
				if err == nil {
					var r client.PutResult
					r, err = c.Put(wctx, key, []byte(val), cur.Index)
					if err == nil && !r.Successful {
						err = fmt.Errorf("put %s: compare failed, but this writer is the key's only one", key)
					}
				}
				wcancel()
				if err == nil {
					mu.Lock()
					acked[key] = val
					mu.Unlock()
				}
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				writes.Add(1)
				if d := int64(time.Since(start)); d > longest.Load() {
					longest.Store(d)
				}
			}
		}()
	}
	// The lease is a liveness bound on the cluster's latency: under -race on
	// a loaded 2-core machine a write spanning a member's stop takes 2-3 s,
	// and a 3 s TTL leaves a renewal only 2 s (2·TTL/3) to get through.
	mon := lock.NewProcessMonitor(c, lock.Options{TTL: 5 * time.Second})
	defer mon.Close()
	for h := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
				l, err := mon.Lock(lctx, fmt.Sprintf("rolling/%d", h))
				if err == nil {
					_, err = l.Put(lctx, fmt.Sprintf("rolling/%d/data", h), []byte("x"))
					select {
					case <-l.Lost():
						err = fmt.Errorf("lock lost while held")
					case <-time.After(50 * time.Millisecond):
					}
					// Under the holder's bound, as Lock and Put are:
					// Unlock alone has one attempt's RequestTimeout (2 s
					// here), which a write across a member's stop can
					// outlast on a loaded machine.
					if uerr := l.UnlockContext(lctx); err == nil {
						err = uerr
					}
				}
				lcancel()
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					t.Errorf("lock holder %d: %v", h, err)
					return
				}
				lockRuns.Add(1)
			}
		}()
	}

	time.Sleep(300 * time.Millisecond)
	for i := range cl.Members {
		cl.Shutdown(i)
		time.Sleep(200 * time.Millisecond)
		cl.Revive(i)
		lead := cl.WaitLeader()
		raftnodetest.Eventually(t, 20*time.Second, fmt.Sprintf("member %d catches up after its restart", i+1), func() bool {
			return cl.Members[i].Status().Applied >= cl.Members[lead].Status().Commit
		})
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	if t.Failed() {
		return
	}
	for key, val := range acked {
		r, err := c.Get(context.Background(), key)
		if err != nil || (string(r.Value) != val && string(r.Value) != inflight[key]) {
			t.Fatalf("acknowledged write %s=%s lost: got %q, %v", key, val, r.Value, err)
		}
	}
	t.Logf("rolling restart of 3 members: %d writes, %d lock rounds, longest write %v", writes.Load(), lockRuns.Load(), time.Duration(longest.Load()).Round(time.Millisecond))
}
