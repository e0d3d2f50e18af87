package kv

import (
	"encoding/binary"
	"fmt"

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

// AddEvent appends an event to the history. Events of one index keep the
// order they were added in.
func (b *Batch) AddEvent(e Event) error {
	n := b.events[e.Record.Index]
	if n == 0xffff {
		return fmt.Errorf("kv: more than 65535 events at index %d", e.Record.Index)
	}
	b.events[e.Record.Index] = n + 1
	b.buf = encodeEvent(b.buf[:0], e)
	return b.b.Set(eventKey(e.Record.Index, n), b.buf, nil)
}

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

// DeleteResults forgets a client's results with seq in [from, to).
func (b *Batch) DeleteResults(client, from, to uint64) error {
	if from >= to {
		return nil
	}
	return b.b.DeleteRange(resultKey(client, from), resultKey(client, to), nil)
}

// Session returns a client's session header.
func (b *Batch) Session(client uint64) ([]byte, bool, error) {
	return getRaw(b.b, sessionKey(client))
}

// SetSession writes a client's session header and moves it in the
// least-recently-used order from oldStamp (0 if new) to stamp.
func (b *Batch) SetSession(client uint64, header []byte, oldStamp, stamp int64, isNew bool) error {
	if !isNew {
		if err := b.b.Delete(sessionLRUKey(oldStamp, client), nil); err != nil {
			return err
		}
	}
	if err := b.b.Set(sessionLRUKey(stamp, client), nil, nil); err != nil {
		return err
	}
	return b.b.Set(sessionKey(client), header, nil)
}

// DeleteSession forgets a client: its header, its place in the LRU order and
// every result it left.
func (b *Batch) DeleteSession(client uint64, stamp int64) error {
	if err := b.b.Delete(sessionLRUKey(stamp, client), nil); err != nil {
		return err
	}
	if err := b.b.Delete(sessionKey(client), nil); err != nil {
		return err
	}
	return b.b.DeleteRange(resultKey(client, 0), prefixEnd(resultKey(client, 0)[:9]), nil)
}

// OldestSession returns the least recently used client and its stamp.
func (b *Batch) OldestSession() (client uint64, stamp int64, ok bool, err error) {
	it, err := b.b.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixSessionLRU}, UpperBound: []byte{prefixSessionLRU + 1}})
	if err != nil {
		return 0, 0, false, err
	}
	defer it.Close()
	if !it.First() {
		return 0, 0, false, it.Error()
	}
	k := it.Key()
	return binary.BigEndian.Uint64(k[9:]), int64(binary.BigEndian.Uint64(k[1:])), true, nil
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
