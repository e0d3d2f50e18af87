package client

import (
	"context"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
)

// Compare is one condition of a transaction, evaluated against the state
// before the transaction.
type Compare struct{ pb *cxkvpb.Compare }

// IndexIs holds when key exists and its index is index.
func IndexIs(key string, index uint64) Compare {
	return Compare{&cxkvpb.Compare{Key: key, Op: cxkvpb.Compare_INDEX_EQUAL, Index: index}}
}

// Absent holds when key does not exist.
func Absent(key string) Compare {
	return Compare{&cxkvpb.Compare{Key: key, Op: cxkvpb.Compare_ABSENT}}
}

// ValueIs holds when key exists and its value is value.
func ValueIs(key string, value []byte) Compare {
	return Compare{&cxkvpb.Compare{Key: key, Op: cxkvpb.Compare_VALUE_EQUAL, Value: value}}
}

// Op is one operation of a transaction. Operations run in order, each
// seeing the writes of those before it.
type Op struct{ pb *cxkvpb.TxnOp }

// PutOp writes key; a ttl of 0 means none.
func PutOp(key string, value []byte, ttl time.Duration) Op {
	return Op{&cxkvpb.TxnOp{Type: cxkvpb.TxnOp_PUT, Key: key, Value: value, TtlMs: ttl.Milliseconds()}}
}

// DeleteOp deletes key; deleting an absent key does nothing.
func DeleteOp(key string) Op {
	return Op{&cxkvpb.TxnOp{Type: cxkvpb.TxnOp_DELETE, Key: key}}
}

// GetOp reads key inside the transaction.
func GetOp(key string) Op {
	return Op{&cxkvpb.TxnOp{Type: cxkvpb.TxnOp_GET, Key: key}}
}

// TxnResult is the outcome of a transaction. If Successful, every operation
// applied at Index and Results holds, per operation, the key after it (a put
// or get) or the key it removed (a delete; Index 0 if it was absent).
// Otherwise nothing changed and FailedCompare is the position of the first
// compare that did not hold. Compared holds, per compare, the key's state
// the compares were evaluated against, in both cases.
type TxnResult struct {
	Successful    bool
	FailedCompare int
	Compared      []Record
	Results       []Record
	Index         uint64
}

// Txn applies ops if every compare holds, as one log entry: all or nothing.
// Every key it writes gets the same index.
func (c *Client) Txn(ctx context.Context, compares []Compare, ops []Op) (TxnResult, error) {
	req := &cxkvpb.TxnRequest{}
	for _, cmp := range compares {
		req.Compares = append(req.Compares, cmp.pb)
	}
	for _, op := range ops {
		req.Ops = append(req.Ops, op.pb)
	}
	var resp *cxkvpb.TxnResponse
	err := c.write(ctx, func(id *cxkvpb.WriteID) { req.WriteId = id }, func(ctx context.Context, kv cxkvrpc.KVClient) (h *cxkvpb.Header, err error) {
		resp, err = kv.Txn(ctx, req)
		return resp.GetHeader(), err
	})
	if err != nil {
		return TxnResult{}, err
	}
	// The cluster names every key in its answer, absent ones too (index 0),
	// and reports FailedCompare -1 on success.
	out := TxnResult{Successful: resp.GetSuccessful(), FailedCompare: int(resp.GetFailedCompare()), Index: resp.GetIndex()}
	for _, r := range resp.GetCompared() {
		out.Compared = append(out.Compared, fromProto(r))
	}
	for _, r := range resp.GetResults() {
		out.Results = append(out.Results, fromProto(r.GetRecord()))
	}
	return out, nil
}
