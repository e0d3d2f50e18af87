package client

import (
	"context"
	"iter"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
)

// listPageSize is the page the List iterator asks for.
var listPageSize = 1000

// ListPage reads up to limit records whose keys start with prefix and sort
// after after (exclusive), in key order; more says whether another page
// follows. limit 0 means the server's default (100).
func (c *Client) ListPage(ctx context.Context, prefix, after string, limit int, opts ...ReadOption) (recs []Record, more bool, err error) {
	recs, more, _, err = c.listPage(ctx, prefix, after, limit, opts...)
	return recs, more, err
}

// List iterates over every record under prefix, in key order, a page at a
// time. Each page is a linearizable read of its own: a key written while the
// iteration runs may or may not be seen. Iteration stops at the first error,
// which it yields.
//
//	for rec, err := range c.List(ctx, "rooms/") {
//		if err != nil { return err }
//		...
//	}
func (c *Client) List(ctx context.Context, prefix string, opts ...ReadOption) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		after := ""
		for {
			recs, more, err := c.ListPage(ctx, prefix, after, listPageSize, opts...)
			if err != nil {
				yield(Record{}, err)
				return
			}
			for _, r := range recs {
				if !yield(r, nil) {
					return
				}
			}
			if !more || len(recs) == 0 {
				return
			}
			after = recs[len(recs)-1].Key
		}
	}
}

// listPage is ListPage that also returns the answering member's applied
// index, the point from which a watch continues the read.
func (c *Client) listPage(ctx context.Context, prefix, after string, limit int, opts ...ReadOption) (recs []Record, more bool, applied uint64, err error) {
	req := &cxkvpb.ListRequest{Prefix: prefix, After: after, Limit: uint32(limit), Serializable: readOpts(opts).serializable}
	var resp *cxkvpb.ListResponse
	err = c.do(ctx, nil, func(ctx context.Context, kv cxkvrpc.KVClient) (h *cxkvpb.Header, err error) {
		resp, err = kv.List(ctx, req)
		return resp.GetHeader(), err
	})
	if err != nil {
		return nil, false, 0, err
	}
	for _, r := range resp.GetRecords() {
		recs = append(recs, fromProto(r))
	}
	return recs, resp.GetMore(), resp.GetHeader().GetAppliedIndex(), nil
}
