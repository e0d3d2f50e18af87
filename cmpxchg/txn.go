package cmpxchg

import (
	"bytes"

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
func applyTxn(b *kv.Batch, index uint64, stamp int64, t *cxkvpb.TxnRequest) (*cxkvpb.CommandResult, error) {
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
	var writes []txnWrite
	if resp.FailedCompare < 0 {
		resp.Successful = true
		// Later ops see earlier ones' writes through this overlay; it is
		// only looked up, never iterated: writes happen in the order of ops.
		type seen struct {
			rec   kv.Record
			found bool
		}
		overlay := map[string]seen{}
		for _, op := range t.GetOps() {
			s, ok := overlay[op.GetKey()]
			if !ok {
				var err error
				if s.rec, s.found, err = b.Get(op.GetKey()); err != nil {
					return nil, err
				}
			}
			cur, found := s.rec, s.found
			res := &cxkvpb.TxnOpResult{Found: found, Record: RecordToProto(cur)}
			switch op.GetType() {
			case cxkvpb.TxnOp_PUT:
				r := newRecord(cur, found, op.GetKey(), op.GetValue(), op.GetTtlMs(), index, stamp)
				writes = append(writes, txnWrite{rec: r, put: true})
				overlay[r.Key] = seen{r, true}
				res.Record = RecordToProto(r)
			case cxkvpb.TxnOp_DELETE:
				if found {
					writes = append(writes, txnWrite{rec: cur})
					overlay[cur.Key] = seen{kv.Record{Key: cur.Key}, false}
				}
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
	for _, w := range writes {
		var err error
		if w.put {
			err = put(b, w.rec)
		} else {
			err = remove(b, w.rec, index, kv.EventDelete)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// txnWrite is one write of a transaction: a put of rec, or (put false) the
// deletion of rec.
type txnWrite struct {
	rec kv.Record
	put bool
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
