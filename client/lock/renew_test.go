package lock_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// sessionWrite is one renewal as the monitor's fake clock saw it, counted
// from the test's start; answered is -1 while it is held.
type sessionWrite struct {
	sent, answered time.Duration
	failed         bool
}

// The lease counts from a renewal's send, so the next renewal is due TTL/3
// after that send (at once if its answer came later), and a retry after a
// failed attempt is due at most TTL/12 after that attempt's send: a slow
// answer must not push the schedule back and eat the lease's margin.
//
// The monitor runs on a fake clock. Every renewal's answer is held until
// the clock has moved `latency` past its send; the test moves the clock in
// steps, each only once the monitor waits (its timers armed, or a renewal
// held), so a write's send time is the moment the monitor chose for it and
// the lease timer fires at the lease end whatever is in flight.
func TestRenewalIsDueAfterTheLastSend(t *testing.T) {
	const (
		ttl  = 9 * time.Second
		step = 50 * time.Millisecond
	)
	for _, tc := range []struct {
		name    string
		latency time.Duration
		fail    int // the renewal that is refused, counting from 1; 0 none
	}{
		// Scheduled from its answer, each renewal went 2 s late, and the
		// retry after the refused one was still held at the lease end: lost
		// at 17 s.
		{"answers take 2s, one renewal refused", 2 * time.Second, 3},
		// Longer than TTL/3: renewals go back to back. Scheduled from its
		// answer, the second renewal was sent at 10 s and the lease (from
		// the first's send at 3 s) ended at 12 s while it was held.
		{"answers take 4s", 4 * time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl, _ := start(t)
			clock := clockwork.NewFakeClock()
			began := clock.Now()
			type held struct {
				until time.Duration
				done  chan struct{}
			}
			var (
				mu       sync.Mutex
				stepping bool
				pending  *held
				writes   []sessionWrite
			)
			intercept := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				mu.Lock()
				if !stepping || !touches(req, isSessionKey) {
					mu.Unlock()
					return invoker(ctx, method, req, reply, cc, opts...)
				}
				w := sessionWrite{sent: clock.Since(began), answered: -1, failed: len(writes)+1 == tc.fail}
				i := len(writes)
				writes = append(writes, w)
				h := &held{until: w.sent + tc.latency, done: make(chan struct{})}
				pending = h
				mu.Unlock()
				err := status.Error(codes.Internal, "test: renewal refused")
				if !w.failed {
					err = invoker(ctx, method, req, reply, cc, opts...)
				}
				select {
				case <-h.done:
				case <-ctx.Done():
					return ctx.Err()
				}
				mu.Lock()
				writes[i].answered = clock.Since(began)
				mu.Unlock()
				return err
			}
			c, err := client.New(client.Config{Endpoints: cl.Endpoints(), Clock: clock,
				DialOptions: []grpc.DialOption{grpc.WithUnaryInterceptor(intercept)}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			mon := lock.NewProcessMonitor(c, lock.Options{TTL: ttl})
			defer mon.Close()
			l, err := mon.Lock(context.Background(), "schedule")
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			stepping = true
			mu.Unlock()
			stop := func() {
				mu.Lock()
				defer mu.Unlock()
				stepping = false
				if pending != nil {
					close(pending.done)
					pending = nil
				}
			}
			defer stop()

			// wait returns once the monitor waits for the clock: with no
			// renewal held, when its renewal timer and lease timer are both
			// armed; with one held, when its lease timer is. It reports
			// whether the lock was lost instead.
			wait := func() (lost bool) {
				deadline := time.Now().Add(time.Minute)
				for time.Now().Before(deadline) {
					select {
					case <-l.Lost():
						return true
					default:
					}
					mu.Lock()
					timers := 2
					if pending != nil {
						timers = 1
					}
					mu.Unlock()
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
					err := clock.BlockUntilContext(ctx, timers)
					cancel()
					if err == nil {
						return false
					}
				}
				t.Fatal("the monitor neither armed its timers nor sent a renewal within a minute")
				return false
			}
			for clock.Since(began) < 6*ttl {
				if wait() {
					t.Errorf("lock lost by %v; every renewal was answered within %v, less than 2·TTL/3 (TTL %v)", clock.Since(began), tc.latency, ttl)
					break
				}
				clock.Advance(step)
				mu.Lock()
				if pending != nil && clock.Since(began) >= pending.until {
					close(pending.done)
					pending = nil
				}
				mu.Unlock()
			}
			stop()

			mu.Lock()
			got := append([]sessionWrite(nil), writes...)
			mu.Unlock()
			if len(got) < 6 {
				t.Errorf("%d renewals in %v; want one per TTL/3 at least", len(got), clock.Since(began))
			}
			// The open was sent at 0 and answered at once.
			prev := sessionWrite{}
			for i, w := range got {
				due := prev.sent + ttl/3
				if prev.failed {
					due = prev.sent + ttl/12 // a retry's pause is at most TTL/12
				}
				due = max(due, prev.answered)
				if w.sent > due+step || (!prev.failed && w.sent < due) {
					t.Errorf("renewal %d sent at %v; want it due at %v: the write before it was sent at %v and answered at %v (failed %v); TTL %v\nall renewals: %+v",
						i+1, w.sent, due, prev.sent, prev.answered, prev.failed, ttl, got)
					break
				}
				prev = w
			}
		})
	}
}

// A closed monitor leaves no timer of its own armed: neither its renewal
// timer nor its lease timer outlives Close, whether the session was live
// or had already ended.
func TestClosedMonitorArmsNoTimer(t *testing.T) {
	cl, _ := start(t)
	clock := clockwork.NewFakeClock()
	c, err := client.New(client.Config{Endpoints: cl.Endpoints(), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	armed := func() bool {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // only ask whether a timer is armed now
		return clock.BlockUntilContext(ctx, 1) == nil
	}
	ctx := context.Background()

	live := lock.NewProcessMonitor(c, lock.Options{TTL: time.Minute})
	if _, err := live.Lock(ctx, "timers/live"); err != nil {
		t.Fatal(err)
	}
	if !armed() {
		t.Fatal("a monitor holding a lock has no timer armed; this test cannot see one")
	}
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}
	if armed() {
		t.Fatal("a timer is still armed after Close of a monitor with a live session")
	}

	ended := lock.NewProcessMonitor(c, lock.Options{TTL: time.Minute})
	l, err := ended.Lock(ctx, "timers/ended")
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute) // the lease ends with no renewal answered
	<-l.Lost()
	if err := ended.Close(); !errors.Is(err, lock.ErrLost) {
		t.Fatalf("Close after the lease ended: %v; want ErrLost", err)
	}
	if armed() {
		t.Fatal("a timer is still armed after Close of a monitor whose session had ended")
	}
}
