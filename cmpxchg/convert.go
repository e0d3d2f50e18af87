package cmpxchg

import (
	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/kv"
)

// RecordToProto converts a stored record to its API form.
func RecordToProto(r kv.Record) *cxkvpb.Record {
	return &cxkvpb.Record{
		Key: r.Key, Value: r.Value, Index: r.Index, CreateIndex: r.CreateIndex,
		TtlMs: r.TTLMillis, ExpiresAtUnixMs: r.ExpiresAtUnixMs, Session: r.Session,
	}
}

// EventToProto converts a stored event to its API form.
func EventToProto(e kv.Event) *cxkvpb.Event {
	t := cxkvpb.Event_PUT
	switch e.Type {
	case kv.EventDelete:
		t = cxkvpb.Event_DELETE
	case kv.EventExpire:
		t = cxkvpb.Event_EXPIRE
	}
	return &cxkvpb.Event{Type: t, Record: RecordToProto(e.Record)}
}
