package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// proxy serves the KV calls the SDK makes by passing them to a member
// with unary calls. Without calls set it does not implement KV.Calls, as a
// member of a version before the stream; with it, it serves the stream and
// calls decides what becomes of each call on it.
type proxy struct {
	cxkvrpc.UnimplementedKVServer
	to         cxkvrpc.KVClient
	unaryPuts  atomic.Int64
	calls      func(req *cxkvpb.CallRequest) (cut bool)
	streamPuts atomic.Int64
	// offerList: the stream's header names list, as a member of this
	// version does; without it the stream refuses a List, as an older one.
	offerList   bool
	unaryLists  atomic.Int64
	streamLists atomic.Int64
}

func (p *proxy) Put(ctx context.Context, r *cxkvpb.PutRequest) (*cxkvpb.PutResponse, error) {
	p.unaryPuts.Add(1)
	return p.to.Put(ctx, r)
}
func (p *proxy) Txn(ctx context.Context, r *cxkvpb.TxnRequest) (*cxkvpb.TxnResponse, error) {
	return p.to.Txn(ctx, r)
}
func (p *proxy) Get(ctx context.Context, r *cxkvpb.GetRequest) (*cxkvpb.GetResponse, error) {
	return p.to.Get(ctx, r)
}
func (p *proxy) List(ctx context.Context, r *cxkvpb.ListRequest) (*cxkvpb.ListResponse, error) {
	p.unaryLists.Add(1)
	return p.to.List(ctx, r)
}
func (p *proxy) Status(ctx context.Context, r *cxkvpb.StatusRequest) (*cxkvpb.StatusResponse, error) {
	return p.to.Status(ctx, r)
}

// Calls passes each call (puts, txns, gets) on as a unary call and answers it, unless p.calls
// says to cut the stream after passing it on: then the call may have
// applied, and its answer never comes.
func (p *proxy) Calls(stream cxkvrpc.KV_CallsServer) error {
	if p.calls == nil {
		return p.UnimplementedKVServer.Calls(stream)
	}
	if p.offerList {
		if err := stream.SetHeader(metadata.Pairs(cxkvpb.CallsOpsHeader, cxkvpb.CallsOpList)); err != nil {
			return err
		}
	}
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		out := &cxkvpb.CallResponse{Id: req.GetId()}
		ctx := stream.Context()
		switch op := req.GetOp().(type) {
		case *cxkvpb.CallRequest_Put:
			p.streamPuts.Add(1)
			resp, err := p.to.Put(ctx, op.Put)
			if err != nil {
				return err
			}
			out.Op = &cxkvpb.CallResponse_Put{Put: resp}
		case *cxkvpb.CallRequest_Txn:
			resp, err := p.to.Txn(ctx, op.Txn)
			if err != nil {
				return err
			}
			out.Op = &cxkvpb.CallResponse_Txn{Txn: resp}
		case *cxkvpb.CallRequest_Get:
			resp, err := p.to.Get(ctx, op.Get)
			if err != nil {
				return err
			}
			out.Op = &cxkvpb.CallResponse_Get{Get: resp}
		case *cxkvpb.CallRequest_List:
			if !p.offerList {
				out.Status, _ = proto.Marshal(status.New(codes.InvalidArgument, "a call on the Calls stream must carry a put, delete, txn or get").Proto())
				break
			}
			p.streamLists.Add(1)
			resp, err := p.to.List(ctx, op.List)
			if err != nil {
				return err
			}
			out.Op = &cxkvpb.CallResponse_List{List: resp}
		default:
			return status.Error(codes.Internal, "the proxy passes on puts, txns, gets and lists only")
		}
		if p.calls(req) {
			return status.Error(codes.Unavailable, "the proxy cut the stream")
		}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
}

