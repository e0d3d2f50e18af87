package client_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/client"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// An answer lost after the member proposed the write leaves its outcome
// unknown, whatever the text of the error that replaced it: the SDK used to
// read "connection refused" or "no leader" in a message as "never sent". Here
// the first attempt applies and its answer is replaced; every later attempt
// fails without leaving the client, so only the first could have applied.
func TestAnswerLostAfterProposingIsOutcomeUnknown(t *testing.T) {
	cl, c := start(t)
	for _, text := range []string{"connection refused", "no leader", "Error while dialing"} {
		// The caller gives up at the first retry, which fails with text
		// unsent. (A deadline instead would have to cover the client's
		// first connection and session, which on a loaded machine
		// outlasted 300 ms before the Put was sent.)
		ctx, cancel := context.WithCancel(context.Background())
		var calls atomic.Int32
		lose := func(ctx context.Context, m string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if p, ok := req.(*cxkvpb.PutRequest); !ok || p.GetKey() != "lost/"+text {
				return invoker(ctx, m, req, reply, cc, opts...) // the SDK's own calls pass
			}
			if calls.Add(1) == 1 {
				if err := invoker(ctx, m, req, reply, cc, opts...); err != nil {
					return err
				}
			} else {
				cancel()
			}
			return status.Error(codes.Unavailable, text)
		}
		lossy, err := client.New(client.Config{Endpoints: cl.Endpoints(), DialOptions: []grpc.DialOption{grpc.WithUnaryInterceptor(lose)}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = lossy.Put(ctx, "lost/"+text, []byte("x"), 0)
		cancel()
		lossy.Close()
		if !errors.Is(err, client.ErrOutcomeUnknown) {
			t.Errorf("Put whose first answer was replaced by %q: %v; want ErrOutcomeUnknown", text, err)
		}
		if rec, _ := c.Get(context.Background(), "lost/"+text); !rec.Exists() {
			t.Errorf("%q: the write did not apply; this test wants one that did", text)
		}
	}
}

// An answer larger than the client may receive fails with ResourceExhausted
// after the write applied: its outcome is unknown, not "never accepted".
func TestAnswerOverReceiveLimitIsOutcomeUnknown(t *testing.T) {
	cl, c := start(t)
	small, err := client.New(client.Config{Endpoints: cl.Endpoints(), DialOptions: []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1024)),
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	value := bytes.Repeat([]byte("v"), 4096) // the answer carries the record, value included
	_, err = small.Put(context.Background(), "big", value, 0)
	if !errors.Is(err, client.ErrOutcomeUnknown) || status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("Put whose answer exceeds the receive limit: %v; want ErrOutcomeUnknown wrapping ResourceExhausted", err)
	}
	if rec, _ := c.Get(context.Background(), "big"); !bytes.Equal(rec.Value, value) {
		t.Fatal("the write did not apply; this test wants one that did")
	}
}

// A write that never left the client (nothing listens at the endpoint) is
// known not to have applied: the plain error, not ErrOutcomeUnknown.
func TestWriteNeverSentIsNotOutcomeUnknown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // connections to addr are refused from now on
	c := dial(t, []string{addr})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = c.Put(ctx, "k", []byte("x"), 0)
	if err == nil || errors.Is(err, client.ErrOutcomeUnknown) {
		t.Fatalf("Put to a closed port: %v; want an error that is not ErrOutcomeUnknown", err)
	}
}

// A member too busy to take a write refuses it before proposing it, with
// ResourceExhausted and a detail saying it did not apply. The SDK backs off
// and retries it like Unavailable, so a burst of large writes is slowed down,
// not failed; it used to hand the refusal to the caller.
func TestBusyRefusalIsRetried(t *testing.T) {
	cl, c := start(t)
	var refusals atomic.Int32
	busy := func(ctx context.Context, m string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if p, ok := req.(*cxkvpb.PutRequest); ok && p.GetKey() == "busy/k" && refusals.Add(1) <= 3 {
			st, err := status.New(codes.ResourceExhausted, "member busy").WithDetails(&errdetails.ErrorInfo{
				Domain: cxkvpb.ErrorDomain, Reason: cxkvpb.ReasonWriteNotApplied,
			})
			if err != nil {
				t.Fatal(err)
			}
			return st.Err()
		}
		return invoker(ctx, m, req, reply, cc, opts...)
	}
	bc, err := client.New(client.Config{Endpoints: cl.Endpoints(), DialOptions: []grpc.DialOption{grpc.WithUnaryInterceptor(busy)}})
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := bc.Put(ctx, "busy/k", []byte("v"), 0)
	if err != nil || !res.Successful {
		t.Fatalf("Put refused three times as busy, then accepted: %+v, %v; want it applied", res, err)
	}
	if n := refusals.Load(); n < 4 {
		t.Fatalf("%d attempts; want the three refusals and one more", n)
	}
	if rec, _ := c.Get(ctx, "busy/k"); string(rec.Value) != "v" {
		t.Fatalf("busy/k = %q after the retried write", rec.Value)
	}
}
