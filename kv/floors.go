package kv

import (
	"fmt"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cxkv/cxkv/internal/invariants"
)

// Floors of scanned prefixes, in memory. A queue's entries (a lock's
// NAME/.lock/<id>) are created once and deleted once, and every deleted one
// leaves a SET and a DEL in the memtable until a flush drops them: a scan
// of the prefix (HEAD in Apply on every member, a waiter's List) stepped
// over all of them, a cost that grew with the queue's history, not with
// the queue. A floor remembers where the prefix's live records begin, so a
// scan starts there.
//
// For a tracked prefix P, the floor F is a key such that no live record
// under P sorts below F. It is derived from the state and is not part of
// it: losing a floor (eviction, restart, a snapshot install) costs one full
// scan, never an answer, and Apply reads through it to the same answer as
// without it, so Apply stays a function of (state, entry).
//
// What keeps F true. Call a record key "announced" once the applying
// batch's Put of it has returned, until the batch commits or is discarded.
// The invariant I, at every point outside floors.mu, for every tracked
// (P, F): every key under P that is live in the committed state or
// announced sorts at or above F.
//
//   - Put(K) lowers F to K for every tracked prefix of K with K < F, under
//     mu, before the batch can commit K: K is at or above F from the moment
//     it is announced, and committing only turns announced keys into live
//     ones. Deletes only shrink the live set. A lowering bumps the floor's
//     gen.
//   - An entry is created with F = P (nothing known), which holds for any
//     state; eviction and clearing drop constraints. A snapshot install
//     clears the floors before and after Pebble ingests the new state, and
//     counts as a writer (below) in between.
//   - Apply's own raise. A Batch.Scan that starts at a valid start and
//     finds its first live record L (or none: the prefix's end) learns that
//     [P, L) is dead in the batch's view. That view includes uncommitted
//     deletes, so the raise is kept in the batch (Batch.raised), lowered by
//     the batch's later puts like F, and published (F = max(F, raised))
//     after the batch commits: the committed state is then the batch's
//     view, and nothing is announced (one batch writes at a time).
//   - A reader's raise. A Store.List reads (F, gen) and the writers' count
//     and sequence under mu (t1), opens its iterator (t2), scans, and
//     publishes its first live key L under mu (t3) only if at t1 no writer
//     was open (no batch had announced a key, no install was under way) and
//     the writer sequence, the entry and its gen are unchanged at t3. Then
//     no key was announced during [t1, t3] (a batch's first Put bumps the
//     sequence; so does its commit or discard), so the keys live or
//     announced at t3 are those live at t2 minus deletions, none of them
//     below L.
//
// Why a reader may scan from the F it read (happens-before): the reader
// reads (F, gen) at t1 under mu, opens its iterator at t2 (Pebble fixes the
// iterator's view then), and at t2' re-reads the entry and gen under mu.
// Let K be live under P in the view at t2. If K's Put returned before t1
// (mu orders it before the read), K was live or announced at t1, so K >= F
// by I. Otherwise K's Put ran between t1 and t2 (it committed before t2):
// it either lowered F, bumping gen before t2' (seen: the reader falls back
// to the prefix's start), or found K >= F at that moment, and F had only
// risen since t1 (a lowering bumps gen; a clear or eviction replaces the
// entry, which the reader also checks), so K >= F(t1). Hence every live
// key is at or above F(t1), and the scan from F(t1) answers as a scan from
// P.
type floors struct {
	mu       sync.Mutex
	byPrefix map[string]*floor
	lens     map[int]int // the lengths of the tracked prefixes, with how many of each
	writing  int         // open writers: batches that have announced a record key, an install
	wseq     uint64      // bumped when a writer begins or ends
	limit    int         // the most floors kept; 0 means maxFloors (tests lower it)
}

type floor struct {
	key string // F: no live record under the prefix sorts below it
	gen uint64 // bumped by every lowering of key
}

// maxFloors bounds the floors' memory: a floor is a prefix and a key.
// Dropping any of them is always safe.
const maxFloors = 4096

// tracked returns prefix's floor, creating it with nothing known (and
// evicting another if full). The caller holds mu.
func (f *floors) tracked(prefix string) *floor {
	if e := f.byPrefix[prefix]; e != nil {
		return e
	}
	if f.byPrefix == nil {
		f.byPrefix, f.lens = map[string]*floor{}, map[int]int{}
	}
	limit := f.limit
	if limit <= 0 {
		limit = maxFloors
	}
	for p := range f.byPrefix {
		if len(f.byPrefix) < limit {
			break
		}
		f.drop(p)
	}
	e := &floor{key: prefix}
	f.byPrefix[prefix] = e
	f.lens[len(prefix)]++
	return e
}