// Against a member that does not implement the Calls stream (an older
// version) the SDK's writes go as unary calls, and succeed.
func TestWritesFallBackToUnaryCalls(t *testing.T) {
	cl, _ := start(t)
	p := &proxy{to: cl.Client(cl.WaitLeader())}
	c := dial(t, []string{serveKV(t, p)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, key := range []string{"a", "b"} {
		r, err := c.Put(ctx, key, []byte("v"), 0)
		if err != nil || !r.Successful {
			t.Fatalf("put %s through a member without Calls: %+v, %v", key, r, err)
		}
	}
	if got := p.unaryPuts.Load(); got != 2 {
		t.Fatalf("the member saw %d unary puts; want the 2", got)
	}
}

// A List goes on the stream only once the stream's header names it; a
// member older than that (its stream refuses a List) gets unary Lists, as
// does a stream that has not answered yet, and every List succeeds.
func TestListGoesOnTheStreamOnceOffered(t *testing.T) {
	for _, offer := range []bool{false, true} {
		t.Run(fmt.Sprintf("offered=%v", offer), func(t *testing.T) {
			cl, _ := start(t)
			p := &proxy{to: cl.Client(cl.WaitLeader()), calls: func(*cxkvpb.CallRequest) bool { return false }, offerList: offer}
			c := dial(t, []string{serveKV(t, p)})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if _, err := c.Put(ctx, "q/a", []byte("v"), 0); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				page, err := c.ListPage(ctx, "q/", "", 10)
				if err != nil || len(page.Records) != 1 || page.Records[0].Key != "q/a" {
					t.Fatalf("list: %+v, %v", page, err)
				}
			}
			unary, streamed := p.unaryLists.Load(), p.streamLists.Load()
			if offer && (unary != 0 || streamed != 3) {
				t.Fatalf("a member that offers list saw %d unary and %d streamed lists; want 0 and 3", unary, streamed)
			}
			if !offer && (unary != 3 || streamed != 0) {
				t.Fatalf("an older member saw %d unary and %d streamed lists; want 3 and 0", unary, streamed)
			}
		})
	}
}

// A write whose stream broke after it was sent may have applied: the SDK
// sends it again under its same write id, and the cluster answers the
// retry from its memory of the first: a create-only put succeeds once.
func TestWriteOnABrokenStreamIsRetriedUnderItsWriteID(t *testing.T) {
	cl, _ := start(t)
	var cut atomic.Bool
	p := &proxy{to: cl.Client(cl.WaitLeader())}
	p.calls = func(req *cxkvpb.CallRequest) bool {
		return req.GetPut() != nil && cut.CompareAndSwap(false, true)
	}
	c := dial(t, []string{serveKV(t, p)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := c.Put(ctx, "once", []byte("v"), 0)
	if err != nil || !r.Successful {
		t.Fatalf("create-only put whose first answer was lost with its stream: %+v, %v; want the first attempt's success", r, err)
	}
	if !cut.Load() || p.streamPuts.Load() != 2 {
		t.Fatalf("cut %v, %d puts on the stream; want the first cut and one retry", cut.Load(), p.streamPuts.Load())
	}
	got, err := c.Get(ctx, "once")
	if err != nil || got.Index != r.Record.Index {
		t.Fatalf("the key after the put: %+v, %v; want index %d", got, err, r.Record.Index)
	}
}

// A write whose every answer was lost with its stream, the first after it
// was passed on, ends with ErrOutcomeUnknown: it may have applied.
func TestWriteLostWithItsStreamIsOutcomeUnknown(t *testing.T) {
	cl, _ := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var cuts atomic.Int64
	p := &proxy{to: cl.Client(cl.WaitLeader())}
	p.calls = func(req *cxkvpb.CallRequest) bool {
		if req.GetPut() == nil {
			return false
		}
		if cuts.Add(1) == 2 {
			cancel() // the caller gives up after the second lost answer
		}
		return true
	}
	c := dial(t, []string{serveKV(t, p)})
	_, err := c.Put(ctx, "lost", []byte("v"), 0)
	if !errors.Is(err, client.ErrOutcomeUnknown) {
		t.Fatalf("put whose answers were lost with the stream: %v; want ErrOutcomeUnknown", err)
	}
}

// A call too large to send (over cxkvpb.MaxMessageBytes) fails alone, as
// its unary call would, not sent: the calls in flight on the same stream
// are answered. gRPC ends a whole client stream on a message over its send
// limit, so such a call must not go on the stream.
func TestOversizeCallLeavesTheStreamsOtherCalls(t *testing.T) {
	cl, _ := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	held, release := make(chan struct{}), make(chan struct{})
	var holding sync.Once
	p := &proxy{to: cl.Client(cl.WaitLeader())}
	p.calls = func(req *cxkvpb.CallRequest) bool {
		if req.GetPut().GetKey() == "held" {
			holding.Do(func() { close(held) })
			<-release // applied; its answer waits while the big call is made
		}
		return false
	}
	// An attempt outlasting the test's: the held put is answered by the
	// attempt that sent it, not a retry.
	c, err := client.New(client.Config{Endpoints: []string{serveKV(t, p)}, RequestTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		r, err := c.Put(ctx, "held", []byte("v"), 0)
		if err == nil && !r.Successful {
			err = errors.New("create-only put of a new key did not succeed")
		}
		done <- err
	}()
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the held put never reached the member")
	}
	_, err = c.Put(ctx, "big", make([]byte, cxkvpb.MaxMessageBytes+1), 0)
	if status.Code(err) != codes.ResourceExhausted || errors.Is(err, client.ErrOutcomeUnknown) {
		t.Errorf("put over the message limit: %v; want ResourceExhausted, not sent", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("put in flight on the stream while another call was over the limit: %v; want its success", err)
	}
}

// A write in flight when its Client closes was sent and may have applied:
// it ends at once with ErrOutcomeUnknown (wrapping ErrClosed), not with
// ErrClosed alone, which a caller would read as not applied.
func TestWriteInFlightAtCloseIsOutcomeUnknown(t *testing.T) {
	cl, _ := start(t)
	held, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	var holding sync.Once
	p := &proxy{to: cl.Client(cl.WaitLeader())}
	p.calls = func(req *cxkvpb.CallRequest) bool {
		if req.GetPut() != nil {
			holding.Do(func() { close(held) })
			<-release // applied; its answer never comes before the close
		}
		return false
	}
	c := dial(t, []string{serveKV(t, p)})
	done := make(chan error, 1)
	go func() {
		_, err := c.Put(context.Background(), "k", []byte("v"), 0)
		done <- err
	}()
	<-held
	c.Close()
	err := <-done
	if !errors.Is(err, client.ErrOutcomeUnknown) || !errors.Is(err, client.ErrClosed) {
		t.Fatalf("put applied, its client closed before the answer: %v; want ErrOutcomeUnknown wrapping ErrClosed", err)
	}
}

// stallMember is a fake member that serves the Calls stream and can stop
// reading it, as a member at its bound or a stopped process does. It
// answers every write at once, as applied; it holds every Get until the
// test answers them (answerGets) or a cancel names it; after reading
// stopAfter calls it reads nothing more until resumed is closed. Served
// with stallWindows, a stream it does not read holds the SDK's sends back
// after 64 KiB. With refuse set it reads one call and then answers the
// stream Unimplemented, as a member without Calls, the call surely sent.
type stallMember struct {
	cxkvrpc.UnimplementedKVServer
	stopAfter int
	resumed   chan struct{}
	refuse    bool

	mu      sync.Mutex
	streams int // Calls streams opened
	read    int // calls read, cancels aside
	writes  int
	held    map[uint64]chan<- *cxkvpb.CallResponse // a held Get's id: its stream's answers
	maxHeld int
}

// stallWindows are serveKV's options for a stallMember: static 64 KiB
// flow-control windows, so what a client may send unread is bounded.
var stallWindows = []grpc.ServerOption{grpc.StaticStreamWindowSize(64 << 10), grpc.StaticConnWindowSize(64 << 10)}

func (m *stallMember) Calls(stream cxkvrpc.KV_CallsServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	out := make(chan *cxkvpb.CallResponse, 2*cxkvpb.MaxCallsInFlight)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // one Send at a time
		defer wg.Done()
		for {
			select {
			case a := <-out:
				if stream.Send(a) != nil {
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	defer wg.Wait()
	defer cancel()
	m.mu.Lock()
	m.streams++
	m.mu.Unlock()
	for {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		if m.refuse {
			return status.Error(codes.Unimplemented, "this member does not serve Calls")
		}
		id := req.GetId()
		header := &cxkvpb.Header{MemberId: 1, LeaderId: 1, Term: 2}
		m.mu.Lock()
		switch {
		case req.GetCancel():
			if ch, ok := m.held[id]; ok {
				delete(m.held, id)
				st, _ := proto.Marshal(status.New(codes.Canceled, "cancelled by the client").Proto())
				ch <- &cxkvpb.CallResponse{Id: id, Status: st}
			}
			m.mu.Unlock()
			continue
		case req.GetGet() != nil:
			if m.held == nil {
				m.held = map[uint64]chan<- *cxkvpb.CallResponse{}
			}
			m.held[id] = out
			m.maxHeld = max(m.maxHeld, len(m.held))
		case req.GetTxn() != nil:
			m.writes++
			out <- &cxkvpb.CallResponse{Id: id, Op: &cxkvpb.CallResponse_Txn{Txn: &cxkvpb.TxnResponse{Header: header, Successful: true}}}
		case req.GetPut() != nil:
			m.writes++
			rec := &cxkvpb.Record{Key: req.GetPut().GetKey(), Index: 1}
			out <- &cxkvpb.CallResponse{Id: id, Op: &cxkvpb.CallResponse_Put{Put: &cxkvpb.PutResponse{Header: header, Successful: true, Record: rec}}}
		}
		m.read++
		stop := m.read == m.stopAfter
		m.mu.Unlock()
		if stop {
			select {
			case <-m.resumed:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// answerGets answers every Get held: the key is absent.
func (m *stallMember) answerGets() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, ch := range m.held {
		ch <- &cxkvpb.CallResponse{Id: id, Op: &cxkvpb.CallResponse_Get{Get: &cxkvpb.GetResponse{Header: &cxkvpb.Header{MemberId: 1, LeaderId: 1, Term: 2}}}}
	}
	clear(m.held)
}

func (m *stallMember) counts() (streams, read, writes, held, maxHeld int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.streams, m.read, m.writes, len(m.held), m.maxHeld
}

// streamSends is a client stats handler counting the messages handed to
// the connection's Calls streams.
type streamSends struct{ n atomic.Int64 }

type callsRPC struct{}

func (s *streamSends) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, callsRPC{}, info.FullMethodName == cxkvrpc.KV_Calls_FullMethodName)
}

func (s *streamSends) HandleRPC(ctx context.Context, st stats.RPCStats) {
	if _, ok := st.(*stats.OutPayload); ok && ctx.Value(callsRPC{}) == true {
		s.n.Add(1)
	}
}

func (*streamSends) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (*streamSends) HandleConn(context.Context, stats.ConnStats)                       {}

// stallSends dials m (served with stallWindows) and leaves a call blocked
// in its send on the Calls stream, the stream's turn to send held: m must
// stop reading after the calls already made on c (made counts their
// messages). It sends a 1 MiB Get, which the stream takes whole though the
// member reads none of it, then another, which waits for the first to be
// written. Both are answered once m resumes and answers its Gets.
func stallSends(t *testing.T, ctx context.Context, c *client.Client, sends *streamSends, made int64) (bigs chan error) {
	t.Helper()
	bigs = make(chan error, 2)
	get := func(key string) {
		go func() {
			_, err := c.Get(ctx, key)
			bigs <- err
		}()
	}
	get(strings.Repeat("a", 1<<20))
	raftnodetest.Eventually(t, 10*time.Second, "the first 1 MiB get handed to the stream", func() bool {
		return sends.n.Load() == made+1 && !client.SendTurnHeld(c)
	})
	get(strings.Repeat("b", 1<<20))
	raftnodetest.Eventually(t, 10*time.Second, "the second 1 MiB get sending", func() bool { return client.SendTurnHeld(c) })
	return bigs
}

// dialStalled is a Client on m alone whose stream sends are counted; its
// attempts and cancels wait a minute, so only the caller's context ends a
// call.
func dialStalled(t *testing.T, m *stallMember) (*client.Client, *streamSends) {
	t.Helper()
	sends := &streamSends{}
	c, err := client.New(client.Config{
		Endpoints:      []string{serveKV(t, m, stallWindows...)},
		RequestTimeout: time.Minute, DialTimeout: time.Minute,
		DialOptions: []grpc.DialOption{grpc.WithStatsHandler(sends)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, sends
}

// A call whose context ends while it waits for its turn to send, behind
// another call's send that the member does not read, gives up alone: it
// was not sent, so it did not apply, and the stream and the calls on it go
// on.
func TestCallGivingUpWhileAnotherSendsLeavesTheStream(t *testing.T) {
	m := &stallMember{stopAfter: 2, resumed: make(chan struct{})}
	c, sends := dialStalled(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The first write opens the stream and the write session (a Txn): the
	// member reads those two calls and stops.
	if _, err := c.Put(ctx, "w", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	bigs := stallSends(t, ctx, c, sends, 2)
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err := c.Put(short, "c", []byte("v"), 0)
	cancelShort()
	if status.Code(err) != codes.DeadlineExceeded || errors.Is(err, client.ErrOutcomeUnknown) {
		t.Errorf("put whose deadline passed while it waited to send: %v; want DeadlineExceeded, not applied", err)
	}
	close(m.resumed)
	raftnodetest.Eventually(t, 10*time.Second, "the member holding the two gets", func() bool {
		_, _, _, held, _ := m.counts()
		return held == 2
	})
	m.answerGets()
	for range 2 {
		if err := <-bigs; err != nil {
			t.Errorf("1 MiB get: %v", err)
		}
	}
	if streams, read, writes, _, _ := m.counts(); streams != 1 || read != 4 || writes != 2 {
		t.Errorf("the member saw %d Calls streams, %d calls, %d writes; want the stream unbroken: 1 stream, 4 calls (txn, put, the 2 gets), 2 writes (the put that gave up not sent)", streams, read, writes)
	}
}

// A call that gives up after it was sent keeps its place among the calls
// the stream has in flight until the member answers it, and its cancel is
// sent once the call sending before it is done: the member never holds more
// than cxkvpb.MaxCallsInFlight calls of the stream, so it never stops
// reading with a cancel behind calls it has not read.
func TestCallGivingUpWhileAnotherSendsKeepsTheBound(t *testing.T) {
	const held = cxkvpb.MaxCallsInFlight - 2 // the 2 big gets take the rest
	m := &stallMember{stopAfter: held, resumed: make(chan struct{})}
	c, sends := dialStalled(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	xctx, cancelX := context.WithCancel(ctx)
	defer cancelX()
	done := make(chan error, held+1)
	get := func(ctx context.Context, key string) {
		go func() {
			_, err := c.Get(ctx, key)
			done <- err
		}()
	}
	get(xctx, "x")
	for i := range held - 1 {
		get(ctx, fmt.Sprint(i))
	}
	raftnodetest.Eventually(t, 10*time.Second, "the member holding the first gets", func() bool {
		_, read, _, _, _ := m.counts()
		return read == held
	})
	bigs := stallSends(t, ctx, c, sends, held)
	cancelX()
	get(ctx, "y") // after x, in the place x gave up
	close(m.resumed)
	raftnodetest.Eventually(t, 10*time.Second, "the member reading the get after x", func() bool {
		_, read, _, _, _ := m.counts()
		return read == held+3
	})
	_, _, _, _, maxHeld := m.counts()
	m.answerGets()
	canceled := 0
	for range held + 1 {
		if err := <-done; status.Code(err) == codes.Canceled {
			canceled++
		} else if err != nil {
			t.Errorf("get: %v", err)
		}
	}
	for range 2 {
		if err := <-bigs; err != nil {
			t.Errorf("1 MiB get: %v", err)
		}
	}
	if canceled != 1 {
		t.Errorf("%d gets ended Canceled; want x's", canceled)
	}
	if maxHeld > cxkvpb.MaxCallsInFlight {
		t.Errorf("the member held %d calls of the stream at once; the bound is %d", maxHeld, cxkvpb.MaxCallsInFlight)
	}
}

// A call the member answered Unimplemented for on the stream, after
// reading it, did not run: the unary call it falls back to decides alone
// whether the attempt sent its write, so one that fails before sending is
// not taken for a write that may have applied.
func TestUnaryFallbackIsNotSentByTheStreamsAttempt(t *testing.T) {
	m := &stallMember{refuse: true}
	c := dial(t, []string{serveKV(t, m)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	refused := status.Error(codes.Unavailable, "connection refused: not sent")
	var unary int
	sent, err := client.StreamedPut(c, ctx, &cxkvpb.PutRequest{Key: "k", Value: []byte("v")}, func(context.Context, string, any, any, *grpc.ClientConn, ...grpc.CallOption) error {
		unary++
		return refused
	})
	if unary != 1 || !errors.Is(err, refused) {
		t.Fatalf("put on a stream the member refused: %d unary calls, %v; want the one unary call's error", unary, err)
	}
	if sent {
		t.Errorf("put on a stream the member refused after reading it, its unary call not sent: counted as sent; want not sent")
	}
}

// A write waiting for its turn to send when its Client closes was not
// sent: it ends with ErrClosed, not as a write that may have applied, and
// the stream's goroutines end with the Client.
func TestWriteWaitingToSendAtCloseIsNotApplied(t *testing.T) {
	m := &stallMember{stopAfter: 2, resumed: make(chan struct{})}
	defer close(m.resumed)
	c, sends := dialStalled(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "w", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	bigs := stallSends(t, ctx, c, sends, 2)
	done := make(chan error, 1)
	go func() {
		_, err := c.Put(ctx, "c", []byte("v"), 0)
		done <- err
	}()
	raftnodetest.Eventually(t, 10*time.Second, "the put waiting to send", func() bool { return client.CallsPending(c) == 3 })
	c.Close()
	if err := <-done; !errors.Is(err, client.ErrClosed) || errors.Is(err, client.ErrOutcomeUnknown) {
		t.Errorf("put waiting to send when its client closed: %v; want ErrClosed, not applied", err)
	}
	for range 2 {
		<-bigs
	}
}

// A member that answered Unimplemented to the Calls stream (an older
// version) is sent unary calls, but not for the client's life: restarted
// at the newer version on the same address, it is given the stream again
// once client.CallStreamRetry has passed on the client's clock.
func TestUpgradedMemberGetsTheStreamAgain(t *testing.T) {
	cl, _ := start(t)
	to := cl.Client(cl.WaitLeader())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	older := &proxy{to: to}
	s := grpc.NewServer()
	cxkvrpc.RegisterKVServer(s, older)
	go s.Serve(l)
	clock := clockwork.NewFakeClock()
	c, err := client.New(client.Config{Endpoints: []string{addr}, RequestTimeout: 2 * time.Second, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	put := func(key string) {
		t.Helper()
		if r, err := c.Put(ctx, key, []byte("v"), 0); err != nil || !r.Successful {
			t.Fatalf("put %s: %+v, %v", key, r, err)
		}
	}
	put("before")
	if older.unaryPuts.Load() != 1 {
		t.Fatalf("the older member saw %d unary puts; want 1", older.unaryPuts.Load())
	}

	// The upgrade: the member stops and starts again, newer, where it was.
	s.Stop()
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	newer := &proxy{to: to, calls: func(*cxkvpb.CallRequest) bool { return false }}
	s = grpc.NewServer()
	cxkvrpc.RegisterKVServer(s, newer)
	go s.Serve(l)
	defer s.Stop()
	put("upgraded")
	if newer.unaryPuts.Load() != 1 || newer.streamPuts.Load() != 0 {
		t.Fatalf("before the retry interval: %d unary puts, %d on the stream; want 1 unary", newer.unaryPuts.Load(), newer.streamPuts.Load())
	}
	clock.Advance(client.CallStreamRetry)
	put("streamed")
	if newer.streamPuts.Load() != 1 {
		t.Fatalf("after the retry interval: %d unary puts, %d on the stream; want the put on the stream", newer.unaryPuts.Load(), newer.streamPuts.Load())
	}
}
