package kv

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/cxkv/cxkv/internal/invariants"
)

// The applier's point reads, from memory. Apply reads records (every put,
// delete and compare reads its key; every attach reads its session's key)
// and session tallies (every attach and detach). Through Pebble each read
// builds an iterator over the memtables and levels, and a read of a key
// whose newest version is a deletion steps through every older version of
// it still in the memtable: a session's tally is deleted when its last key
// goes and a plain lock's record when it is released, so each acquire read
// through one more dead version than the last, until a flush (a tally read
// took 8 ms after 20,000 lock hand-offs, BenchmarkAttachAfterDetaches).
//
// readCache holds the latest committed value, or absence, of recently read
// or written record and tally keys: Pebble's key, its value's bytes as
// stored. It is a cache of the committed state and nothing else, so Apply
// decides from it exactly as from Pebble and the state's bytes do not
// change. What must hold for it never to be stale:
//
//   - Only Batch reads and fills it, and one batch writes at a time (the
//     applier's). A batch reads its own view first (Batch.view: every
//     cached key it read or wrote, as it leaves it), then the cache, then
//     Pebble. Every write of a record or a tally goes through
//     Batch.setState, which keeps the view.
//   - A batch changes the cache only after its commit succeeded, from its
//     view: nothing committed after it began touched those keys, since it
//     is the one writer. A batch discarded changes nothing.
//   - Installing a snapshot empties the cache, and a batch begun before it
//     does not merge (gen), as for the exactly-once table's memo.
//   - After a storage failure Pebble may hold a batch whose commit
//     reported an error, or not: the failed commit empties the cache, and
//     a failed store's cache answers nothing.
//   - It holds at most readCacheBytes (least recently used goes first);
//     dropping any entry is always safe. Values over maxCachedValue are
//     not kept (their writes drop the old entry).
//
// Under -race or -tags invariants every answer from the cache is checked
// against Pebble, and a mismatch panics.
type readCache struct {
	mu    sync.Mutex
	gen   uint64 // bumped by reset
	m     map[string]*cacheEntry
	ring  cacheEntry // the LRU ring's sentinel: ring.next is the newest
	bytes int
	limit int // readCacheBytes; tests set less
}

// readCacheBytes bounds a store's read cache: some 100,000 small records
// and tallies, which covers the keys a busy member's commands touch
// between two uses of the same key.
const readCacheBytes = 16 << 20

// maxCachedValue is the largest value kept. Records and tallies of locks
// and sessions are tens of bytes; a large value is read rarely and would
// push out many small ones.
const maxCachedValue = 4 << 10

// cacheEntryOverhead is what an entry costs beside its key and value: the
// entry, the map's slot and the key's header.
const cacheEntryOverhead = 128

type cacheEntry struct {
	key        string
	val        []byte // immutable once cached: readers use it unlocked
	found      bool
	prev, next *cacheEntry
}

func (e *cacheEntry) cost() int { return len(e.key) + len(e.val) + cacheEntryOverhead }

// viewValue is a cached key as a batch leaves it.
type viewValue struct {
	val   []byte // the batch's own copy
	found bool
}

// begin returns the generation a new batch reads and merges under.
func (c *readCache) begin() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// get returns key's cached value and presence, if the cache holds it for
// generation gen.
func (c *readCache) get(gen uint64, key []byte) (val []byte, found, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return nil, false, false
	}
	e := c.m[string(key)]
	if e == nil {
		return nil, false, false
	}
	c.unlink(e)
	c.pushFront(e)
	return e.val, e.found, true
}

// merge records what a committed batch of generation gen leaves its keys
// as.
func (c *readCache) merge(gen uint64, view map[string]viewValue) {
	if len(view) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return // a snapshot was installed since the batch began: read afresh
	}
	if c.m == nil {
		c.m = map[string]*cacheEntry{}
		c.ring.next, c.ring.prev = &c.ring, &c.ring
	}
	for k, v := range view {
		if e := c.m[k]; e != nil {
			c.remove(e)
		}
		if len(v.val) > maxCachedValue {
			continue
		}
		e := &cacheEntry{key: k, val: v.val, found: v.found}
		c.m[k] = e
		c.bytes += e.cost()
		c.pushFront(e)
	}
	for c.bytes > c.limit && c.ring.prev != &c.ring {
		c.remove(c.ring.prev)
	}
}

// reset empties the cache; batches begun before it merge nothing.
func (c *readCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.m, c.bytes = nil, 0
	c.ring.next, c.ring.prev = nil, nil
}

func (c *readCache) pushFront(e *cacheEntry) {
	e.prev, e.next = &c.ring, c.ring.next
	c.ring.next.prev = e
	c.ring.next = e
}

func (c *readCache) unlink(e *cacheEntry) {
	e.prev.next, e.next.prev = e.next, e.prev
}

func (c *readCache) remove(e *cacheEntry) {
	c.unlink(e)
	delete(c.m, e.key)
	c.bytes -= e.cost()
}

// readState calls fn with the value of a record or tally key as the batch
// leaves it, if it exists, and reports whether it does; fn must not keep
// the value. Each such key is read from Pebble at most once per batch, and
// not at all while the cache holds it.
func (b *Batch) readState(key []byte, fn func(v []byte) error) (bool, error) {
	if v, ok := b.view[string(key)]; ok {
		if !v.found {
			return false, nil
		}
		return true, fn(v.val)
	}
	if b.s.failed.err() == nil {
		if val, found, ok := b.s.cache.get(b.cacheGen, key); ok {
			if invariants.Enabled {
				b.checkCached(key, val, found)
			}
			if !found {
				return false, nil
			}
			return true, fn(val)
		}
	}
	if b.s.stateReadHook != nil {
		b.s.stateReadHook(key)
	}
	var kept []byte
	found, err := readValue(b.b, key, func(v []byte) error {
		kept = append([]byte(nil), v...)
		return fn(kept)
	})
	if err != nil {
		return false, err
	}
	b.keep(key, kept, found)
	return found, nil
}

// setState writes a record or tally key (a deletion if val is nil) and
// keeps the batch's view of it.
func (b *Batch) setState(key, val []byte) error {
	var err error
	if val == nil {
		err = b.b.Delete(key, nil)
	} else {
		err = b.b.Set(key, val, nil)
	}
	if err != nil {
		return err
	}
	b.keep(key, append([]byte(nil), val...), val != nil)
	return nil
}

func (b *Batch) keep(key, val []byte, found bool) {
	if b.view == nil {
		b.view = map[string]viewValue{}
	}
	b.view[string(key)] = viewValue{val: val, found: found}
}

// checkCached panics if the cache's answer for key is not what Pebble
// holds. The batch has not written key (its view would have answered), so
// reading through it reads the committed state.
func (b *Batch) checkCached(key, val []byte, found bool) {
	stored, inPebble, err := getRaw(b.b, key)
	if err != nil {
		return // the read failed, not the cache
	}
	if inPebble != found || !bytes.Equal(stored, val) {
		panic(fmt.Sprintf("kv: read cache holds %q as found=%v %x, Pebble found=%v %x", key, found, val, inPebble, stored))
	}
}
