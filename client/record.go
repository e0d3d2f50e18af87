package client

import (
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
)

// Record is a key's state. Index is the log index of the write that last
// changed the key; 0 means the key is absent. Indexes only grow, so an index
// is also a fencing token.
type Record struct {
	Key         string
	Value       []byte
	Index       uint64
	CreateIndex uint64
	// TTL is the time the key lives unless renewed; 0 for none.
	TTL time.Duration
	// ExpiresAt is when the leader that accepted the write expected the key
	// to expire, for display: expiry runs on the leader's monotonic clock
	// and comes late, never early, after a failover.
	ExpiresAt time.Time
	// Session is the id of the session the key is attached to ("" for
	// none): the key is deleted with it (see SessionKey).
	Session string
}

// Exists reports whether the key was present.
func (r Record) Exists() bool { return r.Index != 0 }

func fromProto(p *cxkvpb.Record) Record {
	if p == nil {
		return Record{}
	}
	r := Record{Key: p.GetKey(), Value: p.GetValue(), Index: p.GetIndex(), CreateIndex: p.GetCreateIndex(), Session: p.GetSession()}
	if p.GetTtlMs() > 0 {
		r.TTL = time.Duration(p.GetTtlMs()) * time.Millisecond
		r.ExpiresAt = time.UnixMilli(p.GetExpiresAtUnixMs())
	}
	return r
}

// EventType says what changed a key. Its values are the wire's
// (cxkvpb.Event_Type), so a type this build does not know keeps its value.
type EventType int

const (
	EventPut    = EventType(cxkvpb.Event_PUT)    // the key was written
	EventDelete = EventType(cxkvpb.Event_DELETE) // the key was deleted by a Delete or a Txn
	EventExpire = EventType(cxkvpb.Event_EXPIRE) // the cluster deleted the key when its TTL ran out
)

// String names the type as the wire's enum does, in lower case ("put").
func (t EventType) String() string { return cxkvpb.Event_Type(t).Name() }

// Event is one change, in log order. For a put, Record is the key after the
// write; for a delete or expiry, Record.Index is the index of the deletion
// and Value the value that was removed.
type Event struct {
	Type   EventType
	Record Record
	// Head is set on a watch with WatchHead(prefix): the record under that
	// prefix with the lowest CreateIndex (the lowest key among equals; Index
	// 0 if there is none), as the answering member's state stood when it
	// sent the event, which includes the event itself. It is nil without the
	// option, from a member older than it, and on the events of one index
	// that fill a message alone (a session's end): then read instead.
	Head *Record
}

func eventFromProto(p *cxkvpb.Event) Event {
	return Event{Type: EventType(p.GetType()), Record: fromProto(p.GetRecord())}
}
