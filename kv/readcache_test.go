package kv

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
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

// countStateReads counts the record and tally reads that reach Pebble.
func countStateReads(s *Store) *int {
	n := new(int)
	s.stateReadHook = func([]byte) { *n++ }
	return n
}

// After a thousand acquires and releases on one session, the next
// acquire's reads (the tally, and the record of a key deleted as often)
// are answered from memory, whatever the dead versions left in Pebble's
// memtable.
func TestReadsAfterManyDetachesDoNotReachPebble(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	for i := range 1000 {
		cycle(t, s, "s1", "lock", uint64(i+1))
	}
	reads := countStateReads(s)
	b := s.NewBatch()
	defer b.Close()
	if tally, err := b.Tally("s1"); err != nil || tally != (Tally{}) {
		t.Fatalf("tally of s1 = %+v (%v), want none", tally, err)
	}
	if _, found, err := b.Get("lock"); err != nil || found {
		t.Fatalf("Get(lock): found=%v (%v), want absent", found, err)
	}
	if err := b.Put(Record{Key: "lock", Value: []byte("next"), Index: 2001, CreateIndex: 2001, Session: "s1"}); err != nil {
		t.Fatal(err)
	}
	if *reads != 0 {
		t.Fatalf("an acquire after 1000 hand-offs read Pebble %d times, want 0", *reads)
	}
}

// The cache follows commits, ignores discarded batches and a batch begun
// before an install, and is emptied by an install and by a failed commit.
func TestReadCacheFollowsCommitsDiscardsAndInstalls(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	reads := countStateReads(s)
	rec := func(value string, index uint64) Record {
		return Record{Key: "k", Value: []byte(value), Index: index, CreateIndex: 1, Session: "s1"}
	}
	put := func(r Record, commit bool) {
		t.Helper()
		b := s.NewBatch()
		if err := b.Put(r); err != nil {
			t.Fatal(err)
		}
		if commit {
			mustCommit(t, b, false)
		} else {
			b.Close()
		}
	}
	expect := func(when string, want Record, pebbleReads int) {
		t.Helper()
		*reads = 0
		b := s.NewBatch()
		defer b.Close()
		got, found, err := b.Get("k")
		if err != nil || !found || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: Get(k) = %+v found=%v (%v), want %+v", when, got, found, err, want)
		}
		if tally, err := b.Tally("s1"); err != nil || tally != (Tally{1, uint64(want.AnswerBytes())}) {
			t.Fatalf("%s: tally of s1 = %+v (%v), want one key of %d bytes", when, tally, err, want.AnswerBytes())
		}
		if *reads != pebbleReads {
			t.Fatalf("%s: %d reads reached Pebble, want %d", when, *reads, pebbleReads)
		}
	}

	put(rec("v1", 1), true)
	expect("committed", rec("v1", 1), 0)
	put(rec("discarded", 2), false)
	expect("a batch discarded", rec("v1", 1), 0)

	ss := s.NewStateSnapshot()
	var stream bytes.Buffer
	if _, err := ss.WriteTo(&stream); err != nil {
		t.Fatal(err)
	}
	ss.Close()
	put(rec("v2", 3), true)
	expect("rewritten", rec("v2", 3), 0)
	early := s.NewBatch()
	if _, _, err := early.Get("k"); err != nil {
		t.Fatal(err)
	}
	if err := s.RestoreState(&stream); err != nil {
		t.Fatal(err)
	}
	expect("restored", rec("v1", 1), 2)
	expect("restored, read again", rec("v1", 1), 2) // read but never committed
	// A batch begun before the install read k as v2: committing must not
	// put that into the cache.
	if err := early.Put(Record{Key: "other", Value: []byte("x"), Index: 4, CreateIndex: 4}); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, early, false)
	if n := len(s.cache.m); n != 0 {
		t.Fatalf("a batch begun before the install left %d entries in the cache", n)
	}
	put(rec("v3", 5), true)
	expect("after the install", rec("v3", 5), 0)
}

