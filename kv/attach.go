package kv

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cxkv/cxkv/api/cxkvpb"
)

// Keys attached to sessions. A record attached to a session (Record.Session)
// is listed under 'a' by its session, and every session with attached keys
// has a tally under 'A': how many keys and how many of their AnswerBytes.
// Batch.Put and Batch.Delete keep both in step with the records, as they
// keep the TTL index, so at every applied index:
//
//   - a key is listed under session S exactly when its record exists and is
//     attached to S;
//   - S's tally counts exactly the keys listed under S and the sum of their
//     AnswerBytes; a session with no attached key has no tally.
//
// Deleting the attached keys when their session goes is the state
// machine's rule (cmpxchg): kv lists them, in key order (Batch.Attached),
// at a cost in the number of attached keys, never a scan of the store.

// Tally is what is attached to one session.
type Tally struct {
	Keys  uint64 // attached keys
	Bytes uint64 // their AnswerBytes, summed
}

// Tally reads a session's tally as the batch would leave it.
func (b *Batch) Tally(session string) (t Tally, err error) {
	_, err = b.readState(tallyKey(session), func(v []byte) (err error) {
		t, err = decodeTally(session, v)
		return err
	})
	return t, err
}

// Attached returns the keys attached to session, in key order, as the batch
// would leave them.
func (b *Batch) Attached(session string) ([]string, error) {
	p := attachedPrefix(session)
	it, err := b.b.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var keys []string
	for ok := it.First(); ok; ok = it.Next() {
		keys = append(keys, string(it.Key()[len(p):]))
	}
	return keys, it.Error()
}

// reattach moves key's entry in the session index from whatever its stored
// record old is attached to (nothing if absent) to next's session (nothing
// when next is nil: the key is being deleted). The caller writes the record.
func (b *Batch) reattach(key string, old seenRecord, next *Record) error {
	if old.found && old.session != "" {
		if err := b.addTally(old.session, -1, -int64(old.answerBytes)); err != nil {
			return err
		}
		if err := b.b.Delete(attachedKey(old.session, key), nil); err != nil {
			return err
		}
	}
	if next == nil || next.Session == "" {
		return nil
	}
	if err := b.addTally(next.Session, 1, int64(next.AnswerBytes())); err != nil {
		return err
	}
	return b.b.Set(attachedKey(next.Session, key), nil, nil)
}

// stored is what keeping the indexes in step needs of key's record as the
// batch leaves it (the value is only measured, never decoded whole).
func (b *Batch) stored(key string) (seenRecord, error) {
	var s seenRecord
	_, err := b.readState(recordKey(key), func(raw []byte) (err error) {
		s, err = peekRecord(key, raw)
		return err
	})
	return s, err
}

func (b *Batch) addTally(session string, keys, bytes int64) error {
	t, err := b.Tally(session)
	if err != nil {
		return err
	}
	if (keys < 0 && t.Keys < uint64(-keys)) || (bytes < 0 && t.Bytes < uint64(-bytes)) {
		return fmt.Errorf("kv: tally of session %q (%d keys, %d bytes) would go below zero", session, t.Keys, t.Bytes)
	}
	t.Keys = uint64(int64(t.Keys) + keys)
	t.Bytes = uint64(int64(t.Bytes) + bytes)
	if t.Keys == 0 {
		return b.setState(tallyKey(session), nil)
	}
	var buf [2 * binary.MaxVarintLen64]byte
	return b.setState(tallyKey(session), binary.AppendUvarint(binary.AppendUvarint(buf[:0], t.Keys), t.Bytes))
}

func getTally(r pebble.Reader, session string) (t Tally, err error) {
	_, err = readValue(r, tallyKey(session), func(v []byte) (err error) {
		t, err = decodeTally(session, v)
		return err
	})
	return t, err
}

func decodeTally(session string, v []byte) (Tally, error) {
	d := decoder{buf: v, what: "session tally"}
	t := Tally{Keys: d.uvarint(), Bytes: d.uvarint()}
	if err := d.finish(); err != nil {
		return Tally{}, fmt.Errorf("kv: session %q: %w", session, err)
	}
	return t, nil
}

// SessionInfo is one session as listed: its key's record and its tally.
type SessionInfo struct {
	ID     string
	Record Record
	Tally  Tally
}

// ListSessions returns the sessions (records under cxkvpb.SessionKeyPrefix)
// whose id starts with prefix and sorts after after, in id order, with
// their tallies, read from one consistent view: up to limit of them and
// maxBytes of their records' AnswerBytes (the first always comes), and
// whether more follow.
func (s *Store) ListSessions(prefix, after string, limit, maxBytes int) ([]SessionInfo, bool, error) {
	if limit <= 0 {
		return nil, false, errors.New("kv: list limit must be positive")
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	lower := recordKey(cxkvpb.SessionKey(prefix))
	if after != "" && after >= prefix {
		lower = append(recordKey(cxkvpb.SessionKey(after)), 0)
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(recordKey(cxkvpb.SessionKey(prefix)))})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	var out []SessionInfo
	size := 0
	for ok := it.First(); ok; ok = it.Next() {
		if len(out) == limit {
			return out, true, nil
		}
		key := string(it.Key()[1:])
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, false, err
		}
		r, err := decodeRecord(key, v)
		if err != nil {
			return nil, false, err
		}
		if size += r.AnswerBytes(); size > maxBytes && len(out) > 0 {
			return out, true, nil
		}
		id := key[len(cxkvpb.SessionKeyPrefix):]
		t, err := getTally(snap, id)
		if err != nil {
			return nil, false, err
		}
		out = append(out, SessionInfo{ID: id, Record: r, Tally: t})
	}
	return out, false, it.Error()
}
