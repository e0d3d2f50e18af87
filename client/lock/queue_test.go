package lock_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/grpc"
)

// waiterProbe records what one waiter's client asks of the cluster: its
// calls by method (the session's renewals left out), the watch events it
// was handed, and how many watch streams it had open at once.
type waiterProbe struct {
	mu      sync.Mutex
	calls   map[string]int
	events  int
	watches []context.Context // streams opened; one whose context ended is closed
	maxOpen int
}

func newWaiterProbe() *waiterProbe { return &waiterProbe{calls: map[string]int{}} }

func (p *waiterProbe) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if !touches(req, isSessionKey) {
		p.mu.Lock()
		p.calls[method]++
		p.mu.Unlock()
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

// stream counts the watch streams open when a new one opens. A stream's
// context ends (synchronously) when the SDK is done with it, so a stream
// whose context has ended no longer counts.
func (p *waiterProbe) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	p.mu.Lock()
	live := p.watches[:0]
	for _, w := range p.watches {
		if w.Err() == nil {
			live = append(live, w)
		}
	}
	p.watches = append(live, ctx)
	p.maxOpen = max(p.maxOpen, len(p.watches))
	p.mu.Unlock()
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &probedStream{ClientStream: s, p: p}, nil
}

// open is the number of watch streams open now.
func (p *waiterProbe) open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, w := range p.watches {
		if w.Err() == nil {
			n++
		}
	}
	return n
}

// take returns the calls and watch events since the last take.
func (p *waiterProbe) take() (calls map[string]int, events int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	calls, events = p.calls, p.events
	p.calls, p.events = map[string]int{}, 0
	return calls, events
}

type probedStream struct {
	grpc.ClientStream
	p *waiterProbe
}

func (s *probedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if resp, ok := m.(*cxkvpb.WatchResponse); ok && err == nil && len(resp.GetEvents()) > 0 {
		s.p.mu.Lock()
		s.p.events += len(resp.GetEvents())
		s.p.mu.Unlock()
	}
	return err
}

const listMethod = "/cxkv.v1.KV/List"

// A release wakes exactly one waiter, and a waiter holds at most one watch.
// Eight waiters, each with a client of its own, queue behind a holder and
// wait in their watches; then the holder releases and each waiter, once it
// holds the lock, releases it at once. A waiter's predecessor goes once, so
// each waiter must have been handed one watch event and read the queue
// once, whatever the number of releases before its turn; a recipe in which
// every waiter watches the holder (a herd) makes the k-th waiter read k
// times. The waiters' TTL is long enough that no safety-net re-read falls
// within the test.
func TestReleaseWakesExactlyOneWaiter(t *testing.T) {
	cl, c := start(t)
	ctx := context.Background()
	const n = 8
	ttl := 30 * time.Second
	holder, err := lock.NewProcessMonitor(c, lock.Options{TTL: ttl, Name: "holder"}).Lock(ctx, "herd")
	if err != nil {
		t.Fatal(err)
	}
	probes := make([]*waiterProbe, n)
	order := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		p := newWaiterProbe()
		probes[i] = p
		wc, err := client.New(client.Config{Endpoints: cl.Endpoints(), DialOptions: []grpc.DialOption{
			grpc.WithUnaryInterceptor(p.unary), grpc.WithStreamInterceptor(p.stream)}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { wc.Close() })
		mon := lock.NewProcessMonitor(wc, lock.Options{TTL: ttl, Name: fmt.Sprintf("w%d", i)})
		t.Cleanup(func() { mon.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := mon.Lock(ctx, "herd")
			if err != nil {
				t.Error(err)
				return
			}
			order <- i
			if err := l.Unlock(); err != nil {
				t.Error(err)
			}
		}()
		raftnodetest.Eventually(t, 10*time.Second, fmt.Sprintf("w%d waiting in its watch", i), func() bool {
			return p.open() == 1
		})
	}
	for _, p := range probes {
		p.take()
	}
	if err := holder.Unlock(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(order)
	var got []string
	for i := range order {
		got = append(got, fmt.Sprintf("w%d", i))
	}
	t.Logf("acquisition order %s", strings.Join(got, ","))
	for i, p := range probes {
		calls, events := p.take()
		t.Logf("w%d after the first release: %d watch events, calls %v, at most %d watches open at once", i, events, calls, p.maxOpen)
		if events != 1 || calls[listMethod] != 1 {
			t.Errorf("w%d was handed %d watch events and read the queue %d times between the first release and its turn; want 1 and 1 (a release wakes only the next waiter)",
				i, events, calls[listMethod])
		}
		if p.maxOpen != 1 {
			t.Errorf("w%d had %d watch streams open at once; want 1 (one watch per lock)", i, p.maxOpen)
		}
	}
}

// A queue's entries are named in creation order, so the entries it has
// deleted sort below its live ones, where the members' scans of the queue
// skip them (kv's floors): each acquisition's entry sorts above the one
// before it. Random names would be in order 20 times in a row once in 20!.
func TestQueueEntriesSortByCreation(t *testing.T) {
	_, c := start(t)
	ctx := context.Background()
	m := lock.NewProcessMonitor(c, lock.Options{TTL: 10 * time.Second})
	defer m.Close()
	prev := ""
	for i := range 20 {
		l, err := m.Lock(ctx, "ordered")
		if err != nil {
			t.Fatal(err)
		}
		if l.Key() <= prev {
			t.Fatalf("acquisition %d's entry %q does not sort above the previous one's, %q", i, l.Key(), prev)
		}
		prev = l.Key()
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
	}
}
