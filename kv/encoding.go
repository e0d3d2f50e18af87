package kv

import (
	"encoding/binary"
	"fmt"
)

// Records and events use a small hand-written encoding: a version byte, then
// uvarints and length-prefixed bytes. Apply decodes a record for every write,
// so this path avoids reflection and allocates only the value.

// A record is written in version 1 unless it is attached to a session or
// has an owner; version 2 carries the session's id first, so a writer can
// learn a stored record's session and value size (peekRecord) without
// copying its value; version 3 carries the session's id and then the owner.
// Records of every version are read; one of an unknown version is refused.
const (
	encodingVersion         = 1
	encodingVersionAttached = 2
	encodingVersionOwned    = 3
)

// Record is the state of one key. It mirrors cxkvpb.Record without importing
// the API: kv sits below everything.
type Record struct {
	Key             string
	Value           []byte
	Index           uint64
	CreateIndex     uint64
	TTLMillis       int64
	ExpiresAtUnixMs int64
	// Session is the id of the session the key is attached to, "" for none.
	Session string
	// Owner is the identity that created the key, kept for a session's key
	// only (the state machine decides which): "" for none. It is not part of
	// the record a client reads, so it does not count in AnswerBytes.
	Owner string
}

// EventType says what an event did to its key. Its names are the API's
// (cxkvpb.Event_Type.Name); kv only stores the number.
type EventType uint8

const (
	EventPut EventType = iota
	EventDelete
	EventExpire
)

// Event is one change in the history. Record.Index is the index of the entry
// that produced it; for deletes and expiries Record holds the removed value.
type Event struct {
	Type   EventType
	Record Record
}

// encodeRecord encodes everything but the key, which lives in the Pebble key.
func encodeRecord(dst []byte, r Record) []byte {
	switch {
	case r.Owner != "":
		dst = append(dst, encodingVersionOwned)
		dst = binary.AppendUvarint(dst, uint64(len(r.Session)))
		dst = append(dst, r.Session...)
		dst = binary.AppendUvarint(dst, uint64(len(r.Owner)))
		dst = append(dst, r.Owner...)
	case r.Session != "":
		dst = append(dst, encodingVersionAttached)
		dst = binary.AppendUvarint(dst, uint64(len(r.Session)))
		dst = append(dst, r.Session...)
	default:
		dst = append(dst, encodingVersion)
	}
	dst = binary.AppendUvarint(dst, r.Index)
	dst = binary.AppendUvarint(dst, r.CreateIndex)
	dst = binary.AppendVarint(dst, r.TTLMillis)
	dst = binary.AppendVarint(dst, r.ExpiresAtUnixMs)
	dst = binary.AppendUvarint(dst, uint64(len(r.Value)))
	return append(dst, r.Value...)
}

// decodeRecord decodes what encodeRecord wrote; the value is copied, so the
// record outlives buf.
func decodeRecord(key string, buf []byte) (Record, error) {
	r := Record{Key: key}
	d := decoder{buf: buf, what: "record"}
	var err error
	if r.Session, r.Owner, err = d.header(key); err != nil {
		return Record{}, err
	}
	r.Index = d.uvarint()
	r.CreateIndex = d.uvarint()
	r.TTLMillis = d.varint()
	r.ExpiresAtUnixMs = d.varint()
	r.Value = d.bytes()
	if err := d.finish(); err != nil {
		return Record{}, fmt.Errorf("kv: record of %q: %w", key, err)
	}
	return r, nil
}

// peekRecord reads what keeping the session and TTL indexes in step needs
// of a stored record: its session, its AnswerBytes and whether it has a
// TTL, without copying the value.
func peekRecord(key string, buf []byte) (seenRecord, error) {
	d := decoder{buf: buf, what: "record"}
	session, _, err := d.header(key)
	if err != nil {
		return seenRecord{}, err
	}
	d.uvarint()
	d.uvarint()
	ttl := d.varint()
	d.varint()
	n := d.uvarint()
	if d.err == nil && n != uint64(len(d.buf)) {
		d.fail("length")
	}
	if d.err != nil {
		return seenRecord{}, fmt.Errorf("kv: record of %q: %w", key, d.err)
	}
	return seenRecord{found: true, session: session, answerBytes: uint64(len(key)) + n + answerOverhead, ttl: ttl > 0}, nil
}

// header reads a record's version byte and the strings that version
// carries before the fixed fields.
func (d *decoder) header(key string) (session, owner string, err error) {
	switch v := d.byte(); {
	case d.err != nil, v == encodingVersion:
	case v == encodingVersionAttached:
		session = string(d.bytes())
	case v == encodingVersionOwned:
		session = string(d.bytes())
		owner = string(d.bytes())
	default:
		return "", "", fmt.Errorf("kv: record of %q has encoding version %d; this build reads %d to %d", key, v, encodingVersion, encodingVersionOwned)
	}
	return session, owner, nil
}

func encodeEvent(dst []byte, e Event) []byte {
	dst = append(dst, byte(e.Type))
	dst = binary.AppendUvarint(dst, uint64(len(e.Record.Key)))
	dst = append(dst, e.Record.Key...)
	return encodeRecord(dst, e.Record)
}

func decodeEvent(buf []byte) (Event, error) {
	d := decoder{buf: buf, what: "event"}
	t := EventType(d.byte())
	key := string(d.bytes())
	if d.err != nil {
		return Event{}, fmt.Errorf("kv: %w", d.err)
	}
	if t > EventExpire {
		return Event{}, fmt.Errorf("kv: event of %q has unknown type %d", key, t)
	}
	r, err := decodeRecord(key, d.buf)
	if err != nil {
		return Event{}, err
	}
	return Event{Type: t, Record: r}, nil
}

// decoder reads fields in order and remembers the first error, so callers
// check once at the end.
type decoder struct {
	buf  []byte
	what string
	err  error
}

func (d *decoder) fail(field string) {
	if d.err == nil {
		d.err = fmt.Errorf("malformed %s: truncated or overlong %s", d.what, field)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.buf) == 0 {
		d.fail("header")
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail("integer")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail("integer")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.buf)) {
		d.fail("length")
		return nil
	}
	b := append([]byte(nil), d.buf[:n]...)
	d.buf = d.buf[n:]
	return b
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.buf) != 0 {
		d.err = fmt.Errorf("malformed %s: %d trailing bytes", d.what, len(d.buf))
	}
	return d.err
}
