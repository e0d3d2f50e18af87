package client

import (
	"sync"

	"github.com/cxkv/cxkv/api/cxkvpb"
)

// writeSeq numbers this client's writes. The cluster keeps the result of
// every seq above acked_seq, so acked_seq must stay below every seq still in
// flight: it is the lowest in-flight seq minus one.
type writeSeq struct {
	mu       sync.Mutex
	client   uint64
	next     uint64
	inflight map[uint64]struct{}
}

func (w *writeSeq) init() {
	w.client = newClientID()
	w.inflight = map[uint64]struct{}{}
}

// begin names a new write; end must follow when its outcome is settled.
func (w *writeSeq) begin() *cxkvpb.WriteID {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next++
	seq := w.next
	acked := seq - 1
	for s := range w.inflight {
		acked = min(acked, s-1)
	}
	w.inflight[seq] = struct{}{}
	return &cxkvpb.WriteID{ClientId: w.client, Seq: seq, AckedSeq: acked}
}

func (w *writeSeq) end(id *cxkvpb.WriteID) {
	w.mu.Lock()
	delete(w.inflight, id.GetSeq())
	w.mu.Unlock()
}
