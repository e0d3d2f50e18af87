package kv

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// A deleted key stays in the memtable as every SET and DEL ever written to
// it since the last flush, and a Pebble point read of a key whose newest
// version is a DEL steps through all of them before it reports the key
// absent. A session's tally is deleted when its last key goes, so every
// lock acquired and released on one session left one more version for the
// next acquire to read through; a plain lock's record, created and deleted
// per hand-off, the same. These benchmarks read a tally and a record after
// n such cycles: their ns/op must not grow with n.

// cycle attaches key to session and detaches it again, in two committed
// batches, as a lock's acquire and release do.
func cycle(tb testing.TB, s *Store, session, key string, index uint64) {
	tb.Helper()
	b := s.NewBatch()
	if err := b.Put(Record{Key: key, Value: []byte("holder"), Index: index, CreateIndex: index, Session: session}); err != nil {
		tb.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		tb.Fatal(err)
	}
	b.Close()
	b = s.NewBatch()
	if err := b.Delete(key); err != nil {
		tb.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		tb.Fatal(err)
	}
	b.Close()
}

var priorCycles = []int{0, 1000, 20000}

func BenchmarkAttachAfterDetaches(b *testing.B) {
	for _, n := range priorCycles {
		b.Run(fmt.Sprintf("cycles=%d", n), func(b *testing.B) {
			s := openMem(b, vfs.NewMem())
			defer s.Close()
			for i := 0; i < n; i++ {
				cycle(b, s, "s1", fmt.Sprintf("lock/%d", i), uint64(i+1))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				bt := s.NewBatch()
				if t, err := bt.Tally("s1"); err != nil || t != (Tally{}) {
					b.Fatalf("tally %+v, %v", t, err)
				}
				bt.Close()
			}
		})
	}
}

func BenchmarkGetAfterDeletes(b *testing.B) {
	for _, n := range priorCycles {
		b.Run(fmt.Sprintf("cycles=%d", n), func(b *testing.B) {
			s := openMem(b, vfs.NewMem())
			defer s.Close()
			for i := 0; i < n; i++ {
				cycle(b, s, "", "lock", uint64(i+1))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				bt := s.NewBatch()
				if _, found, err := bt.Get("lock"); err != nil || found {
					b.Fatalf("found %v, %v", found, err)
				}
				bt.Close()
			}
		})
	}
}
