package client

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Writes and reads go over one long-lived KV.Calls stream per member
// (raftnode/calls.go) instead of a unary call each: a unary call pays for
// an HTTP/2 stream of its own, which cost more of this process's CPU than
// the rest of the call. The stream is the last step of the connection's
// unary interceptor chain (callStreams.unary): every interceptor before it
// (the token's, a caller's own) sees a unary call, and the call is answered
// exactly as the unary call would be, so the retry policy cannot tell them
// apart. A call whose answer never came because the stream broke after it
// was sent may have applied, like a unary call whose answer was lost; one
// that was never sent was not. A member that does not implement Calls
// (an older version) is sent unary calls from then on, and asked for the
// stream again after callStreamRetry: it may have been upgraded meanwhile
// (a rolling upgrade restarts every member at the newer version), and a
// connection that stayed unary for the client's life would never get the
// stream back.

// callStreamRetry is how long a member that answered Unimplemented to Calls
// is sent unary calls before the stream is tried again. A try on a member
// still without it costs one refused stream open; the call goes unary.
const callStreamRetry = 10 * time.Second

// callStreams is a member connection's Calls stream.
type callStreams struct {
	c  *Client
	kv cxkvrpc.KVClient
	// unaryUntil (UnixNano on the Client's clock): the member answered
	// Unimplemented to Calls, so calls go unary until then.
	unaryUntil atomic.Int64
	nextID     atomic.Uint64
	mu         sync.Mutex
	cur        *callStream // open or opening; nil: none
}

// callStream is one Calls stream and the calls waiting on it.
//
// A call holds one of slots from before it is sent until the member's
// answer to it arrives or the stream ends, even if its caller stopped
// waiting: so the member never has more than cxkvpb.MaxCallsInFlight of the
// stream's calls unanswered, never stops reading for want of room (it reads
// cancels at its bound too), and a cancel is never stuck behind calls it
// has not read. Sending takes turn, which a call waits for under its own
// context: a gRPC stream takes one Send at a time, and a call that gives up
// before its turn came was not sent and leaves the stream alone.
type callStream struct {
	ready   chan struct{} // closed once the stream opened or failed to
	openErr error
	stream  cxkvrpc.KV_CallsClient
	cancel  context.CancelFunc // breaks the stream
	turn    chan struct{}      // held (full) while a call or the cancels are sent
	slots   chan struct{}      // one per call the member may hold: cxkvpb.MaxCallsInFlight
	kick    chan struct{}      // cancels were queued
	mu      sync.Mutex
	pending map[uint64]chan *cxkvpb.CallResponse // by call id, from before its send until its answer
	cancels []uint64                             // calls sent whose callers gave up, to cancel
	err     error                                // set once the stream broke; pending is then nil
	// listOK: the member named list in the stream's header, which arrives
	// with its first answer; until then a List goes unary.
	listOK atomic.Bool
}

// errNoCalls: the member does not implement Calls; the call was not run.
var errNoCalls = errors.New("cxkv: the member does not serve the Calls stream")

// errNotOffered: the stream's member has not named the call as one it takes
// on the stream (cxkvpb.CallsOpsHeader): an older member, or a stream that
// has not answered yet. The call was not sent; it goes unary.
var errNotOffered = errors.New("cxkv: the member does not take this call on the Calls stream")

// errOverStream: the call is too large to go on the stream; it was not
// sent. gRPC ends a whole client stream on a message over its send limit,
// failing every call in flight on it, so such a call goes as a unary call
// instead: one that fits there is sent, one that does not fails alone, not
// sent, exactly as before the stream.
var errOverStream = errors.New("cxkv: the call is over the Calls stream's message limit")

// streamed are the methods that go on the stream.
var streamed = map[string]bool{
	cxkvrpc.KV_Put_FullMethodName:    true,
	cxkvrpc.KV_Delete_FullMethodName: true,
	cxkvrpc.KV_Txn_FullMethodName:    true,
	cxkvrpc.KV_Get_FullMethodName:    true,
	cxkvrpc.KV_List_FullMethodName:   true, // once the stream offers it (errNotOffered)
}

