package lock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
	"google.golang.org/grpc"
)

// callCounter counts a client's calls that answered, by method, but its
// Status calls: the client asks members for their ids in the background
// once a follower names a leader it has no endpoint for, which may run on
// into a window a test counts, and an attempt that failed and was sent
// again (an election on a loaded machine) is one call of the recipe's.
type callCounter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (cc *callCounter) intercept(ctx context.Context, method string, req, reply any, conn *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, conn, opts...)
	if err == nil && method != statusMethod {
		cc.mu.Lock()
		cc.calls[method]++
		cc.mu.Unlock()
	}
	return err
}

func (cc *callCounter) take() map[string]int {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	out := cc.calls
	cc.calls = map[string]int{}
	return out
}

func countingClient(t *testing.T, endpoints []string) (*client.Client, *callCounter) {
	cc := &callCounter{calls: map[string]int{}}
	c, err := client.New(client.Config{Endpoints: endpoints, DialOptions: []grpc.DialOption{grpc.WithUnaryInterceptor(cc.intercept)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, cc
}

const (
	txnMethod    = "/cxkv.v1.KV/Txn"
	statusMethod = "/cxkv.v1.KV/Status"
)

// A monitor renews one session for all its locks: holding 50 locks costs
// one write per TTL/3, not one per lock.
func TestMonitorRenewsOneSession(t *testing.T) {
	cl, _ := start(t)
	c, calls := countingClient(t, cl.Endpoints())
	ctx := context.Background()
	ttl := 1500 * time.Millisecond
	mon := lock.NewProcessMonitor(c, lock.Options{TTL: ttl})
	defer mon.Close()
	var locks []*lock.Lock
	for i := range 50 {
		l, err := mon.Lock(ctx, fmt.Sprintf("many/%d", i))
		if err != nil {
			t.Fatal(err)
		}
		locks = append(locks, l)
	}
	calls.take()
	began := time.Now()
	time.Sleep(3 * ttl)
	writes := calls.take()[txnMethod]
	renewals := int(time.Since(began) / (ttl / 3))
	t.Logf("%d writes while holding %d locks for %v (TTL %v)", writes, len(locks), time.Since(began), ttl)
	if writes > renewals+1 {
		t.Fatalf("%d writes while holding %d locks for %v; want at most %d, one per TTL/3", writes, len(locks), time.Since(began), renewals+1)
	}
	for _, l := range locks {
		select {
		case <-l.Lost():
			t.Fatalf("%s lost: %v", l.Name(), l.Unlock())
		default:
		}
	}
}

// An uncontended acquisition is one write: the write that creates the
// queue entry answers whether it is the head. No List, no Get.
func TestUncontendedAcquireIsOneWrite(t *testing.T) {
	cl, _ := start(t)
	c, calls := countingClient(t, cl.Endpoints())
	ctx := context.Background()
	mon := lock.NewProcessMonitor(c, lock.Options{TTL: 5 * time.Second})
	defer mon.Close()
	first, err := mon.Lock(ctx, "one/first") // opens the session
	if err != nil {
		t.Fatal(err)
	}
	defer first.Unlock()
	for _, try := range []bool{false, true} {
		name := fmt.Sprintf("one/%v", try)
		calls.take()
		var l *lock.Lock
		if try {
			l, err = mon.TryLock(ctx, name)
		} else {
			l, err = mon.Lock(ctx, name)
		}
		if err != nil {
			t.Fatal(err)
		}
		got := calls.take()
		if len(got) != 1 || got[txnMethod] != 1 {
			t.Fatalf("uncontended acquisition (TryLock %v) made calls %v; want one Txn", try, got)
		}
		l.Unlock()
	}
}

// Force-releasing one of a monitor's locks closes that lock's Lost at once
// and leaves the others held.
func TestForceReleaseOfOneLockLeavesTheOthers(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			_, c := start(t)
			ctx := context.Background()
			ttl := 1500 * time.Millisecond
			mon := lock.NewProcessMonitor(c, lock.Options{TTL: ttl, Mode: mode})
			defer mon.Close()
			a, err := mon.Lock(ctx, "fr1/a")
			if err != nil {
				t.Fatal(err)
			}
			b, err := mon.Lock(ctx, "fr1/b")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := lock.ForceRelease(ctx, c, "fr1/a"); err != nil {
				t.Fatal(err)
			}
			select {
			case <-a.Lost():
			case <-time.After(ttl / 3):
				t.Fatal("a's Lost did not close at once after its force-release")
			}
			time.Sleep(2 * ttl)
			select {
			case <-b.Lost():
				t.Fatalf("b was lost with a: %v", b.Unlock())
			default:
			}
			if _, err := b.Put(ctx, "fr1/data", []byte("b")); err != nil {
				t.Fatalf("guarded write through b: %v", err)
			}
			if err := b.Unlock(); err != nil {
				t.Fatal(err)
			}
			if err := a.Unlock(); !errors.Is(err, lock.ErrLost) {
				t.Fatalf("a.Unlock: %v; want ErrLost", err)
			}
		})
	}
}

// Close releases the monitor's locks and closes its session in one write:
// nothing of it is left in the cluster.
func TestMonitorCloseLeavesNothing(t *testing.T) {
	cl, c := start(t)
	mc, calls := countingClient(t, cl.Endpoints())
	ctx := context.Background()
	mon := lock.NewProcessMonitor(mc, lock.Options{TTL: time.Minute})
	for i := range 20 {
		if _, err := mon.Lock(ctx, fmt.Sprintf("mc/%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	calls.take()
	if err := mon.Close(); err != nil {
		t.Fatal(err)
	}
	if got := calls.take(); len(got) != 1 || got[txnMethod] != 1 {
		t.Fatalf("Close of 20 locks made calls %v; want one Txn", got)
	}
	if locks, err := lock.List(ctx, c, "mc/"); err != nil || len(locks) != 0 {
		t.Fatalf("after Close: %+v, %v; want no locks", locks, err)
	}
	for s, err := range c.Sessions(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		t.Fatalf("after Close: session %s remains", s.ID)
	}
	if _, err := mon.Lock(ctx, "mc/a"); err == nil {
		t.Fatal("Lock on a closed monitor succeeded")
	}
}
