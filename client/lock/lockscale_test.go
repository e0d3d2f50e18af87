package lock_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// Locks at scale: one monitor acquires n locks and holds them while the
// leader is cut off from its peers (the in-process stand-in for SIGSTOP:
// it neither commits nor hears of the new leader) for each of pauses, then
// rejoins. No lock may be lost early, and no name may be given to a second
// holder. CXKV_LOCK_SCALE=10000 runs the size, with pauses of 4 s
// and 15 s; by default 300 locks and a 4 s pause.
func TestLocksHeldThroughLeaderPause(t *testing.T) {
	n, pauses := 300, []time.Duration{4 * time.Second}
	if s := os.Getenv("CXKV_LOCK_SCALE"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			t.Fatalf("CXKV_LOCK_SCALE=%q: %v", s, err)
		}
		pauses = []time.Duration{4 * time.Second, 15 * time.Second}
	} else if testing.Short() {
		t.Skip("holds locks through a leader pause")
	}
	net := raftnodetest.NewNet(1)
	ids := []uint64{1, 2, 3}
	cl, other := start(t, func(cfg *raftnode.Config) { cfg.WrapTransport = net.Wrap(cfg.ID) })
	c := dial(t, cl.Endpoints())
	ctx := context.Background()
	ttl := 10 * time.Second
	mon := lock.NewProcessMonitor(c, lock.Options{TTL: ttl, Name: "holder"})
	defer mon.Close()

	began := time.Now()
	locks := make([]*lock.Lock, n)
	var (
		wg   sync.WaitGroup
		errs = make(chan error, n)
		next = make(chan int)
	)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				l, err := mon.Lock(ctx, fmt.Sprintf("scale/%d", i))
				if err != nil {
					errs <- err
					continue
				}
				locks[i] = l
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("acquiring: %v", err)
	}
	t.Logf("%d locks acquired in %v", n, time.Since(began))

	lost := func() int {
		k := 0
		for _, l := range locks {
			select {
			case <-l.Lost():
				k++
			default:
			}
		}
		return k
	}
	// Lost is asked only at the end: asking it starts the lock's watch, and
	// 10,000 watch streams are what a holder must not need (every member
	// wakes every stream on every write: with them, the in-process cluster
	// answered no WaitLeader within 10 s). A lock lost at any point is
	// counted all the same: the session's lease timer closes Lost whether or
	// not anyone watches.
	rival := lock.NewProcessMonitor(other, lock.Options{TTL: ttl, Name: "rival"})
	defer rival.Close()
	for _, pause := range pauses {
		leader := cl.WaitLeader()
		id := ids[leader]
		net.Isolate(id, ids)
		t.Logf("leader m%d cut off for %v", id, pause)
		// While it is away, no name is given to anyone else.
		probe := time.Now()
		for time.Since(probe) < pause {
			name := fmt.Sprintf("scale/%d", int(time.Since(began))%n)
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			l, err := rival.TryLock(pctx, name)
			cancel()
			if err == nil {
				l.Unlock()
				t.Fatalf("%s given to a second holder while its holder was alive", name)
			}
			if !errors.Is(err, lock.ErrLocked) && !errors.Is(err, context.DeadlineExceeded) && !client.IsUnavailable(err) {
				t.Logf("rival's TryLock(%s): %v", name, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		net.Heal()
		// Two renewal intervals after the pause: a lock whose renewals did
		// not get through has reached its lease end by now.
		time.Sleep(2 * ttl / 3)
	}
	if k := lost(); k != 0 {
		for _, l := range locks {
			select {
			case <-l.Lost():
				t.Fatalf("%d of %d locks lost while acquiring or through leader pauses of %v; %s: %v", k, n, pauses, l.Name(), l.Unlock())
			default:
			}
		}
	}
	// No second holder, checked name by name.
	released := time.Now()
	for i := range min(n, 300) {
		l, err := rival.TryLock(ctx, fmt.Sprintf("scale/%d", i))
		if err == nil {
			l.Unlock()
			// A second holder only if the first still held it: a lock
			// whose Lost had closed was the holder's loss, not shared.
			select {
			case <-locks[i].Lost():
				t.Fatalf("scale/%d given to the rival after its holder lost it (%v; %d of %d lost by then), after %v of checking", i, locks[i].Unlock(), lost(), n, time.Since(released))
			default:
				t.Fatalf("scale/%d given to a second holder while its holder still held it", i)
			}
		}
		if !errors.Is(err, lock.ErrLocked) {
			t.Fatalf("TryLock(scale/%d): %v; want ErrLocked", i, err)
		}
	}
	released = time.Now()
	if err := mon.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	t.Logf("released %d locks in %v", n, time.Since(released))
}
