package cmpxchg_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/kv"
	"google.golang.org/protobuf/proto"
)

// headModel is the queues' state written the plain way: each live key's
// create index and the session it is attached to.
type headModel struct {
	create  map[string]uint64
	session map[string]string
}

// head is what HEAD prefix must answer: the lowest create index under
// prefix, the lower key among equals.
func (m headModel) head(prefix string) (string, bool) {
	best, found := "", false
	for k, ci := range m.create {
		if strings.HasPrefix(k, prefix) && (!found || ci < m.create[best] || (ci == m.create[best] && k < best)) {
			best, found = k, true
		}
	}
	return best, found
}

func (m headModel) under(prefix string) []string {
	var keys []string
	for k := range m.create {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// play applies t at index as the contract says, returning the state after
// it and each HEAD op's answer ("" for none); ok is false if t wrote
// nothing (a compare failed, or an op was refused).
func (m headModel) play(t *cxkvpb.TxnRequest, index uint64) (headModel, map[int]string, bool) {
	for _, c := range t.GetCompares() {
		if _, live := m.create[c.GetKey()]; live {
			return m, nil, false
		}
	}
	next := headModel{maps.Clone(m.create), maps.Clone(m.session)}
	heads := map[int]string{}
	for i, op := range t.GetOps() {
		k := op.GetKey()
		switch op.GetType() {
		case cxkvpb.TxnOp_PUT:
			if s := op.GetSession(); s != "" {
				if _, live := next.create[cxkvpb.SessionKey(s)]; !live {
					return m, nil, false // refused: no such session
				}
			}
			if _, live := next.create[k]; !live {
				next.create[k] = index
			}
			next.session[k] = op.GetSession()
		case cxkvpb.TxnOp_DELETE:
			if s, ok := strings.CutPrefix(k, cxkvpb.SessionKeyPrefix); ok {
				for a, as := range next.session {
					if as == s {
						delete(next.create, a)
						delete(next.session, a)
					}
				}
			}
			delete(next.create, k)
			delete(next.session, k)
		case cxkvpb.TxnOp_HEAD:
			heads[i], _ = next.head(k)
		}
	}
	return next, heads, true
}

// headMember is one member: its store keeps floors of the prefixes its
// scans saw (kv/floors.go), left in a state of its own.
type headMember struct {
	name    string
	fs      vfs.FS
	store   *kv.Store
	sm      *cmpxchg.StateMachine
	b       *kv.Batch
	restart bool // reopens its store (no floors) every few batches
	lists   bool // answers waiters' Lists between batches (readers' raises)
}

func (m *headMember) open(t *testing.T) {
	t.Helper()
	s, err := kv.Open("db", kv.Options{FS: m.fs})
	if err != nil {
		t.Fatal(err)
	}
	m.store = s
}

// A lock's queue is read by HEAD in Apply, on every member, from the
// prefix's floor up. The members here hold different floors for the same
// state: one raises them only by its own Apply, one restarts every few
// batches (no floors), one also answers waiters' Lists between batches.
// Through entries created below the floors (a process whose clock is
// behind), a release and the next HEAD in one Txn, puts thrown away after a
// HEAD ran (a failed compare, a refused op), several commands per batch,
// nested and overlapping prefixes, a HEAD whose prefix is a live key, and
// sessions closed with their entries, every member must answer every
// command alike (Apply is a function of state and entry) and every HEAD as
// the model does.
func TestHeadAnswersAlikeWhateverTheFloors(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runHeadMembers(t, seed) })
	}
}

