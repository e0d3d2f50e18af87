package raftnode

import (
	"context"
	"errors"
	"io"
	"math"
	"sync"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// KV.Calls carries writes, reads and listings on one long-lived stream
// per client connection: a unary call pays for an HTTP/2 stream of its own
// (headers both ways, a handler goroutine, the interceptors' setup), which
// on this project's machines cost more of a client's and a member's CPU
// than the write itself asks of gRPC. Each message on the stream is one
// call, run exactly as its unary call is: through the same interceptor
// chain (metrics, slow log, leader hint, halt, auth: n.unary), as if it
// had arrived under that method's name, with the stream's metadata, so a
// token is checked on every call and a revoked one is seen.

// Calls runs the calls a client sends on one stream, concurrently, and
// writes each answer once its call is done (answerer; an answer names its
// call, so their order is free). With
// cxkvpb.MaxCallsInFlight calls unanswered it stops reading the stream, so
// a client that sends faster than the member answers is held back by
// HTTP/2 flow control rather than buffered here without bound. A call ends
// as its unary call would: by its timeout, by a cancel message naming it,
// or with the stream.
//
// A call runs on one of the stream's workers, started when a call finds
// none idle and kept until the stream ends (at most MaxCallsInFlight): a
// goroutine per call grew a fresh stack through the interceptors and the
// handler every time, and starting it and copying its stack were 3-4% of
// the members' CPU at cas-parallel.
func (s *kvService) Calls(stream cxkvrpc.KV_CallsServer) error {
	ctx := stream.Context()
	// Sent with the first answer: the calls beyond the first four that this
	// member takes on the stream.
	if err := stream.SetHeader(metadata.Pairs(cxkvpb.CallsOpsHeader, cxkvpb.CallsOps)); err != nil {
		return err
	}
	var (
		mu       sync.Mutex
		inFlight = map[uint64]context.CancelFunc{}
		closed   bool           // under mu: no call is taken any more
		taken    sync.WaitGroup // the calls taken and not yet answered
		running  sync.WaitGroup // the workers
		workers  int
	)
	answers := newAnswerer(stream)
	slots := make(chan struct{}, cxkvpb.MaxCallsInFlight)
	// Unbuffered: a call handed over is one an idle worker took.
	jobs := make(chan streamCall)
	run := func(c streamCall) {
		resp := s.call(c.ctx, c.req)
		mu.Lock()
		delete(inFlight, c.req.GetId())
		mu.Unlock()
		c.cancel()
		answers.answer(resp)
		<-slots
		taken.Done()
	}
	sent := make(chan error, 1)
	go func() { sent <- answers.run() }()
	// The stream is read on a goroutine of its own: a Recv waiting for the
	// client's next call ends only when the handler returns, and the
	// handler must return when the member stops (its context ends), or
	// the server's graceful stop waits for the client to hang up.
	read := make(chan error, 1)
	go func() {
		var err error
		defer func() {
			close(jobs) // the workers end
			read <- err
		}()
		for {
			req, rerr := stream.Recv()
			if rerr != nil {
				if !errors.Is(rerr, io.EOF) {
					err = rerr
				}
				return
			}
			id := req.GetId()
			if req.GetCancel() {
				mu.Lock()
				if cancel := inFlight[id]; cancel != nil {
					cancel()
				}
				mu.Unlock()
				continue
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
			// One context per call, cancelled when the call ends: a context
			// left uncancelled stays registered with the stream's for the
			// stream's life.
			var (
				cctx   context.Context
				cancel context.CancelFunc
			)
			// A timeout past what a time.Duration holds (292 years) is none:
			// multiplied out it would wrap to one already past.
			if t := req.GetTimeoutUs(); t > 0 && t <= math.MaxInt64/int64(time.Microsecond) {
				cctx, cancel = context.WithTimeout(ctx, time.Duration(t)*time.Microsecond)
			} else {
				cctx, cancel = context.WithCancel(ctx)
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				cancel()
				return
			}
			inFlight[id] = cancel
			taken.Add(1)
			mu.Unlock()
			c := streamCall{ctx: cctx, cancel: cancel, req: req}
			select {
			case jobs <- c:
				continue
			default:
			}
			// With every worker started, one is between answering and
			// waiting (this call holds a slot, so at most all but one are
			// running calls): wait for it.
			if workers == cxkvpb.MaxCallsInFlight {
				jobs <- c
				continue
			}
			workers++
			running.Add(1)
			go func() {
				defer running.Done()
				run(c)
				for c := range jobs {
					run(c)
				}
			}()
		}
	}()
	var err error
	select {
	case err = <-read:
		// The reader closed jobs: the workers end once the calls they
		// took are answered.
		running.Wait()
	case <-ctx.Done():
		// The member stops (or halts, or the client went away): take no
		// more calls, answer the ones taken (their contexts ended with
		// the stream's, so they end as on a stopping member), then end
		// the stream. A call the client sent after this is not run; the
		// client sees the stream end without its answer. The reader and
		// the idle workers end when the handler has returned and gRPC
		// closed the stream under the reader's Recv.
		if s.n.life.ctx.Err() != nil {
			err = toStatus(errStopping)
		} else {
			err = status.FromContextError(ctx.Err()).Err()
		}
	}
	mu.Lock()
	closed = true
	mu.Unlock()
	taken.Wait()
	answers.close()
	if serr := <-sent; err == nil {
		err = serr
	}
	return err
}

// streamCall is one call of a Calls stream on its way to a worker.
type streamCall struct {
	ctx    context.Context
	cancel context.CancelFunc
	req    *cxkvpb.CallRequest
}

// answerer writes a stream's answers, one Send at a time. A worker whose
// call is answered while no Send is under way writes the answer itself, so
// a lone call's answer goes out without waking another goroutine (a hop
// that waits for a free core on a busy member); one that finds a Send under
// way queues its answer for run, and never waits for the other's Send,
// which blocks while the client's flow-control window is full. After a
// failed Send the rest are dropped, so no call waits on a stream that is
// gone.
type answerer struct {
	stream cxkvrpc.KV_CallsServer
	mu     sync.Mutex // held across each Send
	err    error      // under mu: the first failed Send
	// queue holds the answers that found a Send under way. It has room for
	// every call the stream may hold (each holds a slot until answered),
	// so queueing never blocks. Closed once every call taken is answered.
	queue chan *cxkvpb.CallResponse
}

func newAnswerer(stream cxkvrpc.KV_CallsServer) *answerer {
	return &answerer{stream: stream, queue: make(chan *cxkvpb.CallResponse, cxkvpb.MaxCallsInFlight)}
}

// answer writes resp now if no Send is under way, else queues it.
func (a *answerer) answer(resp *cxkvpb.CallResponse) {
	if !a.mu.TryLock() {
		a.queue <- resp
		return
	}
	defer a.mu.Unlock()
	a.send(resp)
}

// send writes resp unless a Send failed before; a.mu is held.
func (a *answerer) send(resp *cxkvpb.CallResponse) {
	if a.err == nil {
		a.err = a.stream.Send(resp)
	}
}

// close ends run once the queued answers are written; every call taken
// must have been answered.
func (a *answerer) close() { close(a.queue) }

// run writes the queued answers until the queue is closed, and returns
// the first failed Send's error.
func (a *answerer) run() error {
	for resp := range a.queue {
		a.mu.Lock()
		a.send(resp)
		a.mu.Unlock()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// call runs one call through the unary interceptor chain and the handler
// its unary method has, and puts the outcome in its answer.
func (s *kvService) call(ctx context.Context, req *cxkvpb.CallRequest) *cxkvpb.CallResponse {
	out := &cxkvpb.CallResponse{Id: req.GetId()}
	var (
		method  string
		msg     any
		handler grpc.UnaryHandler
	)
	switch op := req.GetOp().(type) {
	case *cxkvpb.CallRequest_Put:
		method, msg = cxkvrpc.KV_Put_FullMethodName, op.Put
		handler = func(ctx context.Context, r any) (any, error) { return s.Put(ctx, r.(*cxkvpb.PutRequest)) }
	case *cxkvpb.CallRequest_Delete:
		method, msg = cxkvrpc.KV_Delete_FullMethodName, op.Delete
		handler = func(ctx context.Context, r any) (any, error) { return s.Delete(ctx, r.(*cxkvpb.DeleteRequest)) }
	case *cxkvpb.CallRequest_Txn:
		method, msg = cxkvrpc.KV_Txn_FullMethodName, op.Txn
		handler = func(ctx context.Context, r any) (any, error) { return s.Txn(ctx, r.(*cxkvpb.TxnRequest)) }
	case *cxkvpb.CallRequest_Get:
		method, msg = cxkvrpc.KV_Get_FullMethodName, op.Get
		handler = func(ctx context.Context, r any) (any, error) { return s.Get(ctx, r.(*cxkvpb.GetRequest)) }
	case *cxkvpb.CallRequest_List:
		method, msg = cxkvrpc.KV_List_FullMethodName, op.List
		handler = func(ctx context.Context, r any) (any, error) { return s.List(ctx, r.(*cxkvpb.ListRequest)) }
	default:
		out.Status = statusBytes(status.Error(codes.InvalidArgument, "a call on the Calls stream must carry a put, delete, txn, get or list"))
		return out
	}
	if a := req.GetAuthorization(); a != "" {
		md, ok := metadata.FromIncomingContext(ctx) // a copy
		if !ok {
			md = metadata.MD{}
		}
		md.Set(authMetadataKey, a)
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	resp, err := s.n.streamedUnary(ctx, msg, &grpc.UnaryServerInfo{Server: s, FullMethod: method}, handler)
	if err != nil {
		out.Status = statusBytes(err)
		return out
	}
	switch r := resp.(type) {
	case *cxkvpb.PutResponse:
		out.Op = &cxkvpb.CallResponse_Put{Put: r}
	case *cxkvpb.DeleteResponse:
		out.Op = &cxkvpb.CallResponse_Delete{Delete: r}
	case *cxkvpb.TxnResponse:
		out.Op = &cxkvpb.CallResponse_Txn{Txn: r}
	case *cxkvpb.GetResponse:
		out.Op = &cxkvpb.CallResponse_Get{Get: r}
	case *cxkvpb.ListResponse:
		out.Op = &cxkvpb.CallResponse_List{List: r}
	}
	return out
}

// statusBytes is err as its unary call would have ended with it: the status
// toStatus made (an error from the context, gRPC's own code for it).
func statusBytes(err error) []byte {
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	b, merr := proto.Marshal(st.Proto())
	if merr != nil {
		b, _ = proto.Marshal(status.New(codes.Internal, "cxkv: encoding a call's error: "+merr.Error()).Proto())
	}
	return b
}