// streamInterceptor is the innermost unary interceptor of every member
// connection: it sends the streamed methods on the connection's stream.
func (c *Client) streamInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var cs *callStreams
	if streamed[method] {
		for _, ep := range c.endpoints {
			if ep.conn == cc {
				cs = ep.calls
			}
		}
	}
	if cs == nil || cs.unaryNow() {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	call := &cxkvpb.CallRequest{}
	switch r := req.(type) {
	case *cxkvpb.PutRequest:
		call.Op = &cxkvpb.CallRequest_Put{Put: r}
	case *cxkvpb.DeleteRequest:
		call.Op = &cxkvpb.CallRequest_Delete{Delete: r}
	case *cxkvpb.TxnRequest:
		call.Op = &cxkvpb.CallRequest_Txn{Txn: r}
	case *cxkvpb.GetRequest:
		call.Op = &cxkvpb.CallRequest_Get{Get: r}
	case *cxkvpb.ListRequest:
		call.Op = &cxkvpb.CallRequest_List{List: r}
	}
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		if v := md.Get(cxkvpb.AuthMetadataKey); len(v) > 0 {
			call.Authorization = v[0]
		}
	}
	resp, sent, err := cs.call(ctx, call)
	if errors.Is(err, errNoCalls) || errors.Is(err, errOverStream) || errors.Is(err, errNotOffered) {
		// Not run on the stream, whether sent there or not: the unary
		// call alone says whether the attempt sent the request.
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	if sent {
		if s, ok := ctx.Value(sentKey{}).(*atomic.Bool); ok {
			s.Store(true)
		}
	}
	if err != nil {
		return err
	}
	var got proto.Message
	switch r := resp.GetOp().(type) {
	case *cxkvpb.CallResponse_Put:
		got = r.Put
	case *cxkvpb.CallResponse_Delete:
		got = r.Delete
	case *cxkvpb.CallResponse_Txn:
		got = r.Txn
	case *cxkvpb.CallResponse_Get:
		got = r.Get
	case *cxkvpb.CallResponse_List:
		got = r.List
	}
	out := reply.(proto.Message)
	if got == nil || got.ProtoReflect().Descriptor() != out.ProtoReflect().Descriptor() {
		return status.Errorf(codes.Internal, "cxkv: the member answered a %s call on the Calls stream with another kind of answer", method)
	}
	moveInto(out, got)
	return nil
}

// moveInto sets every field of dst, a new message, to src's: the values are
// shared, not copied, since src is not used again (proto.Merge's deep copy
// was a fifth of the SDK's CPU per call). Unknown fields (a newer member's)
// move too.
func moveInto(dst, src proto.Message) {
	d, m := dst.ProtoReflect(), src.ProtoReflect()
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		d.Set(fd, v)
		return true
	})
	if u := m.GetUnknown(); len(u) > 0 {
		d.SetUnknown(u)
	}
}