// After a commit that failed in storage Pebble may hold the batch or not:
// the cache must answer nothing, so reads go to Pebble.
func TestFailedCommitEmptiesTheReadCache(t *testing.T) {
	s, failing := openWithFailingSyncs(t)
	b := s.NewBatch()
	if err := b.Put(Record{Key: "k", Value: []byte("v1"), Index: 1, CreateIndex: 1}); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, b, false)
	if len(s.cache.m) == 0 {
		t.Fatal("a committed put left nothing in the cache")
	}
	failing.Store(true)
	b = s.NewBatch()
	if err := b.Put(Record{Key: "k", Value: []byte("v2"), Index: 2, CreateIndex: 1}); err != nil {
		t.Fatal(err)
	}
	var fatal *FatalError
	if err := b.Commit(true); !errors.As(err, &fatal) {
		t.Fatalf("commit with a failing sync: %v, want a FatalError", err)
	}
	b.Close()
	if n := len(s.cache.m); n != 0 {
		t.Fatalf("the cache kept %d entries after a failed commit", n)
	}
	reads := countStateReads(s)
	b = s.NewBatch()
	defer b.Close()
	if _, _, err := b.Get("k"); err != nil {
		t.Fatal(err)
	}
	if *reads != 1 {
		t.Fatalf("a read after the failure reached Pebble %d times, want 1", *reads)
	}
}

// The cache keeps within its byte bound by dropping the least recently
// used, keeps no value over maxCachedValue, and a large write drops the
// small value cached before it.
func TestReadCacheEvictsUnderItsByteBound(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	key := func(i int) string { return fmt.Sprintf("k/%03d", i) }
	rec := func(i int, value []byte) Record {
		return Record{Key: key(i), Value: value, Index: uint64(i + 1), CreateIndex: uint64(i + 1)}
	}
	one := (&cacheEntry{key: string(recordKey(key(0))), val: encodeRecord(nil, rec(0, []byte("v")))}).cost()
	s.cache.limit = 10 * one
	for i := range 100 {
		b := s.NewBatch()
		if err := b.Put(rec(i, []byte("v"))); err != nil {
			t.Fatal(err)
		}
		mustCommit(t, b, false)
		if s.cache.bytes > s.cache.limit {
			t.Fatalf("after %d puts the cache holds %d bytes, over its bound of %d", i+1, s.cache.bytes, s.cache.limit)
		}
	}
	if n := len(s.cache.m); n != 10 {
		t.Fatalf("the cache holds %d entries, want the 10 that fit", n)
	}
	reads := countStateReads(s)
	b := s.NewBatch()
	for _, i := range []int{99, 90, 89, 0} {
		if r, found, err := b.Get(key(i)); err != nil || !found || string(r.Value) != "v" {
			t.Fatalf("Get(%s) = %+v found=%v (%v)", key(i), r, found, err)
		}
	}
	b.Close()
	if *reads != 2 {
		t.Fatalf("reading the two newest and two evicted keys reached Pebble %d times, want 2", *reads)
	}

	big := bytes.Repeat([]byte("x"), maxCachedValue+1)
	b = s.NewBatch()
	if err := b.Put(rec(99, big)); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, b, false)
	if _, ok := s.cache.m[string(recordKey(key(99)))]; ok {
		t.Fatal("the cache kept a value over maxCachedValue, or the small one it replaced")
	}
	b = s.NewBatch()
	defer b.Close()
	if r, found, err := b.Get(key(99)); err != nil || !found || !bytes.Equal(r.Value, big) {
		t.Fatalf("Get of the large value: found=%v len %d (%v)", found, len(r.Value), err)
	}
}

