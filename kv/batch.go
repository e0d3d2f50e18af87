package kv

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// Batch is a group of state writes applied together: all the committed
// entries of one Raft Ready. It is indexed, so reads through it see its own
// earlier writes (a Txn that puts then gets a key, the second of two entries
// that touch one key). Only one Batch should be open for writing at a time:
// the applier's.
type Batch struct {
	s        *Store
	setsAuth bool // Commit must tell the store's auth memo
	b        *pebble.Batch
	// eventN is the next event number at the index of the last event
	// added. Events come in log order, every event of an index before any
	// of the next.
	eventN uint16
	added  []Event // the events of this batch, in log order
	buf    []byte
	hdrBuf []byte // a session header being written (Pebble copies it)
	// view is every record and tally key the batch has read or written,
	// as it leaves them (readcache.go): writing a record after reading it
	// (every put and delete does), a command's plan and the attach that
	// follows, the commands of one batch on a few sessions, each read
	// Pebble once at most. A commit hands it to the store's read cache.
	view     map[string]viewValue
	cacheGen uint64
	memo     *batchMemo // this batch's view of the exactly-once table's memo
	// applied is the index SetApplied set last (if appliedSet): written
	// once, when the batch commits, not once per entry.
	applied    uint64
	appliedSet bool
	// writer says the batch has announced a record key to the floors;
	// raised is where its scans found prefixes' live records to begin in
	// its view, published when it commits (floors.go).
	writer bool
	raised map[*floor]string
}

// seenRecord is what keeping the indexes in step needs of a stored record:
// its presence, session, AnswerBytes and whether it has a TTL.
type seenRecord struct {
	found       bool
	session     string
	answerBytes uint64
	ttl         bool // the record is in the TTL index
}

// NewBatch starts a batch of state writes.
func (s *Store) NewBatch() *Batch {
	return &Batch{s: s, b: s.db.NewIndexedBatch(), cacheGen: s.cache.begin()}
}

// Reserve makes room for what a batch of n entries keeps as it goes: about
// one event and two record keys in its view per write, so neither is
// copied as it grows (they were a tenth of the bytes a member allocated
// per write).
func (b *Batch) Reserve(n int) {
	b.added = slices.Grow(b.added, n)
	if b.view == nil {
		b.view = make(map[string]viewValue, 2*n)
	}
}

// Get reads a record as the batch would leave it.
func (b *Batch) Get(key string) (Record, bool, error) {
	var r Record
	found, err := b.readState(recordKey(key), func(v []byte) (err error) {
		r, err = decodeRecord(key, v)
		return err
	})
	if !found || err != nil {
		return Record{Key: key}, false, err
	}
	return r, true, nil
}

// Put writes a record and keeps the TTL index and the session index
// (attach.go) in step with it. A TTL index entry is deleted only if the
// record it replaces had one: most records never do, and each deletion
// is a memtable entry the commit pays for.
func (b *Batch) Put(r Record) error {
	b.announce(r.Key)
	old, err := b.stored(r.Key)
	if err != nil {
		return err
	}
	if err := b.reattach(r.Key, old, &r); err != nil {
		return err
	}
	b.buf = encodeRecord(b.buf[:0], r)
	if err := b.setState(recordKey(r.Key), b.buf); err != nil {
		return err
	}
	if r.TTLMillis > 0 {
		return b.b.Set(ttlKey(r.Key), nil, nil)
	}
	if old.ttl {
		return b.b.Delete(ttlKey(r.Key), nil)
	}
	return nil
}

// Delete removes a record, its TTL index entry and its session index entry.
func (b *Batch) Delete(key string) error {
	old, err := b.stored(key)
	if err != nil {
		return err
	}
	if err := b.reattach(key, old, nil); err != nil {
		return err
	}
	if err := b.setState(recordKey(key), nil); err != nil {
		return err
	}
	if old.ttl {
		return b.b.Delete(ttlKey(key), nil)
	}
	return nil
}

// MaxEventsPerIndex is the most events one log index can hold: an event's
// number within its index is 16 bits of its key. Callers must refuse a
// command that would make more before they write anything.
const MaxEventsPerIndex = 0xffff

