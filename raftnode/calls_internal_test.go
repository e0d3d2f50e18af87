package raftnode

import (
	"context"
	"errors"
	"io"
	runtimemetrics "runtime/metrics"
	"slices"
	"sync"
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// watchedContext is a stream's context, never ended, that counts the
// contexts derived from it still registered to hear of its end: the
// context package registers a child with a parent of a type it does not
// know through the parent's AfterFunc, and stops the registration when the
// child is cancelled.
type watchedContext struct {
	context.Context // Background: no value, no deadline
	done            chan struct{}
	mu              sync.Mutex
	live            int
}

func (c *watchedContext) Done() <-chan struct{} { return c.done }

func (c *watchedContext) AfterFunc(func()) func() bool {
	c.mu.Lock()
	c.live++
	c.mu.Unlock()
	var once sync.Once
	return func() bool {
		stopped := false
		once.Do(func() {
			c.mu.Lock()
			c.live--
			c.mu.Unlock()
			stopped = true
		})
		return stopped
	}
}

// scriptedCalls is a Calls stream whose client sends reqs, then ends.
type scriptedCalls struct {
	grpc.ServerStream
	ctx  context.Context
	reqs []*cxkvpb.CallRequest
}

func (s *scriptedCalls) Context() context.Context        { return s.ctx }
func (s *scriptedCalls) Send(*cxkvpb.CallResponse) error { return nil }
func (s *scriptedCalls) SetHeader(metadata.MD) error     { return nil }
func (s *scriptedCalls) Recv() (*cxkvpb.CallRequest, error) {
	if len(s.reqs) == 0 {
		return nil, io.EOF
	}
	r := s.reqs[0]
	s.reqs = s.reqs[1:]
	return r, nil
}

// Each call on a stream ends every context it was given: a long-lived
// stream's context holds nothing of the calls it has answered, so a
// member's memory does not grow with the calls one stream carries. (The
// calls here carry no operation: they are answered at once, without the
// member, with or without a timeout.)
func TestStreamKeepsNoContextOfAnsweredCalls(t *testing.T) {
	wc := &watchedContext{Context: context.Background(), done: make(chan struct{})}
	stream := &scriptedCalls{ctx: wc}
	for i := range uint64(100) {
		stream.reqs = append(stream.reqs, &cxkvpb.CallRequest{Id: i + 1, TimeoutUs: int64(i % 2 * 1e6)})
	}
	if err := (&kvService{}).Calls(stream); err != nil {
		t.Fatal(err)
	}
	wc.mu.Lock()
	defer wc.mu.Unlock()
	if wc.live != 0 {
		t.Fatalf("after 100 answered calls (50 with a timeout) the stream's context holds %d of their contexts; want none", wc.live)
	}
}

// lockstepCalls is a Calls stream whose client sends its next call only
// once the previous one is answered, as a client with one writer does.
type lockstepCalls struct {
	grpc.ServerStream
	n        uint64 // calls still to send
	sent     uint64
	answered chan struct{}
}

func (s *lockstepCalls) Context() context.Context    { return context.Background() }
func (s *lockstepCalls) SetHeader(metadata.MD) error { return nil }
func (s *lockstepCalls) Send(*cxkvpb.CallResponse) error {
	s.answered <- struct{}{}
	return nil
}
func (s *lockstepCalls) Recv() (*cxkvpb.CallRequest, error) {
	if s.sent > 0 {
		<-s.answered
	}
	if s.sent == s.n {
		return nil, io.EOF
	}
	s.sent++
	return &cxkvpb.CallRequest{Id: s.sent}, nil
}

// goroutinesCreated is the process's count of goroutines ever started.
func goroutinesCreated() uint64 {
	m := []runtimemetrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	runtimemetrics.Read(m)
	return m[0].Value.Uint64()
}

// A stream's calls run on reused workers, not a goroutine each: a fresh
// goroutine grew its stack through the interceptors and the handler on
// every call. One call at a time needs one worker (and the answers'
// writer), however many calls the stream carries.
func TestStreamRunsItsCallsOnReusedWorkers(t *testing.T) {
	const calls = 500
	stream := &lockstepCalls{n: calls, answered: make(chan struct{}, 1)}
	before := goroutinesCreated()
	if err := (&kvService{}).Calls(stream); err != nil {
		t.Fatal(err)
	}
	// Other goroutines of the process (a runtime's, a test's leftovers)
	// may start meanwhile; a goroutine per call would be 500.
	if started := goroutinesCreated() - before; started > 50 {
		t.Fatalf("%d calls one at a time on one stream started %d goroutines; want a few reused workers", calls, started)
	}
}

// heldSends is a Calls stream whose Send waits while hold is full, and
// records what it sent.
type heldSends struct {
	grpc.ServerStream
	hold    chan struct{}
	entered chan struct{} // a Send began
	mu      sync.Mutex
	sent    []uint64
	fail    error
}

func (s *heldSends) Send(r *cxkvpb.CallResponse) error {
	s.entered <- struct{}{}
	s.hold <- struct{}{}
	<-s.hold
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, r.GetId())
	return s.fail
}

func (s *heldSends) Recv() (*cxkvpb.CallRequest, error) { return nil, io.EOF }

func (s *heldSends) sentIDs() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sent)
}

// A lone answer is written by the worker that has it, with no other
// goroutine woken; one that finds a Send under way is queued without
// waiting for it and written by run; after a failed Send the rest are
// dropped and run returns the failure.
func TestAnswererWritesLoneAnswersItself(t *testing.T) {
	st := &heldSends{hold: make(chan struct{}, 1), entered: make(chan struct{}, 8)}
	a := newAnswerer(st)
	a.answer(&cxkvpb.CallResponse{Id: 1}) // run is not started: only the worker can have sent it
	if got := st.sentIDs(); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("after a lone answer the stream sent %v; want [1]", got)
	}
	<-st.entered

	st.hold <- struct{}{} // the next Send waits
	done := make(chan struct{})
	go func() {
		a.answer(&cxkvpb.CallResponse{Id: 2})
		close(done)
	}()
	<-st.entered // answer 2's Send is under way and held
	a.answer(&cxkvpb.CallResponse{Id: 3})
	if n := len(a.queue); n != 1 {
		t.Fatalf("an answer that found a Send under way: %d queued; want 1", n)
	}
	st.mu.Lock()
	st.fail = errors.New("stream gone")
	st.mu.Unlock()
	<-st.hold // let answer 2's Send finish (and fail)
	<-done
	a.close()
	if err := a.run(); err == nil || err.Error() != "stream gone" {
		t.Fatalf("run returned %v; want the failed Send's error", err)
	}
	if got := st.sentIDs(); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("the stream sent %v; want [1 2], and 3 dropped after 2 failed", got)
	}
}
