package workload

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/cxkv/cxkv/client"
)

// history records key-value operations for porcupine.
type history struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	// every write that may have applied, by its unique value: for the watch
	// check (puts only; deletes are matched by key and index)
	acked    map[string]uint64 // value -> index of an acknowledged put
	unknown  map[string]bool   // value of a put whose outcome is unknown
	delAck   map[[2]any]bool   // {key, index} of an acknowledged delete
	delUnk   map[string]int    // key -> deletes of unknown outcome
	lastAck  map[string]rec    // key -> the acknowledged write with the highest index
	keys     map[string]bool   // every key written
	clients  int
	unknowns int
}

func newHistory(start time.Time) *history {
	return &history{start: start, acked: map[string]uint64{}, unknown: map[string]bool{},
		delAck: map[[2]any]bool{}, delUnk: map[string]int{}, lastAck: map[string]rec{}, keys: map[string]bool{}}
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) newClient() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients++
	return h.clients - 1
}

func keyName(group string, k int) string { return fmt.Sprintf("%s/k%d", group, k) }

// add records one finished operation and what it tells the watch check.
func (h *history) add(clientID int, in kvInput, call int64, out kvOutput) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ret := h.now()
	if out.Unknown {
		ret = math.MaxInt64
		h.unknowns++
	}
	h.ops = append(h.ops, porcupine.Operation{ClientId: clientID, Input: in, Call: call, Output: out, Return: ret})
	ackPut := func(key, value string, index uint64) {
		h.keys[key] = true
		if out.Unknown {
			h.unknown[value] = true
			return
		}
		h.acked[value] = index
		if index >= h.lastAck[key].Index { // a later op of one txn wins
			h.lastAck[key] = rec{Value: value, Index: index}
		}
	}
	ackDel := func(key string, index uint64) {
		if out.Unknown {
			h.delUnk[key]++
			return
		}
		h.delAck[[2]any{key, index}] = true
		if index >= h.lastAck[key].Index { // a later op of one txn wins
			h.lastAck[key] = rec{Index: index}
		}
	}
	switch in.Kind {
	case opPut:
		if out.Unknown || out.OK {
			ackPut(keyName(in.Group, in.Key), in.Value, out.Rec.Index)
		}
	case opDelete:
		if out.Unknown || out.OK {
			ackDel(keyName(in.Group, in.Key), out.Entry)
		}
	case opTxn:
		if !out.Unknown && !out.OK {
			return
		}
		for j, op := range in.Ops {
			key := keyName(in.Group, op.Key)
			switch op.Kind {
			case opPut:
				ackPut(key, op.Value, out.Entry)
			case opDelete:
				if out.Unknown || out.Results[j].Index != 0 {
					ackDel(key, out.Entry)
				}
			}
		}
	}
}

// kvWorker runs random operations on the groups of the current epoch. Each
// worker is one SDK client (its own write ids), as a separate process would
// be.
type kvWorker struct {
	id      int
	cl      *client.Client
	h       *history
	r       *rand.Rand
	epoch   func() int
	groups  int
	timeout time.Duration
	seq     int
	seen    map[string]rec // what this worker last saw of each key
}

func (w *kvWorker) run(ctx context.Context) {
	cid := w.h.newClient()
	for ctx.Err() == nil {
		group := fmt.Sprintf("kv/e%04d/g%d", w.epoch(), w.r.IntN(w.groups))
		if w.step(ctx, cid, group) {
			cid = w.h.newClient() // an open operation occupies its client id forever
		}
	}
}

func (w *kvWorker) value() string {
	w.seq++
	return fmt.Sprintf("w%d-%d", w.id, w.seq)
}

// expect picks the index a write compares against: mostly what this worker
// last saw (often stale under contention), sometimes absent or wrong.
func (w *kvWorker) expect(key string) uint64 {
	seen := w.seen[key].Index
	switch n := w.r.IntN(10); {
	case n < 7:
		return seen
	case n < 9:
		return 0
	default:
		return seen + uint64(1+w.r.IntN(3))
	}
}

func toRec(r client.Record) rec { return rec{Value: string(r.Value), Index: r.Index} }

