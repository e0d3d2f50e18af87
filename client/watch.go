package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Watch iterates over every change to keys under prefix with an index
// greater than from, in log order, each exactly once. from 0 means "from
// now". When a member fails, the watch resumes on another from the last
// index it delivered, so no event is lost or repeated across failovers.
//
// Iteration ends when the loop breaks, or with one final error: the
// context's, ErrCompacted (the history after from is gone from every
// member: re-read the keys and watch from that read's index), or ErrClosed.
func (c *Client) Watch(ctx context.Context, prefix string, from uint64, opts ...WatchOption) iter.Seq2[Event, error] {
	req := &cxkvpb.WatchRequest{Prefix: prefix}
	for _, o := range opts {
		o(req)
	}
	return func(yield func(Event, error) bool) {
		if from == 0 {
			now, err := c.appliedIndex(ctx)
			if err != nil {
				yield(Event{}, err)
				return
			}
			from = now
		}
		r := retrier{c: c}
		// lacking: the members that said they no longer hold the history
		// after from. Members forget history on their own (a member that
		// caught up by a snapshot keeps it from the snapshot on), so
		// another may still hold it; the watch ends with ErrCompacted only
		// when every member said so.
		lacking := make([]bool, len(c.endpoints))
		for {
			i, ep := c.pick()
			for k := 0; lacking[i] && k < len(c.endpoints); k++ {
				i = (i + 1) % len(c.endpoints)
				ep = c.endpoints[i]
			}
			delivered, err := c.watchOnce(ctx, ep, req, &from, yield)
			if err == nil {
				return // the consumer stopped
			}
			if delivered {
				clear(lacking) // from moved on
			}
			if status.Code(err) == codes.OutOfRange {
				lacking[i] = true
				if !slices.Contains(lacking, false) {
					yield(Event{}, fmt.Errorf("%w: %s", ErrCompacted, status.Convert(err).Message()))
					return
				}
				continue
			}
			if ctx.Err() != nil {
				yield(Event{}, ctx.Err())
				return
			}
			if c.ctx.Err() != nil {
				yield(Event{}, ErrClosed)
				return
			}
			if !retryable(ctx, err) && !errors.Is(err, io.EOF) {
				yield(Event{}, err)
				return
			}
			if delivered {
				r.reset()
			}
			if r.next(ctx, i, err) != nil {
				continue // the checks above end the iteration
			}
		}
	}
}

// watchOnce streams from one member until the stream breaks (the error) or
// the consumer stops (nil). It advances *from past everything it covered.
func (c *Client) watchOnce(ctx context.Context, ep *endpoint, req *cxkvpb.WatchRequest, from *uint64, yield func(Event, error) bool) (progressed bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	r := proto.Clone(req).(*cxkvpb.WatchRequest)
	r.FromIndex = *from
	var heard atomic.Int64
	heard.Store(time.Now().UnixNano())
	stall := c.watchStall(sctx, cancel, ep, &heard)
	defer stall.end()
	// broke is the error a broken stream ends with: the check's own, if
	// the check cut it.
	broke := func(err error) error {
		if stall.end() {
			return errLeftBehind
		}
		return err
	}
	stream, err := ep.kv.Watch(sctx, r)
	if err != nil {
		return false, broke(err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return progressed, broke(err)
		}
		heard.Store(time.Now().UnixNano())
		progressed = true
		c.observe(ep, resp.GetHeader())
		if len(resp.GetEvents()) == 0 {
			// A progress notice: nothing under prefix up to the header's
			// applied index.
			*from = max(*from, resp.GetHeader().GetAppliedIndex())
			continue
		}
		// A transaction's events share one index, and a response never
		// splits an index, so what was delivered before is exactly the
		// indexes up to base.
		base := *from
		var head *Record
		if h := resp.GetHead(); h != nil {
			r := fromProto(h)
			head = &r
		}
		for _, pe := range resp.GetEvents() {
			ev := eventFromProto(pe)
			ev.Head = head
			if ev.Record.Index <= base {
				continue // already delivered before a failover
			}
			*from = ev.Record.Index
			if !yield(ev, nil) {
				return false, nil
			}
		}
	}
}

// WatchOption configures a Watch.
type WatchOption func(*cxkvpb.WatchRequest)

// WatchHead makes every event the watch delivers carry Event.Head, the
// head of the queue under prefix (the record with the lowest CreateIndex,
// as HeadOp answers it) as the member stood when it sent the event. A lock
// waiter watching its predecessor asks it of its queue, so the event that
// wakes it says whether it is first now, with no read after it. It needs
// read on every key under prefix. A member older than the option ignores
// it: its events carry no Head; nor do the events of one index that fill a
// message alone (a session's end). An empty prefix asks for nothing.
func WatchHead(prefix string) WatchOption {
	return func(r *cxkvpb.WatchRequest) { r.HeadOf = prefix }
}

// appliedIndex asks a member how far it has applied: the "now" of a watch.
func (c *Client) appliedIndex(ctx context.Context) (uint64, error) {
	var applied uint64
	err := c.do(ctx, nil, func(ctx context.Context, kv cxkvrpc.KVClient) (*cxkvpb.Header, error) {
		resp, err := kv.Status(ctx, &cxkvpb.StatusRequest{})
		applied = resp.GetHeader().GetAppliedIndex()
		return resp.GetHeader(), err
	})
	return applied, err
}
