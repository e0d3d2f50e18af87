package kv

import (
	"math"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

var testSessionLimits = SessionLimits{MaxSessions: 2, MaxResults: 8, TTLMillis: 1000}

// recordResult applies a fresh write (client, seq) at stamp now with result.
func recordResult(t *testing.T, b *Batch, client, seq uint64, now int64, result []byte) {
	t.Helper()
	tbl, err := b.Sessions(testSessionLimits, now)
	if err != nil {
		t.Fatal(err)
	}
	w, err := tbl.Lookup(client, seq, seq == 1)
	if err != nil || w.Outcome != Fresh {
		t.Fatalf("lookup client %d seq %d: %+v %v, want fresh", client, seq, w, err)
	}
	if err := tbl.Record(&w, 0, result); err != nil {
		t.Fatal(err)
	}
}

// storedResult looks the write up at stamp now, which touches its client.
func storedResult(t *testing.T, b *Batch, client, seq uint64, now int64) ([]byte, bool) {
	t.Helper()
	tbl, err := b.Sessions(testSessionLimits, now)
	if err != nil {
		t.Fatal(err)
	}
	w, err := tbl.Lookup(client, seq, seq == 1)
	if err != nil {
		t.Fatal(err)
	}
	return w.Result, w.Outcome == Answered
}

func TestSessionsEvictLeastRecentlyUsed(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	b := s.NewBatch()
	defer b.Close()
	recordResult(t, b, 2, 1, 20, []byte("b1"))
	recordResult(t, b, 1, 1, 50, []byte("a1"))
	recordResult(t, b, 2, 2, 70, []byte("b2")) // client 2 used again later
	recordResult(t, b, 3, 1, 80, []byte("c1")) // a third client: one must go
	if _, ok := storedResult(t, b, 1, 1, 80); ok {
		t.Fatal("client 1, the least recently used, was not evicted")
	}
	if r, ok := storedResult(t, b, 2, 1, 80); !ok || string(r) != "b1" {
		t.Fatalf("client 2 lost its result: %q %v", r, ok)
	}
	n, _ := b.Counter(sessionCount)
	if n != 2 {
		t.Fatalf("session count %d, want 2", n)
	}
}

func TestDeleteResultsForgetsExactlyTheRange(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	b := s.NewBatch()
	defer b.Close()
	seqs := []uint64{1, 2, 3, 4, 5000, math.MaxUint64 - 1, math.MaxUint64}
	for _, c := range []uint64{1, 2, 3} {
		for _, q := range seqs {
			b.b.Set(resultKey(c, q), []byte("r"), nil)
		}
	}
	b.deleteResults(1, 2, 3)                 // point deletes
	b.deleteResults(2, 2, 5000)              // range: past maxPointDeletes
	b.deleteResults(3, 4, math.MaxUint64)    // range to the end of the client
	b.deleteResults(1, 5000, math.MaxUint64) // range to the end of the client
	want := map[uint64][]uint64{1: {1, 4}, 2: {1, math.MaxUint64 - 1, math.MaxUint64}, 3: {1, 2, 3}}
	for c, kept := range want {
		for _, q := range seqs {
			_, ok, err := getRaw(b.b, resultKey(c, q))
			if err != nil || ok != slices.Contains(kept, q) {
				t.Errorf("client %d seq %d: stored=%v err=%v, want stored=%v", c, q, ok, err, !ok)
			}
		}
	}
}