func (f *floors) drop(prefix string) {
	delete(f.byPrefix, prefix)
	if f.lens[len(prefix)]--; f.lens[len(prefix)] == 0 {
		delete(f.lens, len(prefix))
	}
}

// clear forgets every floor. The caller holds mu.
func (f *floors) clear() { f.byPrefix, f.lens = nil, nil }

// beginInstall and endInstall bracket a change of the whole state outside
// Batch.Put (a snapshot install).
func (f *floors) beginInstall() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clear()
	f.writing++
	f.wseq++
}

func (f *floors) endInstall() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clear()
	f.writing--
	f.wseq++
}

// announce announces the record key key: it lowers every tracked floor above
// it, and the batch's own raises. A batch's first put makes it a writer.
func (b *Batch) announce(key string) {
	f := &b.s.floors
	f.mu.Lock()
	defer f.mu.Unlock()
	if !b.writer {
		b.writer = true
		f.writing++
		f.wseq++
	}
	for l := range f.lens {
		if l > len(key) {
			continue
		}
		e := f.byPrefix[key[:l]]
		if e == nil {
			continue
		}
		if key < e.key {
			e.key = key
			e.gen++
		}
		if r, ok := b.raised[e]; ok && key < r {
			b.raised[e] = key
		}
	}
}

// endWrite publishes the batch's raises if it committed, and ends it as a
// writer.
func (b *Batch) endWrite(committed bool) {
	if !b.writer && (!committed || len(b.raised) == 0) {
		b.raised = nil
		return
	}
	f := &b.s.floors
	f.mu.Lock()
	defer f.mu.Unlock()
	if committed {
		for e, r := range b.raised {
			if r > e.key {
				e.key = r // an entry evicted since is dropped with it
			}
		}
	}
	b.raised = nil
	if b.writer {
		b.writer = false
		f.writing--
		f.wseq++
	}
}

// scanStart is where a Batch.Scan of prefix starts: the floor, or the
// batch's own raise above it.
func (b *Batch) scanStart(prefix string) (*floor, string) {
	f := &b.s.floors
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.tracked(prefix)
	start := e.key
	if r, ok := b.raised[e]; ok && r > start {
		start = r
	}
	return e, start
}

// raise keeps, for the batch, that no record under e's prefix sorts below
// key in the batch's view.
func (b *Batch) raise(e *floor, key string) {
	if b.raised == nil {
		b.raised = map[*floor]string{}
	}
	if key > b.raised[e] {
		b.raised[e] = key
	}
}

// floorRead is what a reader took of a floor at t1 (see floors).
type floorRead struct {
	prefix   string
	e        *floor
	key      string
	gen      uint64
	wseq     uint64
	canRaise bool
}

// read takes prefix's floor (t1).
func (f *floors) read(prefix string) floorRead {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := floorRead{prefix: prefix, key: prefix, e: f.byPrefix[prefix], wseq: f.wseq, canRaise: f.writing == 0}
	if r.e != nil {
		r.key, r.gen = r.e.key, r.e.gen
	}
	return r
}

// unchanged reports whether the entry read is still the prefix's and was
// not lowered since (t2', after the reader's iterator is open).
func (f *floors) unchanged(r floorRead) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byPrefix[r.prefix] == r.e && (r.e == nil || r.e.gen == r.gen)
}

// raiseRead publishes a reader's finding that no live record under the
// prefix sorts below key, if nothing was announced since it read (t3).
func (f *floors) raiseRead(r floorRead, key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !r.canRaise || f.wseq != r.wseq || f.byPrefix[r.prefix] != r.e || (r.e != nil && r.e.gen != r.gen) {
		return
	}
	e := r.e
	if e == nil {
		e = f.tracked(r.prefix)
	}
	if key > e.key {
		e.key = key
	}
}

// prefixScanEnd is the floor of a prefix with no live record: the first key
// above every key under it ("" if none is: nothing to raise to).
func prefixScanEnd(prefix string) string { return string(prefixEnd([]byte(prefix))) }

// checkFloor panics if the iterator's view holds a record in [lower,
// recordKey(start)): a floor that hid a live record. Only in invariants
// builds, on every scan that skipped something.
func checkFloor(it *pebble.Iterator, lower []byte, start string) {
	if !invariants.Enabled || string(lower) >= string(recordKey(start)) {
		return
	}
	c, err := it.Clone(pebble.CloneOptions{IterOptions: &pebble.IterOptions{LowerBound: lower, UpperBound: recordKey(start)}})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	if c.First() {
		panic(fmt.Sprintf("kv: floor %q hides the live record %q", start, c.Key()[1:]))
	}
}
