package lock_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvrpc"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// waiterProbe records what one waiter's client asks of the cluster: its
// calls by method (the session's renewals left out), the watch events it
// was handed, and how many watch streams it had open at once.
type waiterProbe struct {
	// noHead strips head_of from the watches it opens: the waiter's
	// member then answers as one older than the field does.
	noHead  bool
	mu      sync.Mutex
	calls   map[string]int
	events  int
	watches []context.Context // streams opened; one whose context ended is closed
	maxOpen int
}

func newWaiterProbe() *waiterProbe { return &waiterProbe{calls: map[string]int{}} }

// unary counts the calls that answered, but a renewal's, by method. A
// linearizable List is counted apart (linearizableList): a queue read
// begins with a serializable List and asks again linearizably only when
// the member that answered lagged behind what the waiter saw (on a loaded
// machine, a follower a few entries behind), which is the same read.
func (p *waiterProbe) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err == nil && !touches(req, isSessionKey) {
		if l, ok := req.(*cxkvpb.ListRequest); ok && !l.GetSerializable() {
			method = linearizableList
		}
		p.mu.Lock()
		p.calls[method]++
		p.mu.Unlock()
	}
	return err
}

// stream counts the watch streams open when a new one opens. A stream's
// context ends (synchronously) when the SDK is done with it, so a stream
// whose context has ended no longer counts.
func (p *waiterProbe) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if method != cxkvrpc.KV_Watch_FullMethodName { // the calls' stream (client/callstream.go) passes
		return streamer(ctx, desc, cc, method, opts...)
	}
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

func (s *probedStream) SendMsg(m any) error {
	if r, ok := m.(*cxkvpb.WatchRequest); ok && s.p.noHead {
		r = proto.Clone(r).(*cxkvpb.WatchRequest)
		r.HeadOf = ""
		m = r
	}
	return s.ClientStream.SendMsg(m)
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

const (
	listMethod       = "/cxkv.v1.KV/List" // a serializable List
	linearizableList = listMethod + " (linearizable)"
)

// A release wakes exactly one waiter, and a waiter holds at most one watch.
// Eight waiters, each with a client of its own, queue behind a holder and
// wait in their watches; then the holder releases and each waiter, once it
// holds the lock, releases it at once. A waiter's predecessor goes once, so
// each waiter must have been handed one watch event, whatever the number of
// releases before its turn; a recipe in which every waiter watches the
// holder (a herd) hands the k-th waiter k. The event carries the queue's
// head (client.WatchHead), so a woken waiter reads the queue no more; from
// a member that does not send the head (older than it), it reads once. The
// waiters' TTL is long enough that no safety-net re-read falls within the
// test.
func TestReleaseWakesExactlyOneWaiter(t *testing.T) {
	for _, c := range []struct {
		name   string
		noHead bool
		reads  int
	}{{"head in the event", false, 0}, {"member without the head", true, 1}} {
		t.Run(c.name, func(t *testing.T) { releaseWakesExactlyOneWaiter(t, c.noHead, c.reads) })
	}
}

func releaseWakesExactlyOneWaiter(t *testing.T, noHead bool, reads int) {
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
		p.noHead = noHead
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
		if events != 1 || calls[listMethod] != reads {
			t.Errorf("w%d was handed %d watch events and read the queue %d times between the first release and its turn; want 1 and %d (a release wakes only the next waiter)",
				i, events, calls[listMethod], reads)
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

// behindClock is the real clock set back by d: a process whose clock is
// behind the others'.
type behindClock struct {
	clockwork.Clock
	d time.Duration
}

func (c behindClock) Now() time.Time                  { return c.Clock.Now().Add(-c.d) }
func (c behindClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c behindClock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }

// A process whose clock is an hour behind names its queue entries below
// the entries created before them, below where the members' floors of the
// queue stand (their HEADs and Lists found the holder's entry first). The
// queue's order is the create index all the same: with a holder, then a
// waiter whose clock is behind, then one whose clock is not, the holder's
// release hands the lock to the first waiter, and the second holds only
// after the first released.
func TestQueueOrderHoldsWithAClockBehind(t *testing.T) {
	cl, c := start(t)
	ctx := context.Background()
	behind, err := client.New(client.Config{Endpoints: cl.Endpoints(), RequestTimeout: 2 * time.Second,
		Clock: behindClock{clockwork.NewRealClock(), time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	defer behind.Close()
	opts := func(name string) lock.Options { return lock.Options{TTL: 10 * time.Second, Name: name} }
	holder := lock.NewProcessMonitor(c, opts("holder"))
	defer holder.Close()
	late := lock.NewProcessMonitor(behind, opts("behind"))
	defer late.Close()
	last := lock.NewProcessMonitor(dial(t, cl.Endpoints()), opts("last"))
	defer last.Close()
	const name = "skewed"
	waiters := func() int {
		infos, err := lock.List(ctx, c, name)
		if err != nil || len(infos) != 1 {
			return -1
		}
		return len(infos[0].Waiters)
	}
	for round := range 4 {
		h, err := holder.Lock(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		var lateHolds atomic.Bool
		lateGot, lastGot := make(chan *lock.Lock, 1), make(chan *lock.Lock, 1)
		go func() {
			l, err := late.Lock(ctx, name)
			if err != nil {
				t.Error(err)
				close(lateGot)
				return
			}
			lateHolds.Store(true)
			lateGot <- l
		}()
		raftnodetest.Eventually(t, 10*time.Second, "the late waiter queued", func() bool { return waiters() == 1 })
		go func() {
			l, err := last.Lock(ctx, name)
			if err != nil {
				t.Error(err)
				close(lastGot)
				return
			}
			if lateHolds.Load() {
				t.Errorf("round %d: the last waiter holds %s while the late one does", round, name)
			}
			lastGot <- l
		}()
		raftnodetest.Eventually(t, 10*time.Second, "the last waiter queued", func() bool { return waiters() == 2 })
		if err := h.Unlock(); err != nil {
			t.Fatal(err)
		}
		var l *lock.Lock
		select {
		case l = <-lateGot:
		case <-lastGot:
			t.Fatalf("round %d: the last waiter holds %s before the one queued ahead of it", round, name)
		}
		if l == nil {
			t.FailNow()
		}
		if l.Key() >= h.Key() {
			t.Fatalf("round %d: the late waiter's entry %q sorts above the holder's %q: its clock is not behind", round, l.Key(), h.Key())
		}
		lateHolds.Store(false) // before the release: the last waiter may hold from then on
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		if l = <-lastGot; l == nil {
			t.FailNow()
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
	}
}
