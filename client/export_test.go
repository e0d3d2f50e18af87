package client

import (
	"context"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"google.golang.org/grpc"
)

// SetListPageSize makes List fetch n records a page, so tests can cross
// page boundaries with few keys. It returns the function that restores it.
func SetListPageSize(n int) (restore func()) {
	old := listPageSize
	listPageSize = n
	return func() { listPageSize = old }
}

// SendTurnHeld reports whether a call (or a cancel) is sending on the
// Calls stream of c's first member connection.
func SendTurnHeld(c *Client) bool {
	s := c.endpoints[0].calls
	s.mu.Lock()
	cs := s.cur
	s.mu.Unlock()
	if cs == nil {
		return false
	}
	select {
	case <-cs.ready:
	default:
		return false
	}
	return len(cs.turn) == 1
}

// StreamedPut makes req's attempt on c's first member connection through
// the innermost interceptor, the Calls stream's, with invoke standing in for
// the unary call it falls back to; sent is what the attempt counts as sent.
func StreamedPut(c *Client, ctx context.Context, req *cxkvpb.PutRequest, invoke grpc.UnaryInvoker) (sent bool, err error) {
	ctx, s := probeSend(ctx)
	err = c.streamInterceptor(ctx, cxkvrpc.KV_Put_FullMethodName, req, new(cxkvpb.PutResponse), c.endpoints[0].conn, invoke)
	return s.Load(), err
}

// CallsPending is the number of calls on the Calls stream of c's first
// member connection that are waiting to send or for their answer.
func CallsPending(c *Client) int {
	s := c.endpoints[0].calls
	s.mu.Lock()
	cs := s.cur
	s.mu.Unlock()
	if cs == nil {
		return 0
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.pending)
}

// CallStreamRetry is how long a member that answered Unimplemented to the
// Calls stream is sent unary calls before the stream is tried again.
const CallStreamRetry = callStreamRetry