// call sends req on the stream, opening one if none is open, and waits for
// its answer or the end of ctx; an answer's status is returned as the
// unary call's error. sent reports whether req was handed to the stream:
// one that was not cannot have run.
func (s *callStreams) call(ctx context.Context, req *cxkvpb.CallRequest) (resp *cxkvpb.CallResponse, sent bool, err error) {
	_, isList := req.GetOp().(*cxkvpb.CallRequest_List)
	if isList && !s.offersList() {
		return nil, false, errNotOffered // and opens no stream for it
	}
	cs, err := s.stream(ctx)
	if err != nil {
		return nil, false, err
	}
	if isList && !cs.listOK.Load() {
		return nil, false, errNotOffered // a stream opened since offersList
	}
	select {
	case cs.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, false, status.FromContextError(ctx.Err()).Err()
	}
	req.Id = s.nextID.Add(1)
	if dl, ok := ctx.Deadline(); ok {
		// Set again once sent: the time left only shrinks, and the size
		// with it.
		req.TimeoutUs = max(time.Until(dl).Microseconds(), 1)
	}
	if req.SizeVT() > cxkvpb.MaxMessageBytes {
		<-cs.slots
		return nil, false, errOverStream
	}
	ch := make(chan *cxkvpb.CallResponse, 1)
	cs.mu.Lock()
	if cs.err != nil {
		cs.mu.Unlock()
		<-cs.slots
		return nil, false, cs.err // broke before this call was sent
	}
	cs.pending[req.Id] = ch
	cs.mu.Unlock()
	select {
	case cs.turn <- struct{}{}:
	case <-ctx.Done():
		cs.forget(req.Id)
		return nil, false, status.FromContextError(ctx.Err()).Err()
	case resp := <-ch:
		if resp == nil {
			return nil, false, cs.brokenErr() // broke before this call was sent
		}
		return nil, false, status.Errorf(codes.Internal, "cxkv: the member answered call %d on the Calls stream before it was sent", req.Id)
	}
	if ctx.Err() != nil {
		<-cs.turn
		cs.forget(req.Id)
		return nil, false, status.FromContextError(ctx.Err()).Err()
	}
	if dl, ok := ctx.Deadline(); ok {
		req.TimeoutUs = max(time.Until(dl).Microseconds(), 1)
	}
	// Send blocks while the member's flow-control window is full, that is
	// while it reads nothing: a send its call's end overtakes breaks the
	// stream, so no call outlives its context on it. The calls waiting for
	// their turn meanwhile give up alone.
	stop := context.AfterFunc(ctx, cs.cancel)
	err = cs.stream.Send(req)
	stop()
	<-cs.turn
	// Send fails only on a broken stream, without sending; its receiver
	// fails every pending call with the stream's error, this one too.
	sent = err == nil
	select {
	case resp := <-ch:
		if resp == nil {
			return nil, sent, cs.brokenErr()
		}
		if b := resp.GetStatus(); len(b) > 0 {
			var st spb.Status
			if err := proto.Unmarshal(b, &st); err != nil {
				return nil, sent, status.Errorf(codes.Internal, "cxkv: a call's error did not decode: %v", err)
			}
			return nil, sent, status.FromProto(&st).Err()
		}
		return resp, sent, nil
	case <-ctx.Done():
		if sent {
			cs.abandon(req.Id)
		} else {
			cs.forget(req.Id)
		}
		return nil, sent, status.FromContextError(ctx.Err()).Err()
	}
}

// offersList reports whether the connection's open stream takes Lists.
func (s *callStreams) offersList() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur != nil && s.cur.listOK.Load()
}

// brokenErr is the error the stream broke with.
func (cs *callStream) brokenErr() error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.err
}

// forget drops a call that was not sent, and its slot.
func (cs *callStream) forget(id uint64) {
	cs.mu.Lock()
	_, ok := cs.pending[id]
	delete(cs.pending, id)
	cs.mu.Unlock()
	if ok {
		<-cs.slots
	}
}

// abandon leaves a sent call whose caller gave up to its answer, which
// frees its slot, and has the member end it as it would a cancelled unary
// call: the stream goes on.
func (cs *callStream) abandon(id uint64) {
	cs.mu.Lock()
	if _, ok := cs.pending[id]; ok {
		cs.cancels = append(cs.cancels, id)
	}
	cs.mu.Unlock()
	select {
	case cs.kick <- struct{}{}:
	default:
	}
}

// sendCancels sends the cancels abandon queues, each in the stream's next
// turn to send, until ctx (the stream's) ends. A cancel the member does
// not take within DialTimeout means it stopped reading: that breaks the
// stream, as a call's send does that its context overtakes.
func (s *callStreams) sendCancels(ctx context.Context, cs *callStream) {
	for {
		select {
		case <-cs.kick:
		case <-ctx.Done():
			return
		}
		select {
		case cs.turn <- struct{}{}:
		case <-ctx.Done():
			return
		}
		cs.mu.Lock()
		ids := cs.cancels
		cs.cancels = nil
		cs.mu.Unlock()
		t := time.AfterFunc(s.c.cfg.DialTimeout, cs.cancel)
		for _, id := range ids {
			cs.mu.Lock()
			_, waiting := cs.pending[id]
			cs.mu.Unlock()
			if !waiting {
				continue // answered meanwhile
			}
			if cs.stream.Send(&cxkvpb.CallRequest{Id: id, Op: &cxkvpb.CallRequest_Cancel{Cancel: true}}) != nil {
				break
			}
		}
		t.Stop()
		<-cs.turn
	}
}

