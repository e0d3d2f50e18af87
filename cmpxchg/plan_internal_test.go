package cmpxchg

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cxkv/cxkv/kv"
)

// A plan reads each key from the batch once: a second get of a key returns
// what the first read, whether the plan still searches its reads or has
// indexed them (more than smallPlan keys read). Rewriting each key in the
// batch behind the plan's back shows which: a get that went to the batch
// again would see the new value.
func TestPlanReadsEachKeyOnce(t *testing.T) {
	s, err := kv.Open("db", kv.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := s.NewBatch()
	defer b.Close()
	const keys = 3 * smallPlan
	key := func(i int) string { return fmt.Sprintf("k%02d", i) }
	for i := range keys {
		if err := b.Put(kv.Record{Key: key(i), Value: []byte("first"), Index: 1, CreateIndex: 1}); err != nil {
			t.Fatal(err)
		}
	}
	p := newPlan(b, 2, actor{})
	for i := range keys {
		if r, found, err := p.get(key(i)); err != nil || !found || string(r.Value) != "first" {
			t.Fatalf("first get of %s: %+v, %v, %v", key(i), r, found, err)
		}
		if err := b.Put(kv.Record{Key: key(i), Value: []byte("behind the plan"), Index: 2, CreateIndex: 1}); err != nil {
			t.Fatal(err)
		}
		// Every key read so far, including those read before the plan
		// indexed its reads, is still answered from the first read.
		for j := 0; j <= i; j++ {
			if r, _, err := p.get(key(j)); err != nil || string(r.Value) != "first" {
				t.Fatalf("after %d keys read, get of %s went to the batch again: %q, %v", i+1, key(j), r.Value, err)
			}
		}
	}
	if r, found, err := p.get("absent"); err != nil || found || r.Key != "absent" {
		t.Fatalf("get of an absent key: %+v, %v, %v", r, found, err)
	}
}

// A smallMap answers like a map whether it is still a slice or has been
// indexed: every key keeps its latest value across the switch.
func TestSmallMap(t *testing.T) {
	var m smallMap[int]
	want := map[string]int{}
	for i := range 3 * smallPlan {
		k := fmt.Sprintf("k%d", i%(2*smallPlan)) // the second round overwrites
		m.set(k, i)
		want[k] = i
		for k, v := range want {
			if got, ok := m.get(k); !ok || got != v {
				t.Fatalf("after %d sets: %s = %d, %v; want %d", i+1, k, got, ok, v)
			}
		}
		if _, ok := m.get("never"); ok {
			t.Fatalf("after %d sets: a key never set is found", i+1)
		}
	}
}