func runHeadMembers(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 42))
	members := []*headMember{{name: "apply-only"}, {name: "restarting", restart: true}, {name: "listing", lists: true}}
	for _, m := range members {
		m.fs, m.sm = vfs.NewMem(), cmpxchg.New(cmpxchg.DefaultLimits())
		m.open(t)
	}
	defer func() {
		for _, m := range members {
			m.store.Close()
		}
	}()

	const locks = 3
	sessions := []string{"s0", "s1", "s2"}
	queue := func(l int) string { return fmt.Sprintf("lk/%d/.lock/", l) }
	// Prefixes a HEAD may ask besides a queue: every queue, queue 1 and
	// the ones whose name starts with 1.
	wide := []string{"lk/", "lk/1"}
	const epoch = int64(1_700_000_000_000_000_000)
	clock := epoch
	entry := func(l int) string {
		clock += 1000 + r.Int64N(1000)
		created := clock
		if r.IntN(4) == 0 {
			created = epoch + r.Int64N(clock-epoch) // a clock behind: below the floor
		}
		return fmt.Sprintf("%s%016x%016x", queue(l), uint64(created), r.Uint64())
	}
	put := func(k, session string) *cxkvpb.TxnOp {
		return &cxkvpb.TxnOp{Type: cxkvpb.TxnOp_PUT, Key: k, Value: []byte("owner"), Session: session}
	}
	del := func(k string) *cxkvpb.TxnOp { return &cxkvpb.TxnOp{Type: cxkvpb.TxnOp_DELETE, Key: k} }
	head := func(p string) *cxkvpb.TxnOp { return &cxkvpb.TxnOp{Type: cxkvpb.TxnOp_HEAD, Key: p} }
	absent := func(k string) *cxkvpb.Compare { return &cxkvpb.Compare{Key: k, Op: cxkvpb.Compare_ABSENT} }
	open := func(s string) *cxkvpb.TxnOp {
		return &cxkvpb.TxnOp{Type: cxkvpb.TxnOp_PUT, Key: cxkvpb.SessionKey(s), Value: []byte("{}"), TtlMs: 3_600_000}
	}

	model := headModel{create: map[string]uint64{}, session: map[string]string{}}
	var txns []*cxkvpb.TxnRequest
	for _, s := range sessions {
		txns = append(txns, &cxkvpb.TxnRequest{Ops: []*cxkvpb.TxnOp{open(s)}})
	}
	index := uint64(0)
	heads, misses := 0, 0
	for batch := range 150 {
		for _, m := range members {
			m.b = m.store.NewBatch()
		}
		for range 1 + r.IntN(5) {
			l := r.IntN(locks)
			q := queue(l)
			var txn *cxkvpb.TxnRequest
			switch op := r.IntN(12); {
			case len(txns) > 0: // a session opened again
				txn, txns = txns[0], txns[1:]
			case op < 5: // a waiter enqueues and asks the head
				k, s := entry(l), sessions[r.IntN(len(sessions))]
				txn = &cxkvpb.TxnRequest{Compares: []*cxkvpb.Compare{absent(k), absent(fmt.Sprintf("lk/%d", l))}, Ops: []*cxkvpb.TxnOp{put(k, s)}}
				if r.IntN(3) == 0 { // and a second entry, wherever it sorts
					k2 := entry(l)
					txn.Compares = append(txn.Compares, absent(k2))
					txn.Ops = append(txn.Ops, put(k2, s))
				}
				txn.Ops = append(txn.Ops, head(q))
			case op < 7: // the holder releases; who holds next?
				txn = &cxkvpb.TxnRequest{Ops: []*cxkvpb.TxnOp{head(q)}}
				if h, ok := model.head(q); ok {
					txn.Ops = []*cxkvpb.TxnOp{del(h), head(q), head(wide[r.IntN(len(wide))])}
				}
			case op < 8: // a waiter gives up
				txn = &cxkvpb.TxnRequest{Ops: []*cxkvpb.TxnOp{head(q)}}
				if keys := model.under(q); len(keys) > 0 {
					txn.Ops = []*cxkvpb.TxnOp{del(keys[r.IntN(len(keys))])}
				}
			case op < 10: // a HEAD ran, then nothing is written
				low := fmt.Sprintf("%s%016x", q, uint64(epoch+r.Int64N(clock-epoch+1)))
				if keys := model.under(q); len(keys) > 0 && r.IntN(2) == 0 {
					// A failed compare, after a HEAD of another batch's Txn.
					txn = &cxkvpb.TxnRequest{Compares: []*cxkvpb.Compare{absent(keys[0])}, Ops: []*cxkvpb.TxnOp{put(low, ""), head(q)}}
				} else {
					// A HEAD, then a put to no session: refused whole.
					txn = &cxkvpb.TxnRequest{Ops: []*cxkvpb.TxnOp{head(q), put(low, "none"), head(q)}}
				}
			case op < 11: // a HEAD whose prefix is a live key, or a wide one
				txn = &cxkvpb.TxnRequest{Ops: []*cxkvpb.TxnOp{head(wide[r.IntN(len(wide))])}}
				if keys := model.under("lk/"); len(keys) > 0 {
					txn.Ops = append(txn.Ops, head(keys[r.IntN(len(keys))]))
				}
			default: // a monitor's session closes with its entries
				s := sessions[r.IntN(len(sessions))]
				txn = &cxkvpb.TxnRequest{Ops: []*cxkvpb.TxnOp{del(cxkvpb.SessionKey(s)), head(q), head("lk/")}}
				txns = append(txns, &cxkvpb.TxnRequest{Ops: []*cxkvpb.TxnOp{open(s)}})
			}
			index++
			next, want, applied := model.play(txn, index)
			cmd := &cxkvpb.Command{Op: &cxkvpb.Command_Txn{Txn: txn}, StampUnixMs: 1_700_000_000_000 + int64(index)}
			var first *cxkvpb.CommandResult
			for _, m := range members {
				res, err := m.sm.Apply(m.b, index, proto.Clone(cmd).(*cxkvpb.Command))
				if err != nil {
					t.Fatalf("batch %d, index %d, %s: %v", batch, index, m.name, err)
				}
				if first == nil {
					first = res
				} else if !proto.Equal(first, res) {
					t.Fatalf("batch %d, index %d: %s answered\n%v\nbut %s answered\n%v", batch, index, members[0].name, first, m.name, res)
				}
			}
			if got := first.GetTxn().GetSuccessful() && first.GetError() == nil; got != applied {
				t.Fatalf("index %d: applied = %v, the model says %v: %v", index, got, applied, first)
			}
			for i, k := range want {
				res := first.GetTxn().GetResults()[i]
				if got := res.GetRecord().GetKey(); res.GetFound() != (k != "") || res.GetFound() && got != k {
					t.Fatalf("index %d: HEAD %q answered %q (found %v), want %q\n%v", index, txn.GetOps()[i].GetKey(), got, res.GetFound(), k, txn)
				}
				heads++
				if k == "" {
					misses++
				}
			}
			model = next
		}
		for _, m := range members {
			if err := m.b.Commit(false); err != nil {
				t.Fatal(err)
			}
			m.b.Close()
			switch {
			case m.restart && batch%7 == 6:
				m.store.Close()
				m.open(t)
			case m.lists:
				for _, p := range append([]string{queue(r.IntN(locks))}, wide...) {
					recs, _, err := m.store.List(p, "", 1+r.IntN(3), 1<<20)
					if err != nil {
						t.Fatal(err)
					}
					keys := model.under(p)
					if len(recs) > 0 && (len(keys) == 0 || recs[0].Key != keys[0]) {
						t.Fatalf("List(%q) begins at %q; live: %v", p, recs[0].Key, keys)
					}
					if len(recs) == 0 && len(keys) > 0 {
						t.Fatalf("List(%q) is empty; live: %v", p, keys)
					}
				}
			}
		}
	}
	if heads < 200 || misses == heads {
		t.Fatalf("only %d HEADs checked (%d found nothing)", heads, misses)
	}
}
