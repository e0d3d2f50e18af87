package workload

import (
	"fmt"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
)

// The compare-exchange contract as a porcupine model. Keys come in groups of
// groupKeys; a Txn touches keys of one group only, so a group is a
// partition porcupine checks on its own.
//
// A key's state is its value and index (0: absent). Indexes come from the
// log, so the model does not predict them: a successful write must return
// an index above every index the key has had (its floor), and reads must
// return exactly the index of the write they see.
//
// A write whose outcome is unknown (the SDK says ErrOutcomeUnknown) is
// recorded with an infinite return time, so porcupine may place it anywhere
// after its call, including never (after everything). Where its compares
// hold, it takes effect with an index nobody was told: the key is pending,
// and the next operation that reports the key's index (a read, a failed
// compare, a Txn's compared state) fixes it, provided it is above the floor.
// An unknown write comparing a pending key's index is taken as a failed
// compare: expected indexes come only from what clients were told, and an
// index anyone was told is no longer pending. A write that failed with any
// other error is left out of the history: the SDK promises it did not apply,
// so a later read showing it is an anomaly. Failed reads are left out too.

const groupKeys = 3

type opKind uint8

const (
	opGet opKind = iota
	opPut
	opDelete
	opTxn
)

type cmpKind uint8

const (
	cmpIndex cmpKind = iota
	cmpAbsent
	cmpValue
)

type cmpIn struct {
	Key   int
	Kind  cmpKind
	Index uint64
	Value string
}

type txnOpIn struct {
	Kind  opKind // opGet, opPut, opDelete
	Key   int
	Value string
}

type kvInput struct {
	Kind   opKind
	Group  string
	Key    int    // get, put, delete
	Value  string // put
	Expect uint64 // put, delete
	Cmps   []cmpIn
	Ops    []txnOpIn
}

type rec struct {
	Value string
	Index uint64
}

type kvOutput struct {
	Unknown  bool // the outcome is unknown: it may or may not have applied
	OK       bool
	Rec      rec    // get: the key; put/delete: the key written, removed or found
	Entry    uint64 // delete, txn: the index of the write
	Failed   int    // txn: the first compare that did not hold
	Compared []rec
	Results  []rec
	Err      string
}

type keyState struct {
	Value   string
	Index   uint64 // 0: absent (or pending)
	Pending bool   // written by a write of unknown outcome; index not yet seen
	Floor   uint64 // every later write of the key has a larger index
}

type groupState [groupKeys]keyState

func (s keyState) exists() bool { return s.Index != 0 || s.Pending }

// observe checks that r is the key's state, fixing a pending index.
func (s keyState) observe(r rec) (bool, keyState) {
	if !s.Pending {
		return r.Value == s.Value && r.Index == s.Index, s
	}
	if r.Value != s.Value || r.Index <= s.Floor {
		return false, s
	}
	return true, keyState{Value: r.Value, Index: r.Index, Floor: r.Index}
}

// holds evaluates a compare on a known state.
func (c cmpIn) holds(s keyState) bool {
	switch c.Kind {
	case cmpIndex:
		return !s.Pending && s.Index == c.Index
	case cmpAbsent:
		return !s.exists()
	default:
		return s.exists() && s.Value == c.Value
	}
}

func putHolds(s keyState, expect uint64) bool { return !s.Pending && s.Index == expect }
func delHolds(s keyState, expect uint64) bool {
	return !s.Pending && s.Index != 0 && s.Index == expect
}

func kvStep(st groupState, in kvInput, out kvOutput) (bool, groupState) {
	switch in.Kind {
	case opGet:
		ok, n := st[in.Key].observe(out.Rec)
		st[in.Key] = n
		return ok, st
	case opPut:
		s := st[in.Key]
		if out.Unknown {
			if putHolds(s, in.Expect) {
				st[in.Key] = keyState{Value: in.Value, Pending: true, Floor: s.Floor}
			}
			return true, st
		}
		if !out.OK {
			ok, n := s.observe(out.Rec)
			st[in.Key] = n
			return ok && !putHolds(n, in.Expect), st
		}
		if s.Pending { // it compared against the pending index: that is its index
			if in.Expect == 0 || in.Expect <= s.Floor {
				return false, st
			}
			s = keyState{Value: s.Value, Index: in.Expect, Floor: in.Expect}
		}
		if !putHolds(s, in.Expect) || out.Rec.Value != in.Value || out.Rec.Index <= s.Floor {
			return false, st
		}
		st[in.Key] = keyState{Value: in.Value, Index: out.Rec.Index, Floor: out.Rec.Index}
		return true, st
	case opDelete:
		s := st[in.Key]
		if out.Unknown {
			if delHolds(s, in.Expect) {
				st[in.Key] = keyState{Floor: s.Floor}
			}
			return true, st
		}
		ok, n := s.observe(out.Rec)
		if !ok {
			return false, st
		}
		if !out.OK {
			st[in.Key] = n
			return !delHolds(n, in.Expect), st
		}
		if !delHolds(n, in.Expect) || out.Entry <= n.Floor {
			return false, st
		}
		st[in.Key] = keyState{Floor: out.Entry}
		return true, st
	case opTxn:
		return txnStep(st, in, out)
	}
	return false, st
}

