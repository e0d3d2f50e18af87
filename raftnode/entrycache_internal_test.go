package raftnode

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cxkv/cxkv/kv"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func cacheEntry(index, term uint64, size int) *pb.Entry {
	return &pb.Entry{Index: proto.Uint64(index), Term: proto.Uint64(term), Type: pb.EntryType_EntryNormal.Enum(), Data: make([]byte, size)}
}

func newTestLogStore(t testing.TB) *logStore {
	t.Helper()
	store, err := kv.Open("db", kv.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	ls, err := openLogStore(store.RaftLog(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// describe renders entries as index/term pairs, for comparing answers.
func describe(ents []*pb.Entry) string {
	s := ""
	for _, e := range ents {
		s += fmt.Sprintf("%d/%d:%d ", e.GetIndex(), e.GetTerm(), len(e.GetData()))
	}
	return s
}

// TestLogStoreEntriesServedFromTheCacheAfterAWrite pins what the cache is
// for: entries just written are read back without the log. Reading them
// with the log's keys gone from Pebble's view would fail, so the store's
// copy is deleted behind the logStore's back.
func TestLogStoreEntriesServedFromTheCacheAfterAWrite(t *testing.T) {
	ls := newTestLogStore(t)
	var ents []*pb.Entry
	for i := uint64(1); i <= 10; i++ {
		ents = append(ents, cacheEntry(i, 1, 100))
	}
	if _, err := ls.persist(ents, nil, true); err != nil {
		t.Fatal(err)
	}
	if err := ls.log.Truncate(1, 10, 1); err != nil { // the store forgets them
		t.Fatal(err)
	}
	got, err := ls.Entries(3, 8, 1<<20)
	if err != nil {
		t.Fatalf("entries [3, 8) just written: %v", err)
	}
	if d, want := describe(got), describe(ents[2:7]); d != want {
		t.Fatalf("entries [3, 8) = %s, want %s", d, want)
	}
	if term, err := ls.Term(5); err != nil || term != 1 {
		t.Fatalf("term of 5 = %d, %v; want 1 from the cache", term, err)
	}
}

// TestLogStoreAnswersAsItsLogDoes runs random appends (with conflicting
// suffixes), truncations and installs through a logStore whose cache holds
// only a few entries, and checks after each that every range and term it
// answers is what a logStore reading the log alone answers.
func TestLogStoreAnswersAsItsLogDoes(t *testing.T) {
	seeds := uint64(20)
	if testing.Short() {
		seeds = 4 // the race pass: each step reads every range back from Pebble
	}
	for seed := uint64(1); seed <= seeds; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed))
			ls := newTestLogStore(t)
			ls.recent.budget = 1000 // a few entries of up to 300 bytes
			bare := &logStore{log: ls.log}
			term := uint64(1)
			for step := 0; step < 200; step++ {
				ls.mu.Lock()
				first, last := ls.truncIndex+1, ls.last
				ls.mu.Unlock()
				switch r := rng.IntN(10); {
				case r < 7: // append, sometimes over a suffix
					from := last + 1
					if last >= first && rng.IntN(3) == 0 {
						from = first + rng.Uint64N(last-first+1)
						term++
					}
					var ents []*pb.Entry
					for i := 0; i < 1+rng.IntN(4); i++ {
						ents = append(ents, cacheEntry(from+uint64(i), term, rng.IntN(300)))
					}
					if _, err := ls.persist(ents, nil, false); err != nil {
						t.Fatal(err)
					}
				case r < 9: // truncate a prefix
					if last < first {
						continue
					}
					idx := first + rng.Uint64N(last-first+1)
					tm, err := ls.Term(idx)
					if err != nil {
						t.Fatal(err)
					}
					if err := ls.truncate(idx, tm); err != nil {
						t.Fatal(err)
					}
				default: // install a snapshot past the end, with an entry after it
					idx := last + 1 + rng.Uint64N(5)
					term++
					meta := &pb.SnapshotMetadata{Index: proto.Uint64(idx), Term: proto.Uint64(term), ConfState: &pb.ConfState{}}
					if err := ls.log.BeginInstall(meta); err != nil {
						t.Fatal(err)
					}
					if err := ls.finishInstall(meta, nil, []*pb.Entry{cacheEntry(idx+1, term, 10)}); err != nil {
						t.Fatal(err)
					}
				}
				ls.mu.Lock()
				bare.truncIndex, bare.truncTerm, bare.last, bare.lastTerm = ls.truncIndex, ls.truncTerm, ls.last, ls.lastTerm
				first, last = ls.truncIndex+1, ls.last
				ls.mu.Unlock()
				for lo := first; lo <= last; lo++ {
					for hi := lo + 1; hi <= last+1; hi++ {
						maxSize := uint64(rng.IntN(800))
						got, gerr := ls.Entries(lo, hi, maxSize)
						want, werr := bare.Entries(lo, hi, maxSize)
						if d, w := describe(got), describe(want); d != w || (gerr == nil) != (werr == nil) {
							t.Fatalf("step %d: entries [%d, %d) max %d = %s (%v), the log has %s (%v)", step, lo, hi, maxSize, d, gerr, w, werr)
						}
					}
					gt, gerr := ls.Term(lo)
					wt, werr := bare.Term(lo)
					if gt != wt || (gerr == nil) != (werr == nil) {
						t.Fatalf("step %d: term of %d = %d (%v), the log has %d (%v)", step, lo, gt, gerr, wt, werr)
					}
				}
				if _, err := ls.Entries(first-1, last+1, 1<<20); first > 1 && err != raft.ErrCompacted {
					t.Fatalf("step %d: entries from %d below the first %d: %v, want ErrCompacted", step, first-1, first, err)
				}
				if ls.recent.bytes > ls.recent.budget && len(ls.recent.ents) > 1 {
					t.Fatalf("step %d: the cache holds %d bytes over its budget %d", step, ls.recent.bytes, ls.recent.budget)
				}
			}
		})
	}
}

// BenchmarkLogStoreEntriesJustWritten reads back 8 entries at a time of
// the last 4096 written, as raft does to apply them once committed: from
// the cache, where it was a Pebble iterator and a decode per entry.
func BenchmarkLogStoreEntriesJustWritten(b *testing.B) {
	ls := newTestLogStore(b)
	const n = 4096
	ents := make([]*pb.Entry, n)
	for i := range ents {
		ents[i] = cacheEntry(uint64(i+1), 1, 200)
	}
	if _, err := ls.persist(ents, nil, false); err != nil {
		b.Fatal(err)
	}
	lo := uint64(1)
	b.ReportAllocs()
	for b.Loop() {
		got, err := ls.Entries(lo, lo+8, 1<<20)
		if err != nil || len(got) != 8 {
			b.Fatalf("entries: %d, %v", len(got), err)
		}
		if lo += 8; lo > n-8 {
			lo = 1
		}
	}
}
