package cmpxchg

import (
	"bytes"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/kv"
)

// applyTxn evaluates every compare against the state before the transaction;
// if all hold, the operations run in order, each seeing the writes of those
// before it, and every key written gets the entry's index. If one fails,
// nothing is written.
func applyTxn(b *kv.Batch, index uint64, stamp int64, t *cxkvpb.TxnRequest) (*cxkvpb.TxnResponse, error) {
	resp := &cxkvpb.TxnResponse{FailedCompare: -1, Index: index}
	for i, c := range t.GetCompares() {
		cur, found, err := b.Get(c.GetKey())
		if err != nil {
			return nil, err
		}
		resp.Compared = append(resp.Compared, RecordToProto(cur))
		if resp.FailedCompare < 0 && !holds(c, cur, found) {
			resp.FailedCompare = int32(i)
		}
	}
	if resp.FailedCompare >= 0 {
		return resp, nil
	}
	resp.Successful = true
	for _, op := range t.GetOps() {
		cur, found, err := b.Get(op.GetKey())
		if err != nil {
			return nil, err
		}
		res := &cxkvpb.TxnOpResult{Found: found, Record: RecordToProto(cur)}
		switch op.GetType() {
		case cxkvpb.TxnOp_PUT:
			r := newRecord(cur, found, op.GetKey(), op.GetValue(), op.GetTtlMs(), index, stamp)
			if err := put(b, r); err != nil {
				return nil, err
			}
			res.Record = RecordToProto(r)
		case cxkvpb.TxnOp_DELETE:
			if found {
				if err := remove(b, cur, index, kv.EventDelete); err != nil {
					return nil, err
				}
			}
		}
		resp.Results = append(resp.Results, res)
	}
	return resp, nil
}

func holds(c *cxkvpb.Compare, cur kv.Record, found bool) bool {
	switch c.GetOp() {
	case cxkvpb.Compare_INDEX_EQUAL:
		return found && c.GetIndex() == cur.Index
	case cxkvpb.Compare_ABSENT:
		return !found
	case cxkvpb.Compare_VALUE_EQUAL:
		return found && bytes.Equal(c.GetValue(), cur.Value)
	}
	return false
}