// step runs one operation; it reports whether its outcome is unknown.
func (w *kvWorker) step(ctx context.Context, cid int, group string) bool {
	octx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	in := kvInput{Group: group, Key: w.r.IntN(groupKeys)}
	key := keyName(group, in.Key)
	var out kvOutput
	var err error
	call := w.h.now()
	switch n := w.r.IntN(20); {
	case n < 6:
		in.Kind = opGet
		var r client.Record
		if r, err = w.cl.Get(octx, key); err == nil {
			out.Rec = toRec(r)
			w.seen[key] = out.Rec
		}
	case n < 12:
		in.Kind, in.Value, in.Expect = opPut, w.value(), w.expect(key)
		var res client.PutResult
		if res, err = w.cl.Put(octx, key, []byte(in.Value), in.Expect); err == nil {
			out.OK, out.Rec = res.Successful, toRec(res.Record)
			w.seen[key] = out.Rec
		}
	case n < 14:
		in.Kind, in.Expect = opDelete, w.expect(key)
		if in.Expect == 0 {
			in.Expect = 1 + uint64(w.r.IntN(3))
		}
		var res client.DeleteResult
		if res, err = w.cl.Delete(octx, key, in.Expect); err == nil {
			out.OK, out.Rec, out.Entry = res.Successful, toRec(res.Record), res.Index
			if res.Successful {
				w.seen[key] = rec{}
			} else {
				w.seen[key] = out.Rec
			}
		}
	default:
		in.Kind = opTxn
		var cmps []client.Compare
		for range 1 + w.r.IntN(2) {
			c := cmpIn{Key: w.r.IntN(groupKeys)}
			k := keyName(group, c.Key)
			seen := w.seen[k]
			switch {
			case seen.Index == 0 || w.r.IntN(4) == 0:
				c.Kind = cmpAbsent
				cmps = append(cmps, client.Absent(k))
			case w.r.IntN(3) == 0:
				c.Kind, c.Value = cmpValue, seen.Value
				cmps = append(cmps, client.ValueIs(k, []byte(seen.Value)))
			default:
				c.Kind, c.Index = cmpIndex, seen.Index
				cmps = append(cmps, client.IndexIs(k, seen.Index))
			}
			in.Cmps = append(in.Cmps, c)
		}
		var ops []client.Op
		for range 1 + w.r.IntN(3) {
			o := txnOpIn{Key: w.r.IntN(groupKeys)}
			k := keyName(group, o.Key)
			switch n := w.r.IntN(6); {
			case n < 3:
				o.Kind, o.Value = opPut, w.value()
				ops = append(ops, client.PutOp(k, []byte(o.Value), 0))
			case n < 4:
				o.Kind = opDelete
				ops = append(ops, client.DeleteOp(k))
			default:
				o.Kind = opGet
				ops = append(ops, client.GetOp(k))
			}
			in.Ops = append(in.Ops, o)
		}
		var res client.TxnResult
		if res, err = w.cl.Txn(octx, cmps, ops); err == nil {
			out.OK, out.Failed, out.Entry = res.Successful, res.FailedCompare, res.Index
			for i, r := range res.Compared {
				out.Compared = append(out.Compared, toRec(r))
				w.seen[keyName(group, in.Cmps[min(i, len(in.Cmps)-1)].Key)] = toRec(r)
			}
			for j, r := range res.Results {
				out.Results = append(out.Results, toRec(r))
				if j < len(in.Ops) && res.Successful {
					k := keyName(group, in.Ops[j].Key)
					if in.Ops[j].Kind == opDelete {
						w.seen[k] = rec{}
					} else {
						w.seen[k] = toRec(r)
					}
				}
			}
		}
	}
	switch {
	case err == nil:
		w.h.add(cid, in, call, out)
		return false
	case in.Kind != opGet && errors.Is(err, client.ErrOutcomeUnknown):
		out.Unknown, out.Err = true, err.Error()
		w.h.add(cid, in, call, out)
		return true
	}
	// A failed read shows nothing; a write that failed otherwise did not
	// apply (the SDK's promise, which the history then checks).
	return false
}
