package lock_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client/lock"
	"github.com/cxkv/cxkv/internal/invariants"
)

// A held lock survives a cluster saturated by acquisitions (issue 17: with
// 640 goroutines acquiring across 10 processes, 94,417 of 100,000 locks
// were lost while acquiring, with no fault). Under that load a write spends
// longer in the leader's pipeline (here 0.3 to 1.3 s) than a renewal
// attempt's bound of TTL/6; each attempt was cut while the leader worked
// through the writes ahead of it, and sent again at the back of the queue,
// until the lease ran out. The load comes from the holder's own monitor
// and from a second client's monitor; quiet, on that second client, holds
// one lock and acquires nothing.
func TestHeldLockSurvivesSaturatingAcquisitions(t *testing.T) {
	if os.Getenv("CXKV_RENEW_LOAD") == "" {
		// Whether the in-process cluster keeps a leader that applies under
		// this load depends on what else the machine runs: at load average
		// 14-19 on 2 cores some runs made under 900 acquisitions in 10 s
		// and lost even the leader (nothing the client can outwait), so the
		// suite leaves it to those who ask.
		t.Skip("set CXKV_RENEW_LOAD=1: saturates an in-process cluster for several leases")
	}
	if invariants.Enabled {
		// Measured under -race on this 2-core machine: 32 goroutines made
		// 48 acquisitions in 4 s and a member took 200-300 ms to answer a
		// Status, so no load leaves writes between TTL/6 and the lease.
		t.Skip("the race detector slows an in-process cluster too much to saturate it within a lease")
	}
	cl, c := start(t)
	other := dial(t, cl.Endpoints())
	ctx := context.Background()
	// A short TTL so the test spans several leases in seconds; a renewal
	// attempt is then given 667 ms without progress, less than a write takes
	// under the load.
	ttl := 4 * time.Second
	holder := lock.NewProcessMonitor(c, lock.Options{TTL: ttl, Name: "holder"})
	defer holder.Close()
	idle := lock.NewProcessMonitor(other, lock.Options{TTL: ttl, Name: "idle"})
	defer idle.Close()
	busy := lock.NewProcessMonitor(other, lock.Options{TTL: ttl, Name: "busy"})
	defer busy.Close()

	held, err := holder.Lock(ctx, "renewload/held")
	if err != nil {
		t.Fatal(err)
	}
	quiet, err := idle.Lock(ctx, "renewload/quiet")
	if err != nil {
		t.Fatal(err)
	}
	lost, quietLost := held.Lost(), quiet.Lost()

	// Each goroutine acquires and releases names of its own, as fast as the
	// cluster lets it, for several leases.
	// Enough writers that a write's time in the pipeline exceeds 667 ms,
	// few enough that it stays well under the lease.
	const workers = 512
	var (
		wg       sync.WaitGroup
		acquired atomic.Int64
		stop     = make(chan struct{})
		errs     = make(chan error, workers)
	)
	for w := range workers {
		mon := holder
		if w%2 == 1 {
			mon = busy
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				l, err := mon.Lock(ctx, fmt.Sprintf("renewload/%d/%d", w, i))
				if err != nil {
					errs <- err
					return
				}
				acquired.Add(1)
				// Under this load a release may outlast the client's 2 s
				// RequestTimeout; the monitor's session deletes the key at
				// the end, so it is not retried here.
				_ = l.Unlock()
			}
		}()
	}
	deadline := time.NewTimer(3 * ttl)
	select {
	case <-lost:
	case <-quietLost:
	case <-deadline.C:
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("acquiring: %v", err)
	}
	t.Logf("%d acquisitions beside the held locks", acquired.Load())
	for _, l := range []*lock.Lock{held, quiet} {
		select {
		case <-l.Lost():
			t.Errorf("%s was lost under the load: %v", l.Name(), l.Unlock())
		default:
		}
	}
}
