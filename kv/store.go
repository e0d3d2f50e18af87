// Package kv is the Pebble store of one cxkv member: the replicated state
// (records, history, client sessions, applied index), the Raft log (RaftLog)
// and the member's identity. One database holds all of them so a member has
// one fsync domain and one directory; no other package knows its layout.
package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Options configures Open.
type Options struct {
	// FS is the filesystem; nil means the OS. Tests pass a MemFS or an
	// errorfs wrapper to inject faults.
	FS vfs.FS
	// Logger receives Pebble's logging (nil: discarded).
	Logger *slog.Logger
}

// Store is a member's database. Its methods are safe for concurrent use;
// writes to the state go through a Batch, committed by one applier.
type Store struct {
	db    *pebble.DB
	fs    vfs.FS
	dir   string
	auth  authMemo
	table tableMemo // the exactly-once table's hot part (tablememo.go)
	cache readCache // the applier's point reads (readcache.go)
	// scanHook, set only by tests (export_test.go), is told how many
	// internal keys each prefix scan stepped over.
	scanHook func(points uint64)
	// stateReadHook, set only by tests, is told of every record or tally
	// read that reached Pebble (readcache.go).
	stateReadHook func(key []byte)
	floors        floors // where scanned prefixes' live records begin (floors.go)
	failed        failure
}

// blockCacheBytes is the Pebble block cache of one store. Pebble charges
// its memtables to it (the live one and the last flushed one, so two
// MemTableSize at most once they have grown): with Pebble's default of
// 8 MiB no block stayed cached, and every read that reached a table (a
// compare on an absent key, a session's tally, a queue's head) read and
// decompressed its blocks again. It leaves 64 MiB for blocks beside two
// full memtables. The cache is filled on demand, so a small store does not
// grow to it.
const blockCacheBytes = 64<<20 + 2*MemTableSize

// MemTableSize is the size a memtable grows to before Pebble flushes it to
// a table (it starts at 256 KiB and doubles, so an idle store stays small).
// Most of what a write puts in the store lives for seconds: its raft log
// entry (compacted 5,000-15,000 entries later), its event (kept for
// HistoryEntries), its exactly-once result (forgotten when the client
// acknowledges it), the session LRU key it replaces, the record the next
// write of its key overwrites: about 1 KiB of memtable per write, 10-15
// MiB for the log's window. With Pebble's 4 MiB default all of it was
// flushed to tables and compacted again before its deletion caught up:
// 9-14% of the members' CPU at cas-parallel. In a 32 MiB memtable most of
// it dies before the flush, which drops what the deletions cover. A crash
// replays at most this much more WAL on open.
const MemTableSize = 32 << 20

// Open opens or creates the database in dir.
func Open(dir string, opts Options) (*Store, error) {
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	s := &Store{fs: fs, dir: dir}
	s.cache.limit = readCacheBytes
	po := &pebble.Options{FS: walWatch{FS: fs, failed: &s.failed}, Logger: newPebbleLogger(opts.Logger, &s.failed), CacheSize: blockCacheBytes, MemTableSize: MemTableSize}
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("kv: open %s: %w", dir, err)
	}
	s.db = db
	if err := s.clearStaged(); err != nil {
		db.Close()
		return nil, fmt.Errorf("kv: open %s: %w", dir, err)
	}
	return s, nil
}

// Close closes the database. After a write failed inside Pebble's commit
// pipeline (failure.stuck) the database cannot be closed: Close returns
// the failure and leaves it to the process's exit.
func (s *Store) Close() error {
	if s.failed.stuck.Load() {
		return s.failed.err()
	}
	return s.db.Close()
}

// Err is the store's first storage failure, nil while it has none; every
// write after it returns it. It is recorded by whichever goroutine met it:
// a write of ours, the write-ahead log's writer (walWatch), or one of
// Pebble's own (a flush whose MANIFEST write failed, pebbleLogger), where
// no write of ours is there to return it. So a member that writes nothing
// for a while learns of such a failure only by asking.
func (s *Store) Err() error { return s.failed.err() }

// DiskUsage is the bytes the database occupies on disk (WAL, tables,
// manifests).
func (s *Store) DiskUsage() uint64 { return s.db.Metrics().DiskSpaceUsage() }

// Get returns the record of key, and whether it exists.
func (s *Store) Get(key string) (Record, bool, error) { return getRecord(s.db, key) }

// AnswerBytes is at most what the record adds to an answer that carries it:
// its key and value, and room for its numbers and framing.
func (r Record) AnswerBytes() int { return len(r.Key) + len(r.Value) + answerOverhead }