// AddEvent appends an event to the history. Events of one index keep the
// order they were added in.
func (b *Batch) AddEvent(e Event) error {
	if n := len(b.added); n == 0 || e.Record.Index > b.added[n-1].Record.Index {
		b.eventN = 0
	} else if last := b.added[n-1].Record.Index; e.Record.Index < last {
		return fmt.Errorf("kv: an event at index %d after one at index %d: events must be added in log order", e.Record.Index, last)
	}
	n := b.eventN
	if n == MaxEventsPerIndex {
		return fmt.Errorf("kv: more than %d events at index %d", MaxEventsPerIndex, e.Record.Index)
	}
	b.eventN = n + 1
	b.added = append(b.added, e)
	b.buf = encodeEvent(b.buf[:0], e)
	return b.b.Set(eventKey(e.Record.Index, n), b.buf, nil)
}

// Events returns the events added to this batch, in log order. They belong
// to the caller once the batch is committed.
func (b *Batch) Events() []Event { return b.added }

// SetApplied records the index of the last entry this batch applies; it is
// written when the batch commits, with the writes it describes.
func (b *Batch) SetApplied(index uint64) error {
	b.applied, b.appliedSet = index, true
	return nil
}

// flush writes what the batch keeps aside until it commits: the applied
// index, and the exactly-once table's time and floor. Nothing reads them
// through the batch (Store.Applied and Store.SessionClock read the
// committed state; the table reads its memo).
func (b *Batch) flush() error {
	if b.appliedSet {
		if err := b.setUint64(metaKey(metaApplied), b.applied); err != nil {
			return err
		}
		b.appliedSet = false
	}
	if b.memo != nil {
		return b.memo.flush(b)
	}
	return nil
}

// SetConfState stores the Raft configuration with the state it belongs to.
func (b *Batch) SetConfState(data []byte) error {
	return b.b.Set(metaKey(metaConfState), data, nil)
}

// Commit writes the batch. State batches commit without sync: after a crash
// the member replays the synced Raft log from the stored applied index.
func (b *Batch) Commit(sync bool) error {
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	if err := b.flush(); err != nil {
		return err
	}
	if err := b.s.failed.guard(func() error { return b.b.Commit(opt) }); err != nil {
		// Pebble may hold the batch or not: the cache must not answer
		// either way.
		b.s.cache.reset()
		return err
	}
	b.s.cache.merge(b.cacheGen, b.view)
	b.view = nil
	if b.setsAuth {
		b.s.auth.changed()
	}
	b.mergeMemo()
	b.endWrite(true)
	return nil
}

// Close releases the batch; an uncommitted batch is discarded.
func (b *Batch) Close() error {
	b.endWrite(false)
	return b.b.Close()
}

// Empty reports whether the batch holds no writes.
func (b *Batch) Empty() bool {
	return b.b.Empty() && !b.appliedSet && (b.memo == nil || (!b.memo.clockSet && !b.memo.floorSet))
}

// Counter reads a named counter of the state (0 if unset).
func (b *Batch) Counter(name string) (uint64, error) { return getUint64(b.b, metaKey("n/"+name)) }

// SetCounter writes a named counter of the state.
func (b *Batch) SetCounter(name string, v uint64) error {
	return b.setUint64(metaKey("n/"+name), v)
}

// setUint64 writes an 8-byte meta value (read by getUint64 and getInt64).
func (b *Batch) setUint64(key []byte, v uint64) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v)
	return b.b.Set(key, buf[:], nil)
}

// Scan calls fn for every record whose key starts with prefix, in key
// order, as the batch would leave them; it stops at fn's first error. It
// starts at the prefix's floor (floors.go), so it steps over the keys
// deleted below the first live record only once.
func (b *Batch) Scan(prefix string, fn func(Record) error) error {
	lower := recordKey(prefix)
	e, start := b.scanStart(prefix)
	it, err := b.b.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(lower)})
	if err != nil {
		return err
	}
	defer b.s.closeScan(it)
	checkFloor(it, lower, start)
	first := true
	for ok := it.SeekGE(recordKey(start)); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		r, err := decodeRecord(string(it.Key()[1:]), v)
		if err != nil {
			return err
		}
		if first {
			b.raise(e, r.Key)
			first = false
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	if first {
		if end := prefixScanEnd(prefix); end != "" {
			b.raise(e, end)
		}
	}
	return nil
}
