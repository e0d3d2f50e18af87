package raftnode

import (
	"fmt"
	"slices"
	"testing"
	"time"

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
	f.append([]kv.Event{ev(11, "a"), ev(11, "b"), ev(12, "a"), ev(14, "b")}, 14, time.Time{})
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
	f.append(many, many[len(many)-1].Record.Index, time.Time{})
	if len(f.evs) > feedEvents || f.floor != uint64(100+(feedEvents-4)/2) || f.evs[0].Record.Index != f.floor+1 {
		t.Fatalf("after trimming: %d events from %d, floor %d", len(f.evs), f.evs[0].Record.Index, f.floor)
	}
	if _, ok := f.since("", f.floor-1, 10, 1<<30); ok {
		t.Fatal("served from before the trimmed floor")
	}
	if got, ok := f.since("", f.floor, 1, 1<<30); !ok || len(got) != 2 {
		t.Fatalf("first index after the floor: %d events, want both of its events", len(got))
	}

	// A trim keeps the feed's array: once it has grown, appending up to
	// the next trim and trimming again allocate nothing.
	next := f.evs[len(f.evs)-1].Record.Index + 1
	more := make([]kv.Event, feedEvents+2)
	for i := range more {
		more[i] = ev(next+uint64(i), "k")
	}
	if allocs := testing.AllocsPerRun(1, func() { f.append(more, more[len(more)-1].Record.Index, time.Time{}) }); allocs != 0 {
		t.Errorf("appending and trimming again allocated %v times", allocs)
	}
	if len(f.evs) > feedEvents || f.evs[len(f.evs)-1].Record.Index != more[len(more)-1].Record.Index {
		t.Fatalf("after the second trim: %d events up to %d", len(f.evs), f.evs[len(f.evs)-1].Record.Index)
	}
}

// Large values bound the feed by bytes, not by count.
func TestEventFeedBoundsBytes(t *testing.T) {
	var f eventFeed
	f.reset(0)
	big := make([]byte, 1<<20)
	for i := range 2 * feedBytes >> 20 {
		f.append([]kv.Event{{Type: kv.EventPut, Record: kv.Record{Key: "k", Index: uint64(i + 1), Value: big}}}, uint64(i+1), time.Time{})
	}
	if f.bytes > feedBytes || len(f.evs) == 0 || f.evs[0].Record.Index != f.floor+1 {
		t.Fatalf("feed holds %d bytes in %d events from %d (floor %d); want at most %d", f.bytes, len(f.evs), f.evs[0].Record.Index, f.floor, feedBytes)
	}
	if _, ok := f.since("", f.floor, 10, 1<<30); !ok {
		t.Fatal("since(floor) refused")
	}
}

// An append rings exactly the watchers whose prefix an event's key starts
// with, once however many of its events match; an unwatched stream is
// never rung, and the index forgets a prefix length no watcher uses.
func TestEventFeedRingsOnlyWatchersOfTheKey(t *testing.T) {
	var f eventFeed
	f.reset(0)
	ws := map[string]*feedWatcher{}
	for _, p := range []string{"", "a/", "a/b", "ab", "c/d"} {
		ws[p] = f.watch(p)
	}
	second := f.watch("a/") // two streams on one prefix
	rang := func() string {
		out := ""
		for _, p := range []string{"", "a/", "a/b", "ab", "c/d"} {
			select {
			case <-ws[p].ring:
				out += "[" + p + "]"
			default:
			}
		}
		return out
	}
	f.append([]kv.Event{ev(1, "a/b/c"), ev(1, "a/x"), ev(2, "c/")}, 2, time.Time{})
	if got, want := rang(), "[][a/][a/b]"; got != want {
		t.Errorf("rang %s, want %s", got, want)
	}
	select {
	case <-second.ring:
	default:
		t.Error("the second stream on a/ was not rung")
	}
	f.unwatch(ws["c/d"])
	f.unwatch(ws["ab"])
	if !slices.Equal(f.lens, []int{0, 2, 3}) {
		t.Errorf("prefix lengths after unwatching c/d and ab: %v, want [0 2 3]", f.lens)
	}
	f.append([]kv.Event{ev(3, "ab"), ev(3, "c/d")}, 3, time.Time{})
	if got, want := rang(), "[]"; got != want {
		t.Errorf("rang %s, want %s", got, want)
	}
	f.reset(3)
	if got, want := rang(), "[][a/][a/b]"; got != want {
		t.Errorf("a reset rang %s, want %s", got, want)
	}
}

// The progress tick comes at least every progressEntries applied indexes,
// whatever the clock says: an idle stream moves its position only on a
// tick, and one left further behind than the history kept would meet a
// compaction error at its next event although it missed nothing.
func TestEventFeedTicksEveryProgressEntries(t *testing.T) {
	var f eventFeed
	f.reset(0)
	at := time.Unix(1000, 0) // a clock that never moves
	tick := f.ticked()
	f.append(nil, 1, at) // the first tick is due at once
	select {
	case <-tick:
	default:
		t.Fatal("no tick on the first append")
	}
	tick = f.ticked()
	for i := uint64(2); i <= progressEntries; i++ {
		f.append(nil, i, at)
	}
	select {
	case <-tick:
		t.Fatal("a tick before progressEntries indexes or progressInterval passed")
	default:
	}
	f.append(nil, progressEntries+1, at)
	select {
	case <-tick:
	default:
		t.Fatalf("no tick after %d indexes with the clock standing still", progressEntries)
	}
}