const answerOverhead = 64

// List returns the records whose keys start with prefix and sort after
// after, in key order, and whether more follow: up to limit of them, and no
// more than maxBytes of AnswerBytes, except that the first record always
// comes (a page must make progress).
func (s *Store) List(prefix, after string, limit, maxBytes int) ([]Record, bool, error) {
	if limit <= 0 {
		return nil, false, errors.New("kv: list limit must be positive")
	}
	lower := recordKey(prefix)
	if after != "" && after >= prefix {
		lower = append(recordKey(after), 0)
	}
	fl := s.floors.read(prefix)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(recordKey(prefix))})
	if err != nil {
		return nil, false, err
	}
	defer s.closeScan(it)
	if !s.floors.unchanged(fl) {
		fl = floorRead{prefix: prefix, key: prefix} // lowered since it was read: from the start, and no raise
	}
	// The scan starts at the floor or at lower, whichever is higher; it
	// learns where the prefix's live records begin only if it started at
	// the floor.
	fromFloor := string(lower) <= string(recordKey(fl.key))
	var ok bool
	if fromFloor {
		checkFloor(it, lower, fl.key)
		ok = it.SeekGE(recordKey(fl.key))
	} else {
		ok = it.First()
	}
	var out []Record
	size := 0
	for ; ok; ok = it.Next() {
		if len(out) == limit {
			return out, true, nil
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, false, err
		}
		r, err := decodeRecord(string(it.Key()[1:]), v)
		if err != nil {
			return nil, false, err
		}
		if len(out) == 0 && fromFloor {
			s.floors.raiseRead(fl, r.Key)
		}
		if size += r.AnswerBytes(); size > maxBytes && len(out) > 0 {
			return out, true, nil
		}
		out = append(out, r)
	}
	if err := it.Error(); err != nil {
		return nil, false, err
	}
	if len(out) == 0 && fromFloor {
		if end := prefixScanEnd(prefix); end != "" {
			s.floors.raiseRead(fl, end)
		}
	}
	return out, false, nil
}

// QueueBefore reports whether a precedes b in a queue: the lower create
// index first, the lower key among equals. A queue's head is the record
// under its prefix that no other precedes (cmpxchg's HEAD op, Store.Head).
func QueueBefore(a, b Record) bool {
	return a.CreateIndex < b.CreateIndex || (a.CreateIndex == b.CreateIndex && a.Key < b.Key)
}

// Head returns the record under prefix that precedes every other
// (QueueBefore), and whether there is one: the same answer as the HEAD op
// of a transaction applied now. It reads the prefix's live records, from
// its floor, in pages.
func (s *Store) Head(prefix string) (Record, bool, error) {
	var head Record
	found := false
	after := ""
	for {
		page, more, err := s.List(prefix, after, headPage, math.MaxInt)
		if err != nil {
			return Record{}, false, err
		}
		for _, r := range page {
			if !found || QueueBefore(r, head) {
				head, found = r, true
			}
		}
		if !more || len(page) == 0 {
			return head, found, nil
		}
		after = page[len(page)-1].Key
	}
}

// headPage is the records Head reads at a time.
const headPage = 1000

// Events returns the events with index > afterIndex whose keys start with
// prefix, in log order: up to limit of them and maxBytes of their records'
// AnswerBytes, except that a page never ends inside an index (see PageEvents).
func (s *Store) Events(prefix string, afterIndex uint64, limit, maxBytes int) ([]Event, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: eventKey(afterIndex+1, 0), UpperBound: []byte{prefixEvent + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var p EventPage
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, err
		}
		e, err := decodeEvent(v)
		if err != nil {
			return nil, err
		}
		if !p.Add(e, prefix, limit, maxBytes) {
			break
		}
	}
	return p.Events(), it.Error()
}

// EventPage gathers a page of events read in log order; the store and the
// in-memory feed of recent events page the same way through it.
//
// A page never ends inside one index: a reader resuming after the last index
// it saw must not skip the rest of a transaction. So the bounds apply at
// index boundaries: the page takes whole indexes while they fit in limit
// events and maxBytes of AnswerBytes, and always its first index, whatever
// its size. Apply keeps one index's events within one answer (each carries a
// record the Txn's answer carries too, and a session's end is bounded by
// the session limits, cmpxchg.MaxSessionBytes), so the first index fits a
// message.
type EventPage struct {
	out        []Event
	size       int
	last       uint64
	done, full bool
	cut        int // len(out) before the index being added
	cutSize    int
}

