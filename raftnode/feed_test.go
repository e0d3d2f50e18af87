package raftnode

import (
	"fmt"
	"testing"

	"github.com/cxkv/cxkv/kv"
)

func ev(index uint64, key string) kv.Event {
	return kv.Event{Type: kv.EventPut, Record: kv.Record{Key: key, Index: index}}
}

func indexes(evs []kv.Event) string {
	s := ""
	for _, e := range evs {
		s += fmt.Sprintf("%d%s ", e.Record.Index, e.Record.Key)
	}
	return s
}

func TestEventFeed(t *testing.T) {
	var f eventFeed
	f.reset(10)
	if _, ok := f.since("", 9, 10, 1<<30); ok {
		t.Fatal("since(9) served from a feed that starts after 10")
	}
	f.append([]kv.Event{ev(11, "a"), ev(11, "b"), ev(12, "a"), ev(14, "b")})
	for _, c := range []struct {
		prefix string
		from   uint64
		limit  int
		want   string
	}{
		{"", 10, 10, "11a 11b 12a 14b "},
		{"a", 10, 10, "11a 12a "},
		{"", 11, 10, "12a 14b "},
		{"", 10, 1, "11a 11b "}, // a page never ends inside an index
		{"b", 12, 10, "14b "},
		{"", 14, 10, ""},
	} {
		got, ok := f.since(c.prefix, c.from, c.limit, 1<<30)
		if !ok || indexes(got) != c.want {
			t.Errorf("since(%q, %d, %d) = %q, %v; want %q", c.prefix, c.from, c.limit, indexes(got), ok, c.want)
		}
	}

	// Trimming drops whole indexes and raises the floor to the last one
	// dropped. Here the cut falls between the two events of index 100.
	var many []kv.Event
	for i := range 2*feedEvents - 3 {
		many = append(many, ev(uint64(100+i/2), "k"))
	}
	f.append(many)
	if len(f.evs) > feedEvents || f.floor != uint64(100+(feedEvents-4)/2) || f.evs[0].Record.Index != f.floor+1 {
		t.Fatalf("after trimming: %d events from %d, floor %d", len(f.evs), f.evs[0].Record.Index, f.floor)
	}
	if _, ok := f.since("", f.floor-1, 10, 1<<30); ok {
		t.Fatal("served from before the trimmed floor")
	}
	if got, ok := f.since("", f.floor, 1, 1<<30); !ok || len(got) != 2 {
		t.Fatalf("first index after the floor: %d events, want both of its events", len(got))
	}
}

// Large values bound the feed by bytes, not by count.
func TestEventFeedBoundsBytes(t *testing.T) {
	var f eventFeed
	f.reset(0)
	big := make([]byte, 1<<20)
	for i := range 2 * feedBytes >> 20 {
		f.append([]kv.Event{{Type: kv.EventPut, Record: kv.Record{Key: "k", Index: uint64(i + 1), Value: big}}})
	}
	if f.bytes > feedBytes || len(f.evs) == 0 || f.evs[0].Record.Index != f.floor+1 {
		t.Fatalf("feed holds %d bytes in %d events from %d (floor %d); want at most %d", f.bytes, len(f.evs), f.evs[0].Record.Index, f.floor, feedBytes)
	}
	if _, ok := f.since("", f.floor, 10, 1<<30); !ok {
		t.Fatal("since(floor) refused")
	}
}
