package cmpxchg_test

import (
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"google.golang.org/protobuf/proto"
)

// The cache answers the bytes it last decoded without decoding them again,
// and any other bytes with their own decoding, never the cached state.
func TestAuthCacheDecodesOnlyChangedBytes(t *testing.T) {
	enc := func(st *cxkvpb.AuthState) []byte {
		data, err := proto.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	off := enc(&cxkvpb.AuthState{Users: []*cxkvpb.AuthUser{{Name: "ann"}}})
	on := enc(&cxkvpb.AuthState{Enabled: true, Users: []*cxkvpb.AuthUser{{Name: "bob"}}})

	var c cmpxchg.AuthCache
	a1, err := c.Decode(off)
	if err != nil {
		t.Fatal(err)
	}
	if a1.Enabled() || a1.User("ann") == nil {
		t.Fatalf("decoded %v: want auth disabled with user ann", a1.Public())
	}
	if allocs := testing.AllocsPerRun(100, func() {
		if a, err := c.Decode(off); err != nil || a != a1 {
			t.Fatalf("same bytes: got %p, %v; want the cached %p", a, err, a1)
		}
	}); allocs != 0 {
		t.Errorf("same bytes again: %v allocations, want 0 (decoded again)", allocs)
	}
	// Equal bytes in another slice are the same state.
	if a, _ := c.Decode(append([]byte(nil), off...)); a != a1 {
		t.Errorf("equal bytes in another slice: got a new state")
	}
	a2, err := c.Decode(on)
	if err != nil {
		t.Fatal(err)
	}
	if a2 == a1 || !a2.Enabled() || a2.User("bob") == nil || a2.User("ann") != nil {
		t.Fatalf("changed bytes: got %v; want auth enabled with user bob only", a2.Public())
	}
	if a, _ := c.Decode(nil); a.Enabled() || len(a.Public().GetUsers()) != 0 {
		t.Errorf("no bytes: got %v; want the zero state", a.Public())
	}
	if _, err := c.Decode([]byte{0xff}); err == nil {
		t.Errorf("malformed bytes decoded without error")
	}
}