// Add offers the next event in log order (those outside prefix count only
// for where indexes end) and reports whether the caller should go on.
func (p *EventPage) Add(e Event, prefix string, limit, maxBytes int) bool {
	if p.done {
		return false
	}
	if e.Record.Index != p.last {
		if p.full || len(p.out) >= limit {
			p.done = true
			return false
		}
		p.cut, p.cutSize, p.last = len(p.out), p.size, e.Record.Index
	}
	if !strings.HasPrefix(e.Record.Key, prefix) {
		return true
	}
	p.out = append(p.out, e)
	p.size += e.Record.AnswerBytes()
	if p.size > maxBytes && p.cut > 0 {
		// This index does not fit behind the ones before it: it starts
		// the next page.
		p.out, p.size, p.done = p.out[:p.cut], p.cutSize, true
		return false
	}
	if p.size >= maxBytes {
		p.full = true
	}
	return true
}

// Events is the page.
func (p *EventPage) Events() []Event { return p.out }

// FirstEventIndex is the oldest index whose events are still held: a watcher
// may start from FirstEventIndex-1 or later.
func (s *Store) FirstEventIndex() (uint64, error) {
	floor, err := getUint64(s.db, metaKey(metaEventFloor))
	return floor + 1, err
}

// CompactEvents forgets the history below index.
func (s *Store) CompactEvents(below uint64) error {
	floor, err := getUint64(s.db, metaKey(metaEventFloor))
	if err != nil || below <= floor+1 {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(eventKey(0, 0), eventKey(below, 0), nil); err != nil {
		return err
	}
	if err := b.Set(metaKey(metaEventFloor), binary.BigEndian.AppendUint64(nil, below-1), nil); err != nil {
		return err
	}
	return s.failed.guard(func() error { return b.Commit(pebble.NoSync) })
}

// Applied is the index of the last entry applied to the state.
func (s *Store) Applied() (uint64, error) { return getUint64(s.db, metaKey(metaApplied)) }

// ConfState is the Raft configuration stored with the state (nil if none).
func (s *Store) ConfState() ([]byte, error) { return getBytes(s.db, metaKey(metaConfState)) }

// TTLRecords calls fn for every record that has a TTL, in key order.
func (s *Store) TTLRecords(fn func(Record) error) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixTTL}, UpperBound: []byte{prefixTTL + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		r, found, err := s.Get(string(it.Key()[1:]))
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("kv: TTL index names %q but it has no record", it.Key()[1:])
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return it.Error()
}

// closeScan closes a prefix scan's iterator, telling the test hook what
// it stepped over.
func (s *Store) closeScan(it *pebble.Iterator) {
	if s.scanHook != nil {
		s.scanHook(it.Stats().InternalStats.PointCount)
	}
	it.Close()
}

// readValue calls fn with the value of key in place, if it exists, and
// reports whether it does. The value is valid only during fn: Pebble owns
// it, so fn copies what it keeps (decoding usually copies anyway, and this
// saves a second copy per read).
func readValue(r pebble.Reader, key []byte, fn func(v []byte) error) (bool, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	err = fn(v)
	if cerr := closer.Close(); err == nil {
		err = cerr
	}
	return true, err
}

func getRaw(r pebble.Reader, key []byte) (out []byte, found bool, err error) {
	found, err = readValue(r, key, func(v []byte) error {
		out = append([]byte(nil), v...)
		return nil
	})
	return out, found, err
}

func getRecord(r pebble.Reader, key string) (Record, bool, error) {
	var rec Record
	found, err := readValue(r, recordKey(key), func(v []byte) (err error) {
		rec, err = decodeRecord(key, v)
		return err
	})
	if !found || err != nil {
		return Record{Key: key}, false, err
	}
	return rec, true, nil
}

// getUint64 reads an 8-byte meta value, 0 if absent.
func getUint64(r pebble.Reader, key []byte) (uint64, error) {
	n, _, err := getInt64(r, key)
	return uint64(n), err
}

// getInt64 reads an 8-byte meta value and whether it exists.
func getInt64(r pebble.Reader, key []byte) (n int64, found bool, err error) {
	found, err = readValue(r, key, func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("kv: %q holds %d bytes, want 8", key, len(v))
		}
		n = int64(binary.BigEndian.Uint64(v))
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return n, found, nil
}

func getBytes(r pebble.Reader, key []byte) ([]byte, error) {
	v, _, err := getRaw(r, key)
	return v, err
}
