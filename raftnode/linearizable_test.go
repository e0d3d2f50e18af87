package raftnode_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// The compare-exchange contract as a porcupine model, one key per partition.
//
// A key's state is its value and index (index 0: absent). Indexes come from
// the log, so the model does not predict them: it takes the index a
// successful write returned and checks only that it is larger than every
// index the key has had (floor).
//
// A call that failed (Unavailable, DeadlineExceeded, ...) may or may not
// have taken effect. It is recorded with return time infinity, so porcupine
// may linearize it anywhere after its call, including after every other
// operation, and with output unknown, which the model accepts in every
// state:
//
//   - linearized where its compare holds, the write takes effect. Its index
//     was never returned, so the state is marked pending: the next operation
//     that reports the key's index (a Get, a failed compare, a Delete of it)
//     fixes it, provided it is above the floor;
//   - linearized where its compare fails, it changes nothing;
//   - a write that never took effect is the linearization that places it
//     after everything else, where its effect is observed by nobody.
//
// Together these cover both outcomes with a deterministic model. While the
// state is pending, an unknown write comparing against it is taken as a
// failed compare: expects come only from indexes clients were told, and an
// index anyone was told is no longer pending, so an expect cannot equal a
// pending index. Failed Gets are dropped from the history: a read that
// returned nothing changes nothing and shows nothing.

type cxOp uint8

const (
	opGet cxOp = iota
	opPut
	opDelete
)

type cxInput struct {
	op     cxOp
	key    string
	value  string // put
	expect uint64 // put, delete
}

type cxOutput struct {
	unknown bool   // the call failed: it may or may not have taken effect
	ok      bool   // put, delete: Successful
	value   string // the record returned ("" when absent)
	index   uint64 // its index (0 when absent)
	entry   uint64 // delete: index of the log entry that carried it
	err     string // for the visualization
}

type cxState struct {
	value   string
	index   uint64 // 0: absent (or pending)
	pending bool   // written by a call whose outcome is unknown; index not yet seen
	floor   uint64 // every later write of the key must have a larger index
}

func (s cxState) putHolds(expect uint64) bool { return s.index == expect }
func (s cxState) delHolds(expect uint64) bool { return s.index != 0 && s.index == expect }

// observe checks that (value, index) is the key's state, fixing the index of
// a pending write.
func (s cxState) observe(value string, index uint64) (bool, cxState) {
	if value != s.value {
		return false, s
	}
	if !s.pending {
		return index == s.index, s
	}
	if index <= s.floor {
		return false, s
	}
	return true, cxState{value: value, index: index, floor: index}
}

func cxStep(s cxState, in cxInput, out cxOutput) (bool, cxState) {
	switch in.op {
	case opGet:
		if out.unknown {
			return true, s
		}
		return s.observe(out.value, out.index)
	case opPut:
		if out.unknown {
			if s.pending || !s.putHolds(in.expect) {
				return true, s
			}
			return true, cxState{value: in.value, pending: true, floor: s.floor}
		}
		if !out.ok {
			ok, n := s.observe(out.value, out.index)
			return ok && !n.putHolds(in.expect), n
		}
		cur := s
		if s.pending { // the put compared against the pending index: that is its index
			if in.expect == 0 || in.expect <= s.floor {
				return false, s
			}
			cur = cxState{value: s.value, index: in.expect, floor: in.expect}
		}
		if !cur.putHolds(in.expect) || out.value != in.value || out.index <= cur.floor {
			return false, s
		}
		return true, cxState{value: in.value, index: out.index, floor: out.index}
	case opDelete:
		if out.unknown {
			if s.pending || !s.delHolds(in.expect) {
				return true, s
			}
			return true, cxState{floor: s.floor}
		}
		ok, n := s.observe(out.value, out.index)
		if !ok {
			return false, s
		}
		if !out.ok {
			return !n.delHolds(in.expect), n
		}
		if !n.delHolds(in.expect) || out.entry <= n.floor {
			return false, s
		}
		return true, cxState{floor: out.entry}
	}
	return false, s
}

var cxModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(cxInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return cxState{} },
	Step: func(state, input, output any) (bool, any) {
		return cxStep(state.(cxState), input.(cxInput), output.(cxOutput))
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(cxInput), output.(cxOutput)
		var call string
		switch in.op {
		case opGet:
			call = fmt.Sprintf("get(%s)", in.key)
		case opPut:
			call = fmt.Sprintf("put(%s, %s, expect %d)", in.key, in.value, in.expect)
		case opDelete:
			call = fmt.Sprintf("delete(%s, expect %d)", in.key, in.expect)
		}
		switch {
		case out.unknown:
			return call + " -> unknown: " + out.err
		case in.op == opGet:
			return fmt.Sprintf("%s -> %q@%d", call, out.value, out.index)
		case in.op == opDelete:
			return fmt.Sprintf("%s -> ok=%v %q@%d (entry %d)", call, out.ok, out.value, out.index, out.entry)
		}
		return fmt.Sprintf("%s -> ok=%v %q@%d", call, out.ok, out.value, out.index)
	},
	DescribeState: func(state any) string {
		s := state.(cxState)
		switch {
		case s.pending:
			return fmt.Sprintf("%q@? (floor %d)", s.value, s.floor)
		case s.index == 0:
			return fmt.Sprintf("absent (floor %d)", s.floor)
		}
		return fmt.Sprintf("%q@%d", s.value, s.index)
	},
}

// The model itself, on hand-written histories: it accepts what the contract
// allows and rejects a stale read, a lost update and a reused index.
func TestCompareExchangeModel(t *testing.T) {
	op := func(call, ret int64, in cxInput, out cxOutput) porcupine.Operation {
		return porcupine.Operation{Input: in, Call: call, Output: out, Return: ret}
	}
	const inf = math.MaxInt64
	put := func(k, v string, expect uint64) cxInput { return cxInput{op: opPut, key: k, value: v, expect: expect} }
	get := cxInput{op: opGet, key: "k"}
	del := func(expect uint64) cxInput { return cxInput{op: opDelete, key: "k", expect: expect} }
	cases := []struct {
		name string
		want porcupine.CheckResult
		h    []porcupine.Operation
	}{
		{"put get delete get", porcupine.Ok, []porcupine.Operation{
			op(0, 1, put("k", "a", 0), cxOutput{ok: true, value: "a", index: 5}),
			op(2, 3, get, cxOutput{value: "a", index: 5}),
			op(4, 5, del(5), cxOutput{ok: true, value: "a", index: 5, entry: 6}),
			op(6, 7, get, cxOutput{}),
		}},
		{"stale read", porcupine.Illegal, []porcupine.Operation{
			op(0, 1, put("k", "a", 0), cxOutput{ok: true, value: "a", index: 5}),
			op(2, 3, put("k", "b", 5), cxOutput{ok: true, value: "b", index: 7}),
			op(4, 5, get, cxOutput{value: "a", index: 5}),
		}},
		{"lost update: both puts on index 5 win", porcupine.Illegal, []porcupine.Operation{
			op(0, 1, put("k", "a", 0), cxOutput{ok: true, value: "a", index: 5}),
			op(2, 4, put("k", "b", 5), cxOutput{ok: true, value: "b", index: 7}),
			op(2, 4, put("k", "c", 5), cxOutput{ok: true, value: "c", index: 8}),
		}},
		{"index does not grow", porcupine.Illegal, []porcupine.Operation{
			op(0, 1, put("k", "a", 0), cxOutput{ok: true, value: "a", index: 5}),
			op(2, 3, del(5), cxOutput{ok: true, value: "a", index: 5, entry: 6}),
			op(4, 5, put("k", "b", 0), cxOutput{ok: true, value: "b", index: 6}),
		}},
		{"failed compare shows the current record", porcupine.Ok, []porcupine.Operation{
			op(0, 1, put("k", "a", 0), cxOutput{ok: true, value: "a", index: 5}),
			op(2, 3, put("k", "b", 0), cxOutput{value: "a", index: 5}),
			op(4, 5, del(4), cxOutput{value: "a", index: 5, entry: 9}),
		}},
		{"unknown put that took effect", porcupine.Ok, []porcupine.Operation{
			op(0, inf, put("k", "a", 0), cxOutput{unknown: true}),
			op(2, 3, get, cxOutput{value: "a", index: 5}),
			op(4, 5, put("k", "b", 5), cxOutput{ok: true, value: "b", index: 9}),
		}},
		{"unknown put that did not", porcupine.Ok, []porcupine.Operation{
			op(0, inf, put("k", "a", 0), cxOutput{unknown: true}),
			op(2, 3, get, cxOutput{}),
			op(4, 5, put("k", "b", 0), cxOutput{ok: true, value: "b", index: 9}),
			op(6, 7, get, cxOutput{value: "b", index: 9}),
		}},
		{"unknown put seen, then gone without a delete", porcupine.Illegal, []porcupine.Operation{
			op(0, inf, put("k", "a", 0), cxOutput{unknown: true}),
			op(2, 3, get, cxOutput{value: "a", index: 5}),
			op(4, 5, get, cxOutput{}),
		}},
		{"unknown put seen at two indexes", porcupine.Illegal, []porcupine.Operation{
			op(0, inf, put("k", "a", 0), cxOutput{unknown: true}),
			op(2, 3, get, cxOutput{value: "a", index: 5}),
			op(4, 5, get, cxOutput{value: "a", index: 6}),
		}},
	}
	for _, tc := range cases {
		if got := porcupine.CheckOperations(cxModel, tc.h); (got && tc.want != porcupine.Ok) || (!got && tc.want != porcupine.Illegal) {
			t.Errorf("%s: linearizable=%v, want %s", tc.name, got, tc.want)
		}
	}
}

