package kv

import (
	"bytes"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cxkv/cxkv/api/cxkvpb"
)

// Census is a count of what the state holds, for the member's metrics.
type Census struct {
	Keys        int // records
	KeysWithTTL int // records with a TTL (entries of the TTL index)
	Sessions    int // exactly-once client sessions (session headers)
	// OpenSessions are the sessions keys attach to (records under
	// cxkvpb.SessionKeyPrefix); AttachedKeys the keys attached to them.
	OpenSessions int
	AttachedKeys uint64
}

// Census counts the records, TTL index entries and client sessions, and
// calls visit for every record in key order so the caller can classify
// them. It reads one consistent point-in-time view of the database. It
// costs one pass over the records: callers run it on demand and cache the
// result, never per request.
func (s *Store) Census(visit func(Record)) (Census, error) {
	snap := s.db.NewSnapshot()
	defer snap.Close()
	var c Census
	err := scanPrefix(snap, prefixRecord, func(k, v []byte) error {
		c.Keys++
		if bytes.HasPrefix(k[1:], sessionKeyPrefix) {
			c.OpenSessions++
		}
		if visit == nil {
			return nil
		}
		r, err := decodeRecord(string(k[1:]), v)
		if err != nil {
			return err
		}
		visit(r)
		return nil
	})
	if err != nil {
		return c, err
	}
	if err := scanPrefix(snap, prefixTTL, func(_, _ []byte) error { c.KeysWithTTL++; return nil }); err != nil {
		return c, err
	}
	if err := scanPrefix(snap, prefixSession, func(_, _ []byte) error { c.Sessions++; return nil }); err != nil {
		return c, err
	}
	err = scanPrefix(snap, prefixTally, func(k, v []byte) error {
		t, err := getTally(snap, string(k[1:]))
		c.AttachedKeys += t.Keys
		return err
	})
	return c, err
}

var sessionKeyPrefix = []byte(cxkvpb.SessionKeyPrefix)

func scanPrefix(r pebble.Reader, p byte, fn func(k, v []byte) error) error {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return err
		}
		if err := fn(it.Key(), v); err != nil {
			return err
		}
	}
	return it.Error()
}
