package client

import (
	"context"
	"iter"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
)

// listPageSize is the page the List iterator asks for.
var listPageSize = 1000

// Page is one page of a List.
type Page struct {
	Records []Record
	// More says whether another page follows.
	More bool
	// Applied is the answering member's applied index when it answered:
	// the page reflects at least every write up to it, and a Watch from
	// Applied continues the read without a gap.
	Applied uint64
}

// ListPage reads up to limit records whose keys start with prefix and sort
// after after (exclusive), in key order. limit 0 means the server's default
// (100).
func (c *Client) ListPage(ctx context.Context, prefix, after string, limit int, opts ...ReadOption) (Page, error) {
	req := &cxkvpb.ListRequest{Prefix: prefix, After: after, Limit: uint32(limit), Serializable: readOpts(opts).serializable}
	var resp *cxkvpb.ListResponse
	err := c.do(ctx, nil, func(ctx context.Context, kv cxkvrpc.KVClient) (h *cxkvpb.Header, err error) {
		resp, err = kv.List(ctx, req)
		return resp.GetHeader(), err
	})
	if err != nil {
		return Page{}, err
	}
	p := Page{More: resp.GetMore(), Applied: resp.GetHeader().GetAppliedIndex()}
	for _, r := range resp.GetRecords() {
		p.Records = append(p.Records, fromProto(r))
	}
	return p, nil
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
			page, err := c.ListPage(ctx, prefix, after, listPageSize, opts...)
			if err != nil {
				yield(Record{}, err)
				return
			}
			for _, r := range page.Records {
				if !yield(r, nil) {
					return
				}
			}
			if !page.More || len(page.Records) == 0 {
				return
			}
			after = page.Records[len(page.Records)-1].Key
		}
	}
}
