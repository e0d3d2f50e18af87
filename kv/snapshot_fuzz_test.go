package kv_test

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cxkv/cxkv/kv"
)

// A snapshot stream arrives from another member over the network: the
// receiver must treat it as untrusted bytes.

// restoreTarget is a store with state of its own, so that a restore that
// half-happened would show.
func restoreTarget(t *testing.T) *kv.Store {
	t.Helper()
	s, err := kv.Open("db", kv.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	b := s.NewBatch()
	defer b.Close()
	for _, r := range []kv.Record{
		{Key: "before/a", Value: []byte("1"), Index: 3, CreateIndex: 3},
		{Key: "before/b", Value: []byte("2"), Index: 4, CreateIndex: 4, TTLMillis: 100},
	} {
		if err := b.Put(r); err != nil {
			t.Fatal(err)
		}
		if err := b.AddEvent(kv.Event{Type: kv.EventPut, Record: r}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.SetApplied(4); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	return s
}

// dump is everything a restore may change: the state as its snapshot stream
// and the history.
func dump(t *testing.T, s *kv.Store) ([]byte, []kv.Event) {
	t.Helper()
	ss := s.NewStateSnapshot()
	defer ss.Close()
	var state bytes.Buffer
	if _, err := ss.WriteTo(&state); err != nil {
		t.Fatal(err)
	}
	events, err := s.Events("", 0, 1<<20, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	return state.Bytes(), events
}

// FuzzRestoreState: arbitrary bytes are either refused, leaving the state and
// history exactly as they were, or restored; and a restored state streams
// out as a snapshot that restores to the same state again.
func FuzzRestoreState(f *testing.F) {
	f.Fuzz(func(t *testing.T, stream []byte) {
		s := restoreTarget(t)
		state, events := dump(t, s)
		if err := s.RestoreState(bytes.NewReader(stream)); err != nil {
			if err.Error() == "" {
				t.Fatal("refused with an empty error")
			}
			after, afterEvents := dump(t, s)
			if !bytes.Equal(after, state) || !reflect.DeepEqual(afterEvents, events) {
				t.Fatalf("refused stream (%v) changed the store", err)
			}
			return
		}
		restored, _ := dump(t, s)
		again := restoreTarget(t)
		if err := again.RestoreState(bytes.NewReader(restored)); err != nil {
			t.Fatalf("the snapshot of a restored state is refused: %v", err)
		}
		if twice, _ := dump(t, again); !bytes.Equal(twice, restored) {
			t.Fatal("restoring the snapshot of a restored state gives another state")
		}
	})
}
