package kv

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Pebble charges its memtables to the block cache. With Pebble's default
// cache (8 MB) the live and the flushing memtable (4 MB each) took all of
// it, so no block was ever kept: every read that reached a table read and
// decompressed its index and data blocks again (a quarter of a member's CPU
// under the lock workloads). Reads of a flushed key must be served from the
// cache while a full memtable is live.
func TestFlushedRecordsAreReadFromTheBlockCache(t *testing.T) {
	s := openMem(t, vfs.NewMem())
	defer s.Close()
	put := func(from, to int, value []byte) {
		b := s.NewBatch()
		for i := from; i < to; i++ {
			if err := b.Put(Record{Key: fmt.Sprintf("k/%06d", i), Value: value, Index: uint64(i + 1), CreateIndex: uint64(i + 1)}); err != nil {
				t.Fatal(err)
			}
		}
		mustCommit(t, b, false)
	}
	put(0, 1000, []byte("flushed"))
	// Write on through several flushes, as a member under load does: the
	// memtables' reservations are what emptied the cache.
	big := make([]byte, 64<<10)
	for i := 0; i < 3*MemTableSize/len(big); i++ {
		put(1000+i, 1001+i, big)
	}
	read := func() {
		for i := 0; i < 1000; i += 10 {
			if _, found, err := s.Get(fmt.Sprintf("k/%06d", i)); err != nil || !found {
				t.Fatalf("k/%06d: found %v, %v", i, found, err)
			}
		}
	}
	read()
	before := s.db.Metrics().BlockCache
	read()
	after := s.db.Metrics().BlockCache
	if misses := after.Misses - before.Misses; misses != 0 || after.Count == 0 {
		mem := s.db.Metrics().MemTable
		t.Fatalf("reading 100 flushed keys a second time missed the block cache %d times (hits %d; %d blocks, %d bytes cached; memtables %d live, %d zombie, %d bytes): the cache keeps no blocks",
			misses, after.Hits-before.Hits, after.Count, after.Size, mem.Count, mem.ZombieCount, mem.Size+mem.ZombieSize)
	}
}
