package kv

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
)

// Batch is a group of state writes applied together: all the committed
// entries of one Raft Ready. It is indexed, so reads through it see its own
// earlier writes (a Txn that puts then gets a key, the second of two entries
// that touch one key). Only one Batch should be open for writing at a time:
// the applier's.
type Batch struct {
	b      *pebble.Batch
	events map[uint64]uint16 // next event number per index in this batch
	added  []Event           // the events of this batch, in log order
	buf    []byte
}

// NewBatch starts a batch of state writes.
func (s *Store) NewBatch() *Batch {
	return &Batch{b: s.db.NewIndexedBatch(), events: map[uint64]uint16{}}
}

// Get reads a record as the batch would leave it.
func (b *Batch) Get(key string) (Record, bool, error) { return getRecord(b.b, key) }

// Put writes a record and keeps the TTL index in step with it.
func (b *Batch) Put(r Record) error {
	b.buf = encodeRecord(b.buf[:0], r)
	if err := b.b.Set(recordKey(r.Key), b.buf, nil); err != nil {
		return err
	}
	if r.TTLMillis > 0 {
		return b.b.Set(ttlKey(r.Key), nil, nil)
	}
	return b.b.Delete(ttlKey(r.Key), nil)
}

// Delete removes a record and its TTL index entry.
func (b *Batch) Delete(key string) error {
	if err := b.b.Delete(recordKey(key), nil); err != nil {
		return err
	}
	return b.b.Delete(ttlKey(key), nil)
}

// MaxEventsPerIndex is the most events one log index can hold: an event's
// number within its index is 16 bits of its key. Callers must refuse a
// command that would make more before they write anything.
const MaxEventsPerIndex = 0xffff

// AddEvent appends an event to the history. Events of one index keep the
// order they were added in.
func (b *Batch) AddEvent(e Event) error {
	n := b.events[e.Record.Index]
	if n == MaxEventsPerIndex {
		return fmt.Errorf("kv: more than %d events at index %d", MaxEventsPerIndex, e.Record.Index)
	}
	b.events[e.Record.Index] = n + 1
	b.added = append(b.added, e)
	b.buf = encodeEvent(b.buf[:0], e)
	return b.b.Set(eventKey(e.Record.Index, n), b.buf, nil)
}

// Events returns the events added to this batch, in log order. They belong
// to the caller once the batch is committed.
func (b *Batch) Events() []Event { return b.added }

// SetApplied records the index of the last entry this batch applies.
func (b *Batch) SetApplied(index uint64) error {
	return b.b.Set(metaKey(metaApplied), binary.BigEndian.AppendUint64(nil, index), nil)
}

// SetConfState stores the Raft configuration with the state it belongs to.
func (b *Batch) SetConfState(data []byte) error {
	return b.b.Set(metaKey(metaConfState), data, nil)
}

// Result returns the remembered result of a client's write.
func (b *Batch) Result(client, seq uint64) ([]byte, bool, error) {
	return getRaw(b.b, resultKey(client, seq))
}

// SetResult remembers the result of a client's write.
func (b *Batch) SetResult(client, seq uint64, result []byte) error {
	return b.b.Set(resultKey(client, seq), result, nil)
}

// maxPointDeletes is how many results DeleteResults forgets one key at a
// time before it falls back to one range deletion. A range tombstone in the
// memtable makes every later read of the state re-fragment all tombstones
// there until the next flush, so one per command turns each read O(commands
// since the flush); point deletions cost one batch entry each and nothing
// after. The bound is one session's results at the default
// MaxResultsPerSession, so the range form is left for callers that cannot
// say where a client's results end.
const maxPointDeletes = 1024

// DeleteResults forgets a client's results with seq in [first, last]. The
// caller passes the tightest range it knows holds them: the cost is that of
// the range, whether or not the results exist.
func (b *Batch) DeleteResults(client, first, last uint64) error {
	if first > last {
		return nil
	}
	if last-first < maxPointDeletes {
		k := resultKey(client, 0)
		for seq := first; ; seq++ {
			binary.BigEndian.PutUint64(k[9:], seq)
			if err := b.b.Delete(k, nil); err != nil {
				return err
			}
			if seq == last {
				return nil
			}
		}
	}
	end := prefixEnd(resultKey(client, 0)[:9])
	if last < math.MaxUint64 {
		end = resultKey(client, last+1)
	}
	return b.b.DeleteRange(resultKey(client, first), end, nil)
}