// Clients do random compare-exchanges on a few keys through every member
// while members, the leader included, are stopped and restarted; porcupine
// checks that the history is linearizable.
func TestLinearizableUnderRestarts(t *testing.T) {
	c := raftnodetest.Start(t, 3)
	kvs := make([]cxkvrpc.KVClient, len(c.Members))
	for i := range kvs {
		kvs[i] = c.Client(i)
	}
	keys := []string{"lin/a", "lin/b", "lin/c", "lin/d"}
	const clients = 8
	pace, downFor, faults := 700*time.Millisecond, 500*time.Millisecond, []string{"leader", "follower", "leader"}
	if testing.Short() {
		pace, downFor, faults = 500*time.Millisecond, 400*time.Millisecond, []string{"leader"}
	}

	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	var (
		mu       sync.Mutex
		history  []porcupine.Operation
		nextProc atomic.Int64 // a client whose call failed goes on as a new process
		stop     atomic.Bool
		down     [3]atomic.Bool     // members the fault schedule has stopped
		counts   [3][3]atomic.Int64 // [op][ok, failed compare, error]
		wg       sync.WaitGroup
	)
	nextProc.Store(clients)
	for cl := 0; cl < clients; cl++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(cl), uint64(start.UnixNano())))
			proc := cl
			seen := map[string]uint64{} // the last index this client saw per key
			for seq := 0; !stop.Load(); seq++ {
				key := keys[rng.IntN(len(keys))]
				m := rng.IntN(len(kvs))
				for down[m].Load() { // calls to a stopped member only add failed calls
					m = (m + 1) % len(kvs)
				}
				kv := kvs[m]
				in := cxInput{key: key}
				switch r := rng.IntN(10); {
				case r < 4:
					in.op = opGet
				case r < 8:
					in.op, in.value = opPut, fmt.Sprintf("c%d-%d", cl, seq)
					if rng.IntN(4) > 0 {
						in.expect = seen[key]
					}
				case seen[key] != 0: // a delete needs an index (expect 0 is InvalidArgument)
					in.op, in.expect = opDelete, seen[key]
				default:
					in.op = opGet
				}
				var out cxOutput
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				call := now()
				var err error
				switch in.op {
				case opGet:
					var r *cxkvpb.GetResponse
					if r, err = kv.Get(ctx, &cxkvpb.GetRequest{Key: key}); err == nil {
						out = cxOutput{value: string(r.GetRecord().GetValue()), index: r.GetRecord().GetIndex()}
						seen[key] = out.index
					}
				case opPut:
					var r *cxkvpb.PutResponse
					if r, err = kv.Put(ctx, &cxkvpb.PutRequest{Key: key, Value: []byte(in.value), ExpectIndex: in.expect}); err == nil {
						out = cxOutput{ok: r.GetSuccessful(), value: string(r.GetRecord().GetValue()), index: r.GetRecord().GetIndex()}
						seen[key] = out.index
					}
				case opDelete:
					var r *cxkvpb.DeleteResponse
					if r, err = kv.Delete(ctx, &cxkvpb.DeleteRequest{Key: key, ExpectIndex: in.expect}); err == nil {
						out = cxOutput{ok: r.GetSuccessful(), value: string(r.GetRecord().GetValue()), index: r.GetRecord().GetIndex(), entry: r.GetIndex()}
						seen[key] = out.index
						if out.ok {
							seen[key] = 0
						}
					}
				}
				ret := now()
				cancel()
				switch {
				case err == nil && (out.ok || in.op == opGet):
					counts[in.op][0].Add(1)
				case err == nil:
					counts[in.op][1].Add(1)
				default:
					counts[in.op][2].Add(1)
				}
				if err != nil {
					time.Sleep(10 * time.Millisecond) // paces retries while there is no leader
				}
				if err != nil && in.op == opGet {
					continue // a read that failed neither changed nor showed anything
				}
				if err != nil {
					out, ret = cxOutput{unknown: true, err: err.Error()}, math.MaxInt64
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: proc, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
				if err != nil {
					proc = int(nextProc.Add(1) - 1)
				}
			}
		}()
	}

	// The fault schedule, paced by sleeps: each step stops a member (the
	// leader, or a follower) for a while and restarts it from its data dir.
	for _, f := range faults {
		time.Sleep(pace)
		victim := c.WaitLeader()
		if f == "follower" {
			victim = (victim + 1 + rand.IntN(2)) % 3
		}
		t.Logf("%v: stop member %d (%s)", time.Since(start).Round(time.Millisecond), victim+1, f)
		bounce(c, victim, downFor, down[:])
	}
	time.Sleep(pace)
	stop.Store(true)
	wg.Wait()
	names := []string{"get", "put", "delete"}
	for op := range counts {
		t.Logf("%-6s ok %d, failed compare %d, error %d", names[op], counts[op][0].Load(), counts[op][1].Load(), counts[op][2].Load())
	}
	if ok := counts[opGet][0].Load() + counts[opPut][0].Load(); ok < 10 {
		t.Fatalf("only %d successful gets and puts: the cluster made too little progress for the check to mean much", ok)
	}

	t.Logf("%v: clients done", time.Since(start).Round(time.Millisecond))
	checkStart := time.Now()
	res := porcupine.CheckOperationsTimeout(cxModel, history, 10*time.Second)
	t.Logf("porcupine: %s on %d operations in %v", res, len(history), time.Since(checkStart).Round(time.Millisecond))
	switch res {
	case porcupine.Illegal:
		_, info := porcupine.CheckOperationsVerbose(cxModel, history, 10*time.Second)
		// ArtifactDir is a temporary dir like TempDir, kept with go test -artifacts.
		path := filepath.Join(t.ArtifactDir(), "linearizability.html")
		if err := porcupine.VisualizePath(cxModel, info, path); err != nil {
			t.Errorf("visualize: %v", err)
		}
		t.Fatalf("history is not linearizable; visualization at %s", path)
	case porcupine.Unknown:
		t.Log("the check timed out: no violation found in the time given")
	}
}

// bounce stops member victim for downFor, then restarts it from its data
// dir; down[victim] is set meanwhile, so clients skip it.
func bounce(c *raftnodetest.Cluster, victim int, downFor time.Duration, down []atomic.Bool) {
	down[victim].Store(true)
	c.Stop(victim)
	time.Sleep(downFor)
	c.Restart(victim)
	down[victim].Store(false)
}
