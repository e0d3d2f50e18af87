package cmpxchg

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/kv"
	"google.golang.org/protobuf/proto"
)

// MaxAnswerBytes bounds what one answer carries: a Txn's result (and so the
// result the exactly-once table keeps for a retry), a List page, a Watch
// batch. The rest of cxkvpb.MaxMessageBytes is room for the header and the
// framing of events, which differ from the Txn results they mirror by a few
// bytes each (at most MaxTxnOpsLimit of them).
const MaxAnswerBytes = cxkvpb.MaxMessageBytes - 1<<20

// applyTxn evaluates every compare against the state before the transaction;
// if all hold, the operations run in order, each seeing the writes of those
// before it, and every key written gets the entry's index. If one fails,
// nothing is written.
//
// The answer is built before anything is written: a transaction whose answer
// would pass MaxAnswerBytes (a few gets of large values are enough) is
// refused whole, the same way on every member, since the answer is a
// function of the state and the command. The events it leaves are bounded
// with it: each carries a record its answer carries too.
func applyTxn(b *kv.Batch, index uint64, stamp int64, t *cxkvpb.TxnRequest, who actor) (*cxkvpb.CommandResult, error) {
	resp := &cxkvpb.TxnResponse{FailedCompare: -1, Index: index}
	// Compares read through the plan, before it holds any write, so they see
	// the state before the transaction, and an op on a compared key (a
	// lock's create and its release both compare the key they write) reads
	// it from the plan instead of the store again.
	w := newPlan(b, index, who)
	for i, c := range t.GetCompares() {
		cur, found, err := w.get(c.GetKey())
		if err != nil {
			return nil, err
		}
		resp.Compared = append(resp.Compared, RecordToProto(cur))
		if resp.FailedCompare < 0 && !holds(c, cur, found) {
			resp.FailedCompare = int32(i)
		}
	}
	if resp.FailedCompare < 0 {
		resp.Successful = true
		for i, op := range t.GetOps() {
			res, err := w.op(op, stamp)
			if err != nil {
				var e *Error
				if errors.As(err, &e) {
					return refused(&Error{Code: e.Code, Message: fmt.Sprintf("op %d: %s", i, e.Message)}), nil
				}
				return nil, err
			}
			resp.Results = append(resp.Results, res)
		}
	}
	out := &cxkvpb.CommandResult{Result: &cxkvpb.CommandResult_Txn{Txn: resp}}
	if n := proto.Size(out); n > MaxAnswerBytes {
		return refused(invalid(
			"transaction's answer would be %d bytes (the values its compares and ops return); the limit is %d: nothing was applied; read large values in separate requests",
			n, MaxAnswerBytes)), nil
	}
	// Only a session's end adds events beyond the ops' own, which the
	// answer already bounds.
	if w.events > kv.MaxEventsPerIndex || w.eventBytes > MaxAnswerBytes {
		return refused(invalid(
			"transaction would leave %d events of %d bytes at one index, with the keys of the sessions it ends; the limits are %d events and %d bytes: nothing was applied; end those sessions in separate requests",
			w.events, w.eventBytes, kv.MaxEventsPerIndex, MaxAnswerBytes)), nil
	}
	return out, w.commit()
}

// op plans one op of a transaction and returns its result.
func (p *plan) op(op *cxkvpb.TxnOp, stamp int64) (*cxkvpb.TxnOpResult, error) {
	if op.GetType() == cxkvpb.TxnOp_HEAD {
		r, found, err := p.head(op.GetKey())
		return &cxkvpb.TxnOpResult{Found: found, Record: RecordToProto(r)}, err
	}
	cur, found, err := p.get(op.GetKey())
	if err != nil {
		return nil, err
	}
	res := &cxkvpb.TxnOpResult{Found: found, Record: RecordToProto(cur)}
	switch op.GetType() {
	case cxkvpb.TxnOp_PUT:
		r := newRecord(cur, found, op.GetKey(), op.GetValue(), op.GetTtlMs(), op.GetSession(), p.index, stamp)
		if err := p.put(cur, found, r); err != nil {
			return nil, err
		}
		res.Record = RecordToProto(r)
	case cxkvpb.TxnOp_DELETE:
		if found {
			if err := p.delete(cur); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
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