// Session returns a client's session header.
func (b *Batch) Session(client uint64) ([]byte, bool, error) {
	return getRaw(b.b, sessionKey(client))
}

// SetSession writes a client's session header and moves it in the
// least-recently-used order from oldStamp (ignored if new) to stamp.
func (b *Batch) SetSession(client uint64, header []byte, oldStamp, stamp int64, isNew bool) error {
	if isNew || oldStamp != stamp {
		if !isNew {
			if err := b.b.Delete(sessionLRUKey(oldStamp, client), nil); err != nil {
				return err
			}
		}
		if err := b.b.Set(sessionLRUKey(stamp, client), nil, nil); err != nil {
			return err
		}
	}
	return b.b.Set(sessionKey(client), header, nil)
}

// DeleteSession forgets a client's header and its place in the LRU order.
// Its results are the caller's to forget, with DeleteResults: only the
// caller can read the header that says where they are.
func (b *Batch) DeleteSession(client uint64, stamp int64) error {
	if err := b.b.Delete(sessionLRUKey(stamp, client), nil); err != nil {
		return err
	}
	return b.b.Delete(sessionKey(client), nil)
}

// OldestSession returns the least recently used client and its stamp: the
// first in the LRU order, which puts negative stamps after all others.
func (b *Batch) OldestSession() (client uint64, stamp int64, ok bool, err error) {
	it, err := b.newLRUIter()
	if err != nil {
		return 0, 0, false, err
	}
	defer it.Close()
	if !it.First() {
		return 0, 0, false, it.Error()
	}
	client, stamp = decodeLRUKey(it.Key())
	return client, stamp, true, nil
}

// LowestSessionStamp returns the smallest stamp of any session as a signed
// number, which is OldestSession's only when no stamp is negative.
func (b *Batch) LowestSessionStamp() (stamp int64, ok bool, err error) {
	it, err := b.newLRUIter()
	if err != nil {
		return 0, false, err
	}
	defer it.Close()
	if !it.First() {
		return 0, false, it.Error()
	}
	_, stamp = decodeLRUKey(it.Key())
	if stamp < 0 {
		return stamp, true, nil // every stamp is negative; the order is theirs
	}
	if it.SeekGE(sessionLRUKey(math.MinInt64, 0)) {
		_, stamp = decodeLRUKey(it.Key())
	}
	return stamp, true, it.Error()
}

func (b *Batch) newLRUIter() (*pebble.Iterator, error) {
	return b.b.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixSessionLRU}, UpperBound: []byte{prefixSessionLRU + 1}})
}

func decodeLRUKey(k []byte) (client uint64, stamp int64) {
	return binary.BigEndian.Uint64(k[9:]), int64(binary.BigEndian.Uint64(k[1:]))
}

// SessionFloor returns the stored lower bound of every session's stamp, and
// false if none is stored (then nothing is known).
func (b *Batch) SessionFloor() (int64, bool, error) {
	v, ok, err := getRaw(b.b, metaKey(metaSessionFloor))
	if !ok || err != nil {
		return 0, false, err
	}
	if len(v) != 8 {
		return 0, false, fmt.Errorf("kv: session floor holds %d bytes, want 8", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

// SetSessionFloor stores a lower bound of every session's stamp. The caller
// keeps it one: lowered before any session is stamped below it.
func (b *Batch) SetSessionFloor(stamp int64) error {
	return b.b.Set(metaKey(metaSessionFloor), binary.BigEndian.AppendUint64(nil, uint64(stamp)), nil)
}

// Commit writes the batch. State batches commit without sync: after a crash
// the member replays the synced Raft log from the stored applied index.
func (b *Batch) Commit(sync bool) error {
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	return b.b.Commit(opt)
}

// Close releases the batch; an uncommitted batch is discarded.
func (b *Batch) Close() error { return b.b.Close() }

// Empty reports whether the batch holds no writes.
func (b *Batch) Empty() bool { return b.b.Empty() }

// Counter reads a named counter of the state (0 if unset).
func (b *Batch) Counter(name string) (uint64, error) { return getUint64(b.b, metaKey("n/"+name)) }

// SetCounter writes a named counter of the state.
func (b *Batch) SetCounter(name string, v uint64) error {
	return b.b.Set(metaKey("n/"+name), binary.BigEndian.AppendUint64(nil, v), nil)
}
