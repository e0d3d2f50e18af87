package workload

import (
	"math"
	"strings"
	"testing"

	"time"

	"github.com/anishathalye/porcupine"
	"github.com/cxkv/cxkv/client"
)

// The checkers must catch what they are for: each is fed hand-written
// histories that the contract allows and ones it forbids.

func TestModelAcceptsAndRejects(t *testing.T) {
	const inf = math.MaxInt64
	op := func(call, ret int64, in kvInput, out kvOutput) porcupine.Operation {
		in.Group = "g"
		return porcupine.Operation{ClientId: int(call), Input: in, Call: call, Output: out, Return: ret}
	}
	get := func(k int) kvInput { return kvInput{Kind: opGet, Key: k} }
	put := func(k int, v string, expect uint64) kvInput {
		return kvInput{Kind: opPut, Key: k, Value: v, Expect: expect}
	}
	del := func(k int, expect uint64) kvInput { return kvInput{Kind: opDelete, Key: k, Expect: expect} }
	r := func(v string, i uint64) rec { return rec{Value: v, Index: i} }
	// if k0 is at index 5, put k0=c and k1=d
	move := kvInput{Kind: opTxn, Cmps: []cmpIn{{Key: 0, Kind: cmpIndex, Index: 5}},
		Ops: []txnOpIn{{Kind: opPut, Key: 0, Value: "c"}, {Kind: opPut, Key: 1, Value: "d"}}}
	cases := []struct {
		name string
		want porcupine.CheckResult
		h    []porcupine.Operation
	}{
		{"put get delete get", porcupine.Ok, []porcupine.Operation{
			op(0, 1, put(0, "a", 0), kvOutput{OK: true, Rec: r("a", 5)}),
			op(2, 3, get(0), kvOutput{Rec: r("a", 5)}),
			op(4, 5, del(0, 5), kvOutput{OK: true, Rec: r("a", 5), Entry: 6}),
			op(6, 7, get(0), kvOutput{}),
		}},
		{"stale read", porcupine.Illegal, []porcupine.Operation{
			op(0, 1, put(0, "a", 0), kvOutput{OK: true, Rec: r("a", 5)}),
			op(2, 3, put(0, "b", 5), kvOutput{OK: true, Rec: r("b", 7)}),
			op(4, 5, get(0), kvOutput{Rec: r("a", 5)}),
		}},
		{"lost update: two puts on index 5 both win", porcupine.Illegal, []porcupine.Operation{
			op(0, 1, put(0, "a", 0), kvOutput{OK: true, Rec: r("a", 5)}),
			op(2, 4, put(0, "b", 5), kvOutput{OK: true, Rec: r("b", 7)}),
			op(2, 4, put(0, "c", 5), kvOutput{OK: true, Rec: r("c", 8)}),
		}},
		{"index reused after a delete", porcupine.Illegal, []porcupine.Operation{
			op(0, 1, put(0, "a", 0), kvOutput{OK: true, Rec: r("a", 5)}),
			op(2, 3, del(0, 5), kvOutput{OK: true, Rec: r("a", 5), Entry: 6}),
			op(4, 5, put(0, "b", 0), kvOutput{OK: true, Rec: r("b", 6)}),
		}},
		{"unknown put seen later", porcupine.Ok, []porcupine.Operation{
			op(0, inf, put(0, "a", 0), kvOutput{Unknown: true}),
			op(2, 3, get(0), kvOutput{Rec: r("a", 5)}),
			op(4, 5, put(0, "b", 5), kvOutput{OK: true, Rec: r("b", 9)}),
		}},
		{"unknown put never seen", porcupine.Ok, []porcupine.Operation{
			op(0, inf, put(0, "a", 0), kvOutput{Unknown: true}),
			op(2, 3, get(0), kvOutput{}),
		}},
		{"a write the SDK said failed shows up", porcupine.Illegal, []porcupine.Operation{
			// the failed put is left out of the history, as the harness does
			op(2, 3, get(0), kvOutput{Rec: r("a", 5)}),
		}},
		{"txn applies both keys at one index", porcupine.Ok, []porcupine.Operation{
			op(0, 1, put(0, "a", 0), kvOutput{OK: true, Rec: r("a", 5)}),
			op(2, 3, move, kvOutput{OK: true, Failed: -1, Compared: []rec{r("a", 5)}, Results: []rec{r("c", 8), r("d", 8)}, Entry: 8}),
			op(4, 5, get(1), kvOutput{Rec: r("d", 8)}),
			op(4, 5, get(0), kvOutput{Rec: r("c", 8)}),
		}},
		{"txn at an index the key already had", porcupine.Illegal, []porcupine.Operation{
			op(0, 1, put(0, "a", 0), kvOutput{OK: true, Rec: r("a", 5)}),
			op(2, 3, move, kvOutput{OK: true, Failed: -1, Compared: []rec{r("a", 5)}, Results: []rec{r("c", 5), r("d", 5)}, Entry: 5}),
		}},
		{"txn half applied", porcupine.Illegal, []porcupine.Operation{
			op(0, 1, put(0, "a", 0), kvOutput{OK: true, Rec: r("a", 5)}),
			op(2, 3, move, kvOutput{OK: true, Failed: -1, Compared: []rec{r("a", 5)}, Results: []rec{r("c", 8), r("d", 8)}, Entry: 8}),
			op(4, 5, get(1), kvOutput{}),
		}},
		{"failed txn changed a key", porcupine.Illegal, []porcupine.Operation{
			op(0, 1, put(0, "a", 0), kvOutput{OK: true, Rec: r("a", 6)}),
			op(2, 3, move, kvOutput{Failed: 0, Compared: []rec{r("a", 6)}}),
			op(4, 5, get(1), kvOutput{Rec: r("d", 8)}),
		}},
		{"txn whose compare did not hold succeeded", porcupine.Illegal, []porcupine.Operation{
			op(0, 1, put(0, "a", 0), kvOutput{OK: true, Rec: r("a", 6)}),
			op(2, 3, move, kvOutput{OK: true, Failed: -1, Compared: []rec{r("a", 6)}, Results: []rec{r("c", 8), r("d", 8)}, Entry: 8}),
		}},
		{"one txn writes a key twice", porcupine.Ok, []porcupine.Operation{
			op(0, 1, kvInput{Kind: opTxn, Ops: []txnOpIn{{Kind: opPut, Key: 2, Value: "x"}, {Kind: opPut, Key: 2, Value: "y"}, {Kind: opDelete, Key: 2}}},
				kvOutput{OK: true, Failed: -1, Results: []rec{r("x", 4), r("y", 4), r("y", 4)}, Entry: 4}),
			op(2, 3, get(2), kvOutput{}),
		}},
		{"unknown txn applied, seen by a read", porcupine.Ok, []porcupine.Operation{
			op(0, 1, put(0, "a", 0), kvOutput{OK: true, Rec: r("a", 5)}),
			op(2, inf, move, kvOutput{Unknown: true}),
			op(4, 5, get(1), kvOutput{Rec: r("d", 9)}),
			op(6, 7, get(0), kvOutput{Rec: r("c", 9)}),
		}},
	}
	for _, tc := range cases {
		if got := porcupine.CheckOperations(kvModel, tc.h); got != (tc.want == porcupine.Ok) {
			t.Errorf("%s: linearizable=%v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestResourceCatchesOverlapAndStaleTokens(t *testing.T) {
	res := newResource(20 * time.Millisecond)
	lostA := make(chan struct{})
	a := &holder{id: 1, name: "L", token: 10, lost: lostA}
	b := &holder{id: 2, name: "L", token: 12, lost: make(chan struct{})}
	res.acquired(a)
	if !res.access(a) {
		t.Fatal("first holder refused")
	}
	res.acquired(b)
	res.access(b) // a still holds: its Lost is open and it has not left
	res.wait()
	if len(res.anomalies) != 1 || !strings.Contains(res.anomalies[0], "still open") {
		t.Fatalf("overlap not reported: %v", res.anomalies)
	}
	if res.access(a) {
		t.Fatal("the fence let a lower token through")
	}
	if res.refused != 1 {
		t.Fatalf("refused = %d, want 1", res.refused)
	}
	// A holder whose Lost closed may be overtaken: no anomaly, even if it
	// closes a little late.
	res = newResource(time.Second)
	res.access(a)
	res.access(b)
	close(lostA)
	res.wait()
	if len(res.anomalies) != 0 || res.late != 1 {
		t.Fatalf("anomaly after the first holder lost its lock: %v", res.anomalies)
	}
	// Two acquisitions with one token.
	res.acquired(&holder{id: 3, name: "L", token: 20})
	res.acquired(&holder{id: 4, name: "L", token: 20})
	if len(res.anomalies) != 1 || !strings.Contains(res.anomalies[0], "token 20") {
		t.Fatalf("duplicate token not reported: %v", res.anomalies)
	}
}

func TestWatchCheckCatchesMissingDuplicateAndDisorder(t *testing.T) {
	h := newHistory(time.Time{})
	h.add(0, kvInput{Kind: opPut, Group: "kv/g", Key: 0, Value: "a"}, 0, kvOutput{OK: true, Rec: rec{"a", 5}})
	h.add(0, kvInput{Kind: opPut, Group: "kv/g", Key: 0, Value: "b", Expect: 5}, 0, kvOutput{OK: true, Rec: rec{"b", 7}})
	h.add(0, kvInput{Kind: opDelete, Group: "kv/g", Key: 0, Expect: 7}, 0, kvOutput{OK: true, Rec: rec{"b", 7}, Entry: 9})
	ev := func(t client.EventType, v string, i uint64) client.Event {
		return client.Event{Type: t, Record: client.Record{Key: "kv/g/k0", Value: []byte(v), Index: i}}
	}
	put, del := client.EventPut, client.EventDelete
	cases := []struct {
		name   string
		events []client.Event
		want   string
	}{
		{"all", []client.Event{ev(put, "a", 5), ev(put, "b", 7), ev(del, "b", 9)}, ""},
		{"missing", []client.Event{ev(put, "a", 5), ev(del, "b", 9)}, "never seen"},
		{"twice", []client.Event{ev(put, "a", 5), ev(put, "a", 5), ev(put, "b", 7), ev(del, "b", 9)}, "twice"},
		{"disorder", []client.Event{ev(put, "b", 7), ev(put, "a", 5), ev(del, "b", 9)}, "out of log order"},
		{"wrong index", []client.Event{ev(put, "a", 6), ev(put, "b", 7), ev(del, "b", 9)}, "acknowledged at 5"},
		{"missing in a gap the watch reported", nil, ""},
		{"from nowhere", []client.Event{ev(put, "a", 5), ev(put, "b", 7), ev(put, "z", 8), ev(del, "b", 9)}, "no write"},
	}
	for _, tc := range cases {
		w := newWatcher()
		w.events = tc.events
		if tc.events == nil { // the watch ended with ErrCompacted after 5 and resumed from 8
			w.events = []client.Event{ev(put, "a", 5), ev(del, "b", 9)}
			w.gaps = [][2]uint64{{5, 8}}
		}
		_, bad := checkWatch(w, h)
		got := strings.Join(bad, "; ")
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