func txnStep(st groupState, in kvInput, out kvOutput) (bool, groupState) {
	if out.Unknown {
		for _, c := range in.Cmps {
			s := st[c.Key]
			if s.Pending && c.Kind == cmpIndex || !c.holds(s) {
				return true, st // if it applied, its compares failed: no change
			}
		}
		for _, op := range in.Ops {
			s := st[op.Key]
			switch op.Kind {
			case opPut:
				st[op.Key] = keyState{Value: op.Value, Pending: true, Floor: s.Floor}
			case opDelete:
				if s.exists() {
					st[op.Key] = keyState{Floor: s.Floor}
				}
			}
		}
		return true, st
	}
	if len(out.Compared) != len(in.Cmps) {
		return false, st
	}
	for i, c := range in.Cmps {
		ok, n := st[c.Key].observe(out.Compared[i])
		if !ok {
			return false, st
		}
		st[c.Key] = n
		holds := c.holds(n)
		if !out.OK && i == out.Failed && holds || (out.OK || i < out.Failed) && !holds {
			return false, st
		}
	}
	if !out.OK {
		return out.Failed >= 0 && out.Failed < len(in.Cmps), st
	}
	if len(out.Results) != len(in.Ops) {
		return false, st
	}
	// Every write of the txn has index x, above what the keys had before it
	// (a txn may write one key twice, both at x).
	x, before := out.Entry, st
	for j, op := range in.Ops {
		s, r := st[op.Key], out.Results[j]
		switch op.Kind {
		case opPut:
			if x <= before[op.Key].Floor || r != (rec{Value: op.Value, Index: x}) {
				return false, st
			}
			st[op.Key] = keyState{Value: op.Value, Index: x, Floor: x}
		case opDelete:
			if !s.exists() {
				if r.Index != 0 {
					return false, st
				}
				continue
			}
			ok, n := s.observe(r)
			if !ok || x <= before[op.Key].Floor || n.Index > x {
				return false, st
			}
			st[op.Key] = keyState{Floor: x}
		case opGet:
			ok, n := s.observe(r)
			if !ok {
				return false, st
			}
			st[op.Key] = n
		}
	}
	return true, st
}

var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byGroup := map[string][]porcupine.Operation{}
		for _, op := range history {
			g := op.Input.(kvInput).Group
			byGroup[g] = append(byGroup[g], op)
		}
		groups := make([]string, 0, len(byGroup))
		for g := range byGroup {
			groups = append(groups, g)
		}
		sort.Strings(groups)
		out := make([][]porcupine.Operation, 0, len(groups))
		for _, g := range groups {
			out = append(out, byGroup[g])
		}
		return out
	},
	Init: func() any { return groupState{} },
	Step: func(state, input, output any) (bool, any) {
		return kvStep(state.(groupState), input.(kvInput), output.(kvOutput))
	},
	DescribeOperation: func(input, output any) string { return describeOp(input.(kvInput), output.(kvOutput)) },
	DescribeState: func(state any) string {
		st := state.(groupState)
		parts := make([]string, len(st))
		for i, s := range st {
			switch {
			case s.Pending:
				parts[i] = fmt.Sprintf("k%d=%q@? (floor %d)", i, s.Value, s.Floor)
			case s.Index == 0:
				parts[i] = fmt.Sprintf("k%d absent (floor %d)", i, s.Floor)
			default:
				parts[i] = fmt.Sprintf("k%d=%q@%d", i, s.Value, s.Index)
			}
		}
		return strings.Join(parts, " ")
	},
}

func describeOp(in kvInput, out kvOutput) string {
	var call string
	switch in.Kind {
	case opGet:
		call = fmt.Sprintf("get(k%d)", in.Key)
	case opPut:
		call = fmt.Sprintf("put(k%d, %s, expect %d)", in.Key, in.Value, in.Expect)
	case opDelete:
		call = fmt.Sprintf("delete(k%d, expect %d)", in.Key, in.Expect)
	case opTxn:
		var cs, os []string
		for _, c := range in.Cmps {
			switch c.Kind {
			case cmpIndex:
				cs = append(cs, fmt.Sprintf("k%d@%d", c.Key, c.Index))
			case cmpAbsent:
				cs = append(cs, fmt.Sprintf("k%d absent", c.Key))
			default:
				cs = append(cs, fmt.Sprintf("k%d=%s", c.Key, c.Value))
			}
		}
		for _, o := range in.Ops {
			switch o.Kind {
			case opPut:
				os = append(os, fmt.Sprintf("put k%d %s", o.Key, o.Value))
			case opDelete:
				os = append(os, fmt.Sprintf("delete k%d", o.Key))
			default:
				os = append(os, fmt.Sprintf("get k%d", o.Key))
			}
		}
		call = fmt.Sprintf("txn(if %s then %s)", strings.Join(cs, ", "), strings.Join(os, "; "))
	}
	switch {
	case out.Unknown:
		return call + " -> unknown: " + out.Err
	case in.Kind == opGet:
		return fmt.Sprintf("%s -> %q@%d", call, out.Rec.Value, out.Rec.Index)
	case in.Kind == opDelete:
		return fmt.Sprintf("%s -> ok=%v %q@%d (entry %d)", call, out.OK, out.Rec.Value, out.Rec.Index, out.Entry)
	case in.Kind == opTxn:
		return fmt.Sprintf("%s -> ok=%v failed=%d compared=%v results=%v at %d", call, out.OK, out.Failed, out.Compared, out.Results, out.Entry)
	}
	return fmt.Sprintf("%s -> ok=%v %q@%d", call, out.OK, out.Rec.Value, out.Rec.Index)
}