// stream returns the open stream, opening one if there is none. The
// opening is not the caller's: it runs on the stream's own goroutine, so a
// caller that gives up (a member that does not answer) leaves it to the
// next caller.
func (s *callStreams) stream(ctx context.Context) (*callStream, error) {
	s.mu.Lock()
	cs := s.cur
	if cs == nil {
		s.c.mu.Lock()
		if s.c.closed.Load() {
			s.c.mu.Unlock()
			s.mu.Unlock()
			return nil, ErrClosed
		}
		cs = &callStream{
			ready:   make(chan struct{}),
			turn:    make(chan struct{}, 1),
			slots:   make(chan struct{}, cxkvpb.MaxCallsInFlight),
			kick:    make(chan struct{}, 1),
			pending: map[uint64]chan *cxkvpb.CallResponse{},
		}
		s.cur = cs
		s.c.bg.Add(1)
		s.c.mu.Unlock()
		go func() {
			defer s.c.bg.Done()
			s.run(cs)
		}()
	}
	s.mu.Unlock()
	select {
	case <-cs.ready:
		if cs.openErr != nil {
			return nil, cs.openErr
		}
		return cs, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// run opens cs and hands each answer to its call until the stream breaks
// or the Client closes, then fails every call still waiting.
func (s *callStreams) run(cs *callStream) {
	ctx, cancel := context.WithCancel(s.c.ctx)
	defer cancel()
	cs.cancel = cancel
	cs.stream, cs.openErr = s.kv.Calls(ctx)
	if status.Code(cs.openErr) == codes.Unimplemented {
		s.goUnary()
		cs.openErr = errNoCalls
	}
	if cs.openErr != nil {
		s.drop(cs)
		close(cs.ready)
		return
	}
	close(cs.ready)
	var cancels sync.WaitGroup
	cancels.Go(func() { s.sendCancels(ctx, cs) })
	defer cancels.Wait()
	var err error
	for first := true; ; first = false {
		resp, rerr := cs.stream.Recv()
		if rerr != nil {
			err = rerr
			break
		}
		if first {
			// The header came before the first answer: reading it waits
			// for nothing.
			if md, herr := cs.stream.Header(); herr == nil && cxkvpb.NamesCallsOp(md.Get(cxkvpb.CallsOpsHeader), cxkvpb.CallsOpList) {
				cs.listOK.Store(true)
			}
		}
		// An answer to no call waiting (one answered already) is dropped.
		cs.mu.Lock()
		ch, ok := cs.pending[resp.GetId()]
		delete(cs.pending, resp.GetId())
		cs.mu.Unlock()
		if ok {
			<-cs.slots
			ch <- resp
		}
	}
	s.drop(cs)
	switch {
	case status.Code(err) == codes.Unimplemented:
		s.goUnary()
		err = errNoCalls
	case errors.Is(err, io.EOF):
		err = status.Error(codes.Unavailable, "cxkv: the member ended the call stream")
	}
	cs.mu.Lock()
	cs.err = err
	pending := cs.pending
	cs.pending = nil
	cs.mu.Unlock()
	for _, ch := range pending {
		<-cs.slots
		ch <- nil
	}
	cancel()
}

// goUnary sends the member unary calls for callStreamRetry: it answered
// Unimplemented to Calls.
func (s *callStreams) goUnary() {
	s.unaryUntil.Store(s.c.cfg.Clock.Now().Add(callStreamRetry).UnixNano())
}

// unaryNow says whether calls go unary: the member answered Unimplemented
// to Calls less than callStreamRetry ago.
func (s *callStreams) unaryNow() bool {
	until := s.unaryUntil.Load()
	return until != 0 && s.c.cfg.Clock.Now().UnixNano() < until
}

// drop forgets cs as the connection's stream: the next call opens another.
func (s *callStreams) drop(cs *callStream) {
	s.mu.Lock()
	if s.cur == cs {
		s.cur = nil
	}
	s.mu.Unlock()
}
