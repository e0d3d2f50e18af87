package client

import (
	"context"
	"fmt"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
)

// ReadOption adjusts a read.
type ReadOption func(*readOptions)

type readOptions struct{ serializable bool }

// Serializable reads the answering member's local state without confirming
// it with the leader: faster, and possibly stale.
func Serializable() ReadOption { return func(o *readOptions) { o.serializable = true } }

func readOpts(opts []ReadOption) readOptions {
	var o readOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Get reads key. A missing key is not an error: its Record has Index 0.
func (c *Client) Get(ctx context.Context, key string, opts ...ReadOption) (Record, error) {
	req := &cxkvpb.GetRequest{Key: key, Serializable: readOpts(opts).serializable}
	var resp *cxkvpb.GetResponse
	err := c.do(ctx, nil, func(ctx context.Context, kv cxkvrpc.KVClient) (h *cxkvpb.Header, err error) {
		resp, err = kv.Get(ctx, req)
		return resp.GetHeader(), err
	})
	if err != nil {
		return Record{}, err
	}
	if !resp.GetFound() {
		return Record{Key: key}, nil
	}
	return fromProto(resp.GetRecord()), nil
}

// PutResult is the outcome of a compare-exchange write. On success Record is
// the key as written (its new Index is the fencing token); on a failed
// compare it is the key's current state (Index 0 if absent), so a retry loop
// needs no extra read.
type PutResult struct {
	Successful bool
	Record     Record
}

// PutOption adjusts a Put.
type PutOption func(*cxkvpb.PutRequest)

// WithTTL makes the key expire ttl after this write unless it is written
// again. Millisecond resolution.
func WithTTL(ttl time.Duration) PutOption {
	return func(r *cxkvpb.PutRequest) { r.TtlMs = ttl.Milliseconds() }
}

// Put writes value to key if the key's index is expect; expect 0 means
// "only if absent". A failed compare is not an error.
func (c *Client) Put(ctx context.Context, key string, value []byte, expect uint64, opts ...PutOption) (PutResult, error) {
	req := &cxkvpb.PutRequest{Key: key, Value: value, ExpectIndex: expect}
	for _, f := range opts {
		f(req)
	}
	if req.TtlMs < 0 {
		return PutResult{}, fmt.Errorf("cxkv: put %q: negative TTL", key)
	}
	var resp *cxkvpb.PutResponse
	err := c.write(ctx, func(id *cxkvpb.WriteID) { req.WriteId = id }, func(ctx context.Context, kv cxkvrpc.KVClient) (h *cxkvpb.Header, err error) {
		resp, err = kv.Put(ctx, req)
		return resp.GetHeader(), err
	})
	if err != nil {
		return PutResult{}, err
	}
	return PutResult{Successful: resp.GetSuccessful(), Record: fromProto(resp.GetRecord())}, nil
}

// DeleteResult is the outcome of a compare-exchange delete. Record is what
// was there (on success) or what is there (on a failed compare; Index 0 if
// absent). Index is the log index of a successful delete.
type DeleteResult struct {
	Successful bool
	Record     Record
	Index      uint64
}

// DeleteOption adjusts a Delete.
type DeleteOption func(*cxkvpb.DeleteRequest)

// AsForceRelease marks the delete as an operator's force-release of
// someone else's lock: with auth enabled it needs admin on the key, where
// an ordinary delete needs write. The lock recipe's ForceRelease sends it.
func AsForceRelease() DeleteOption {
	return func(r *cxkvpb.DeleteRequest) { r.ForceRelease = true }
}

// Delete removes key if its index is expect. A failed compare (including an
// absent key) is not an error.
func (c *Client) Delete(ctx context.Context, key string, expect uint64, opts ...DeleteOption) (DeleteResult, error) {
	req := &cxkvpb.DeleteRequest{Key: key, ExpectIndex: expect}
	for _, f := range opts {
		f(req)
	}
	var resp *cxkvpb.DeleteResponse
	err := c.write(ctx, func(id *cxkvpb.WriteID) { req.WriteId = id }, func(ctx context.Context, kv cxkvrpc.KVClient) (h *cxkvpb.Header, err error) {
		resp, err = kv.Delete(ctx, req)
		return resp.GetHeader(), err
	})
	if err != nil {
		return DeleteResult{}, err
	}
	return DeleteResult{Successful: resp.GetSuccessful(), Record: fromProto(resp.GetRecord()), Index: resp.GetIndex()}, nil
}

// Status describes one member.
type Status struct {
	Endpoint    string
	MemberID    uint64
	LeaderID    uint64
	Term        uint64
	Role        string
	Applied     uint64
	Commit      uint64
	FirstIndex  uint64
	LastIndex   uint64
	ClusterID   uint64
	Version     string
	WatchFrom   uint64 // the oldest index a Watch can start from
	DBSize      uint64 // bytes the member's database occupies on disk
	Members     map[uint64]string
	Unreachable error // set when the member did not answer
}

// Status asks every endpoint for its state, in the order of the endpoints.
// A member that does not answer has Unreachable set; the call fails only if
// none answers.
func (c *Client) Status(ctx context.Context) ([]Status, error) {
	out := make([]Status, len(c.endpoints))
	answered := 0
	for i, ep := range c.endpoints {
		actx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
		resp, err := ep.kv.Status(actx, &cxkvpb.StatusRequest{})
		cancel()
		out[i] = Status{Endpoint: ep.addr}
		if err != nil {
			out[i].Unreachable = err
			continue
		}
		answered++
		h := resp.GetHeader()
		c.observe(ep, h)
		out[i] = Status{
			Endpoint: ep.addr, MemberID: h.GetMemberId(), LeaderID: h.GetLeaderId(), Term: h.GetTerm(),
			Role: resp.GetRole(), Applied: h.GetAppliedIndex(), Commit: resp.GetCommitIndex(),
			FirstIndex: resp.GetFirstIndex(), LastIndex: resp.GetLastIndex(), ClusterID: resp.GetClusterId(),
			Version: resp.GetVersion(), WatchFrom: resp.GetWatchFromIndex(), DBSize: resp.GetDbSizeBytes(), Members: map[uint64]string{},
		}
		for _, m := range resp.GetMembers() {
			out[i].Members[m.GetId()] = m.GetAddr()
		}
	}
	if answered == 0 {
		return out, fmt.Errorf("%w: %v", errNoEndpoint, out[0].Unreachable)
	}
	return out, nil
}