// A store with the read cache reads, writes and snapshots exactly as one
// without it, through random puts (attached or not, small and large),
// deletes, discarded batches, eviction and restores of an older state.
func TestReadCacheNeverChangesAnAnswer(t *testing.T) {
	seeds := uint64(20)
	if testing.Short() {
		seeds = 5
	}
	keys := []string{"a", "b", "c", "lock", "q/1", "q/2"}
	sessions := []string{"", "s1", "s2"}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 8))
			cached, plain := openMem(t, vfs.NewMem()), openMem(t, vfs.NewMem())
			defer cached.Close()
			defer plain.Close()
			cached.cache.limit = 1 + r.IntN(8)*300 // a few entries: eviction matters
			plain.cache.limit = 0
			stores := []*Store{cached, plain}
			check := func(step int, bs []*Batch) {
				t.Helper()
				for _, k := range keys {
					r0, f0, err0 := bs[0].Get(k)
					r1, f1, err1 := bs[1].Get(k)
					if err0 != nil || err1 != nil || f0 != f1 || !reflect.DeepEqual(r0, r1) {
						t.Fatalf("step %d: Get(%s): cached %s %v (%v), uncached %s %v (%v)", step, k, brief(r0), f0, err0, brief(r1), f1, err1)
					}
				}
				for _, sn := range sessions[1:] {
					t0, err0 := bs[0].Tally(sn)
					t1, err1 := bs[1].Tally(sn)
					if err0 != nil || err1 != nil || t0 != t1 {
						t.Fatalf("step %d: Tally(%s): cached %+v (%v), uncached %+v (%v)", step, sn, t0, err0, t1, err1)
					}
				}
			}
			snapshot := func(s *Store) []byte { return snapshotStream(t, s) }
			var saved [][]byte
			index := uint64(0)
			for step := range 300 {
				if r.IntN(20) == 0 {
					if saved == nil || r.IntN(2) == 0 {
						saved = [][]byte{snapshot(cached), snapshot(plain)}
					} else {
						for i, s := range stores {
							if err := s.RestoreState(bytes.NewReader(saved[i])); err != nil {
								t.Fatal(err)
							}
						}
					}
					continue
				}
				bs := []*Batch{cached.NewBatch(), plain.NewBatch()}
				for range 1 + r.IntN(4) {
					k := keys[r.IntN(len(keys))]
					index++
					if r.IntN(3) == 0 {
						for _, b := range bs {
							if err := b.Delete(k); err != nil {
								t.Fatal(err)
							}
						}
					} else {
						value := []byte(fmt.Sprint(index))
						if r.IntN(10) == 0 {
							value = bytes.Repeat([]byte("x"), maxCachedValue)
						}
						rec := Record{Key: k, Value: value, Index: index, CreateIndex: index, Session: sessions[r.IntN(len(sessions))]}
						for _, b := range bs {
							if err := b.Put(rec); err != nil {
								t.Fatal(err)
							}
						}
					}
					if r.IntN(2) == 0 {
						check(step, bs)
					}
				}
				commit := r.IntN(10) != 0
				for _, b := range bs {
					if commit {
						if err := b.SetApplied(index); err != nil {
							t.Fatal(err)
						}
						mustCommit(t, b, false)
					} else {
						b.Close()
					}
				}
				bs = []*Batch{cached.NewBatch(), plain.NewBatch()}
				check(step, bs)
				bs[0].Close()
				bs[1].Close()
			}
			if a, b := snapshot(cached), snapshot(plain); !bytes.Equal(a, b) {
				t.Fatalf("the cached store's state (%d bytes) differs from the uncached one's (%d bytes)", len(a), len(b))
			}
			if len(plain.cache.m) != 0 {
				t.Fatalf("the uncached store cached %d entries", len(plain.cache.m))
			}
		})
	}
}

// brief names a record without its value, which may be long.
func brief(r Record) string {
	return fmt.Sprintf("{index %d created %d session %q, %d value bytes}", r.Index, r.CreateIndex, r.Session, len(r.Value))
}
