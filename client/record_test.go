package client_test

import (
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/client"
)

// Event types have one naming rule, the wire enum's: known types by name,
// unknown ones by number rather than as some other type.
func TestEventTypeNames(t *testing.T) {
	for typ, want := range map[client.EventType]string{
		client.EventPut: "put", client.EventDelete: "delete", client.EventExpire: "expire", 7: "unknown(7)",
	} {
		if got := typ.String(); got != want {
			t.Errorf("EventType(%d) = %q; want %q", int(typ), got, want)
		}
		if got := cxkvpb.Event_Type(typ).Name(); got != want {
			t.Errorf("Event_Type(%d).Name() = %q; want %q", int(typ), got, want)
		}
	}
}
