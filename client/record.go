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
}

// Exists reports whether the key was present.
func (r Record) Exists() bool { return r.Index != 0 }

func fromProto(p *cxkvpb.Record) Record {
	if p == nil {
		return Record{}
	}
	r := Record{Key: p.GetKey(), Value: p.GetValue(), Index: p.GetIndex(), CreateIndex: p.GetCreateIndex()}
	if p.GetTtlMs() > 0 {
		r.TTL = time.Duration(p.GetTtlMs()) * time.Millisecond
		r.ExpiresAt = time.UnixMilli(p.GetExpiresAtUnixMs())
	}
	return r
}

// EventType says what changed a key.
type EventType int

const (
	EventPut    EventType = iota // the key was written
	EventDelete                  // the key was deleted by a Delete or a Txn
	EventExpire                  // the cluster deleted the key when its TTL ran out
)

func (t EventType) String() string {
	switch t {
	case EventPut:
		return "put"
	case EventDelete:
		return "delete"
	case EventExpire:
		return "expire"
	}
	return "unknown"
}

// Event is one change, in log order. For a put, Record is the key after the
// write; for a delete or expiry, Record.Index is the index of the deletion
// and Value the value that was removed.
type Event struct {
	Type   EventType
	Record Record
}

func eventFromProto(p *cxkvpb.Event) Event {
	t := EventPut
	switch p.GetType() {
	case cxkvpb.Event_DELETE:
		t = EventDelete
	case cxkvpb.Event_EXPIRE:
		t = EventExpire
	}
	return Event{Type: t, Record: fromProto(p.GetRecord())}
}
