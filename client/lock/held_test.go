package lock_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvrpc"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A held lock opens its watch (which closes Lost at once on a
// force-release) only when Lost or Context is first asked for, never for
// Err: holding many
// locks must not hold a watch stream each, since every member wakes every
// watch stream on every write (issue 17's lock-hold: 10,000 held locks
// cost cas-parallel 65% of its throughput). Asked for after the
// force-release, Lost still closes: the watch starts at the lock's create
// index.
func TestHeldLockWatchesOnlyWhenAsked(t *testing.T) {
	cl, c := start(t)
	p := newWaiterProbe()
	hc, err := client.New(client.Config{Endpoints: cl.Endpoints(), DialOptions: []grpc.DialOption{grpc.WithStreamInterceptor(p.stream)}})
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	ctx := context.Background()
	for _, mode := range modes {
		mon := lock.NewProcessMonitor(hc, lock.Options{TTL: time.Hour, Mode: mode})
		var held []*lock.Lock
		for i := range 20 {
			l, err := mon.Lock(ctx, fmt.Sprintf("watch/%s/%d", mode, i))
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, l)
		}
		// Err, asked of every lock, reads what the process knows: no watch.
		for _, l := range held {
			if err := l.Err(); err != nil {
				t.Fatalf("%s: Err of a held lock: %v", mode, err)
			}
		}
		if n := p.open(); n != 0 {
			t.Fatalf("%s: %d watch streams open while holding %d locks nobody asked Lost or Context of; want 0", mode, n, len(held))
		}
		// Force-released before anyone asks: Lost, asked later, closes.
		if _, err := lock.ForceRelease(ctx, c, held[0].Name()); err != nil {
			t.Fatal(err)
		}
		select {
		case <-held[0].Lost():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Lost, first asked after a force-release, did not close", mode)
		}
		if held[0].Context().Err() == nil {
			t.Fatalf("%s: the lost lock's context is not cancelled", mode)
		}
		// Asked before: one stream for that lock, none for the others.
		_ = held[1].Context()
		_ = held[1].Lost()
		raftnodetest.Eventually(t, 5*time.Second, "one watch stream", func() bool { return p.open() == 1 })
		if err := mon.Close(); err != nil {
			t.Logf("%s: Close: %v", mode, err) // the force-released lock reports its loss
		}
		if n := p.open(); n != 0 {
			t.Fatalf("%s: %d watch streams open after Close; want 0", mode, n)
		}

	}
}

// Err reports a lock lost with its session (here closed by an operator,
// found by the next renewal) without the lock's watch: lockscale counts
// the losses of 100,000 locks with it.
func TestErrReportsTheSessionsEnd(t *testing.T) {
	_, c := start(t)
	ctx := context.Background()
	mon := lock.NewProcessMonitor(c, lock.Options{TTL: 3 * time.Second})
	defer mon.Close()
	l, err := mon.Lock(ctx, "errsession/a")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Err(); err != nil {
		t.Fatalf("Err of a held lock: %v", err)
	}
	infos, err := lock.List(ctx, c, "errsession/")
	if err != nil || len(infos) != 1 {
		t.Fatalf("List: %v, %v", infos, err)
	}
	if _, err := c.CloseSession(ctx, infos[0].Owner.Session); err != nil {
		t.Fatal(err)
	}
	raftnodetest.Eventually(t, 10*time.Second, "Err to report the closed session", func() bool { return errors.Is(l.Err(), lock.ErrLost) })
}

// A held lock's watch whose history was compacted reads the key and goes
// on: a force-release before or after that is still noticed at once.
func TestHeldLockWatchSurvivesCompaction(t *testing.T) {
	for _, before := range []bool{true, false} {
		t.Run(fmt.Sprintf("released-before-asked=%v", before), func(t *testing.T) {
			cl, c := start(t)
			var watches atomic.Int32
			compactFirst := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
				if method != cxkvrpc.KV_Watch_FullMethodName { // the calls' stream (client/callstream.go) passes
					return streamer(ctx, desc, cc, method, opts...)
				}
				if watches.Add(1) == 1 {
					return nil, status.Error(codes.OutOfRange, "test: history compacted")
				}
				return streamer(ctx, desc, cc, method, opts...)
			}
			hc, err := client.New(client.Config{Endpoints: cl.Endpoints(), DialOptions: []grpc.DialOption{grpc.WithStreamInterceptor(compactFirst)}})
			if err != nil {
				t.Fatal(err)
			}
			defer hc.Close()
			ctx := context.Background()
			mon := lock.NewProcessMonitor(hc, lock.Options{TTL: time.Hour})
			defer mon.Close()
			l, err := mon.Lock(ctx, "compacted")
			if err != nil {
				t.Fatal(err)
			}
			if before {
				if _, err := lock.ForceRelease(ctx, c, "compacted"); err != nil {
					t.Fatal(err)
				}
			}
			lost := l.Lost()
			if !before {
				raftnodetest.Eventually(t, 5*time.Second, "the watch resumed after the compacted one", func() bool { return watches.Load() >= 2 })
				select {
				case <-lost:
					t.Fatal("Lost closed while the lock was held")
				default:
				}
				if _, err := lock.ForceRelease(ctx, c, "compacted"); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-lost:
			case <-time.After(10 * time.Second):
				t.Fatal("Lost did not close after a force-release")
			}
		})
	}
}
