package raftnode

import (
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// entryCache holds the newest entries of the member's log, as raft handed
// them to be written, so that raft reading them back (to apply them once
// they commit, which on every member is after they were written, and to
// send appends to a follower) does not open a Pebble iterator and decode
// each entry again: that was 3.7% of the members' CPU at cas-parallel.
// CockroachDB keeps a raft entry cache for the same reason; etcd keeps its
// whole log in memory.
//
// The entries are contiguous and end at the log's last index; their budget
// in bytes bounds the memory, the oldest going first. An entry is shared
// with raft, which never changes an entry once made, so the cache holds no
// copy. It is not safe for concurrent use: logStore guards it.
type entryCache struct {
	ents   []*pb.Entry
	sizes  []uint64 // proto.Size of each entry, as raft's maxSize counts it
	bytes  uint64
	budget uint64
}

// entryCacheBytes bounds the cache. The entries between written and
// applied (or acknowledged by a follower) are what it must hold; a few MiB
// is many Readies of the largest command.
const entryCacheBytes = 4 << 20

// first is the index of the oldest entry held, 0 when empty.
func (c *entryCache) first() uint64 {
	if len(c.ents) == 0 {
		return 0
	}
	return c.ents[0].GetIndex()
}

// append records ents, just written to the log, replacing any cached
// suffix from ents[0] on, as the log's write did. A gap between the cache
// and ents (the log was written past it some other way) empties the cache
// first, so what it holds stays contiguous.
func (c *entryCache) append(ents []*pb.Entry) {
	if len(ents) == 0 {
		return
	}
	lo := ents[0].GetIndex()
	if f := c.first(); f != 0 {
		switch last := f + uint64(len(c.ents)) - 1; {
		case lo <= f:
			c.reset()
		case lo <= last+1:
			c.dropFrom(lo)
		default:
			c.reset()
		}
	}
	for _, e := range ents {
		s := uint64(proto.Size(e))
		c.ents = append(c.ents, e)
		c.sizes = append(c.sizes, s)
		c.bytes += s
	}
	c.trim()
}

// dropFrom forgets the entries from index i on.
func (c *entryCache) dropFrom(i uint64) {
	k := int(i - c.first())
	for _, s := range c.sizes[k:] {
		c.bytes -= s
	}
	clear(c.ents[k:]) // let the dropped entries go
	c.ents, c.sizes = c.ents[:k], c.sizes[:k]
}

// dropTo forgets the entries up to and including index i (the log was
// truncated there).
func (c *entryCache) dropTo(i uint64) {
	f := c.first()
	if f == 0 || i < f {
		return
	}
	k := int(i - f + 1)
	if k >= len(c.ents) {
		c.reset()
		return
	}
	c.dropFront(k)
}

// trim drops the oldest entries until the cache is within its budget.
func (c *entryCache) trim() {
	k := 0
	for c.bytes > c.budget && k < len(c.ents) {
		c.bytes -= c.sizes[k]
		k++
	}
	switch {
	case k == len(c.ents):
		c.reset()
	case k > 0:
		c.dropFrontCounted(k)
	}
}

func (c *entryCache) dropFront(k int) {
	for _, s := range c.sizes[:k] {
		c.bytes -= s
	}
	c.dropFrontCounted(k)
}

// dropFrontCounted removes the first k entries whose bytes were already
// taken off. When most of the backing array is dead it is copied down, so
// a cache that keeps sliding forward does not pin its old entries.
func (c *entryCache) dropFrontCounted(k int) {
	clear(c.ents[:k])
	c.ents, c.sizes = c.ents[k:], c.sizes[k:]
	if len(c.ents) < cap(c.ents)/4 {
		c.ents = append([]*pb.Entry(nil), c.ents...)
		c.sizes = append([]uint64(nil), c.sizes...)
	}
}

func (c *entryCache) reset() {
	c.ents, c.sizes, c.bytes = nil, nil, 0
}

// get returns the entries in [lo, hi) if the cache holds them all, within
// maxSize as raft.Storage.Entries counts it (the first entry whatever its
// size); ok is false when any of them is not held.
func (c *entryCache) get(lo, hi, maxSize uint64) (ents []*pb.Entry, ok bool) {
	f := c.first()
	if f == 0 || lo < f || hi > f+uint64(len(c.ents)) || lo >= hi {
		return nil, false
	}
	from, to := int(lo-f), int(hi-f)
	var size uint64
	end := from
	for end < to {
		size += c.sizes[end]
		if end > from && size > maxSize {
			break
		}
		end++
	}
	// A copy of the slice, not the entries: raft appends to what it gets.
	return append([]*pb.Entry(nil), c.ents[from:end]...), true
}

// term returns the term of the entry at index i if the cache holds it.
func (c *entryCache) term(i uint64) (uint64, bool) {
	f := c.first()
	if f == 0 || i < f || i >= f+uint64(len(c.ents)) {
		return 0, false
	}
	return c.ents[i-f].GetTerm(), true
}
