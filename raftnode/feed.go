package raftnode

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/cxkv/cxkv/kv"
)

// The feed keeps the newest feedEvents events, or fewer if their keys and
// values pass feedBytes (values may be a MiB each); it trims when either
// doubles, so the copy is paid once per that many events, not per apply.
const (
	feedEvents = 16384
	feedBytes  = 32 << 20
)

// progressEntries bounds the applied indexes between two progress ticks
// (less if the member keeps less history: eventFeed.tickEntries). An idle
// stream moves its position only on a tick, and the history kept must
// still reach back to it when its next event comes, however fast entries
// apply and whatever the clock says.
const progressEntries = 1024

// eventFeed holds the newest events in memory, so that watchers that keep
// up are served without opening a store iterator on every apply: with many
// watchers, that scan was most of the leader's CPU. A watcher further behind
// than the feed reads the store.
//
// What must hold: every event with index > floor is in evs, in log order,
// and apply appends an entry batch's events before it publishes the applied
// index, so a watcher that read applied index A finds every event up to A.
//
// The feed also rings the watchers an append concerns, and only those: each
// watch stream registers its prefix, and an appended event rings every
// stream whose prefix the event's key starts with. Waking every stream on
// every apply cost O(streams) goroutine wake-ups per write on each member,
// which with a lock queue's waiters (each watching its own key) was paid
// for writes none of them cared about. A ring is rung under mu, in append,
// before the applied index that covers the event is published.
type eventFeed struct {
	mu    sync.Mutex
	floor uint64
	evs   []kv.Event
	bytes int // keys and values in evs

	// byPrefix holds the registered watchers by prefix; lens the distinct
	// prefix lengths among them, ascending, so an event's key is looked
	// up once per length rather than compared with every watcher.
	byPrefix map[string]map[*feedWatcher]struct{}
	lens     []int
	// tick is closed, and replaced, when an append moves the applied index
	// progressInterval after the last tick, or tickEntries indexes past it:
	// watchers whose prefix saw nothing wake on it to move their position
	// and send a progress notice.
	tick        chan struct{}
	tickAt      time.Time
	tickIndex   uint64
	tickEntries uint64 // 0: progressEntries
}

// feedWatcher is one watch stream's doorbell: a stream busy scanning when
// rung finds the ring when it next waits, so it rescans once for any
// number of rings.
type feedWatcher struct {
	prefix string
	ring   doorbell
}

// watch registers a watch stream on prefix. From this call on, every
// appended event under prefix rings it; the stream scans after
// registering, so events appended before are found by the scan.
func (f *eventFeed) watch(prefix string) *feedWatcher {
	w := &feedWatcher{prefix: prefix, ring: newDoorbell()}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byPrefix == nil {
		f.byPrefix = map[string]map[*feedWatcher]struct{}{}
	}
	set := f.byPrefix[prefix]
	if set == nil {
		set = map[*feedWatcher]struct{}{}
		f.byPrefix[prefix] = set
		if i, found := slices.BinarySearch(f.lens, len(prefix)); !found {
			f.lens = slices.Insert(f.lens, i, len(prefix))
		}
	}
	set[w] = struct{}{}
	return w
}

// unwatch removes a stream registered by watch.
func (f *eventFeed) unwatch(w *feedWatcher) {
	f.mu.Lock()
	defer f.mu.Unlock()
	set := f.byPrefix[w.prefix]
	delete(set, w)
	if len(set) > 0 {
		return
	}
	delete(f.byPrefix, w.prefix)
	for p := range f.byPrefix {
		if len(p) == len(w.prefix) {
			return // another prefix of that length remains
		}
	}
	if i, found := slices.BinarySearch(f.lens, len(w.prefix)); found {
		f.lens = slices.Delete(f.lens, i, i+1)
	}
}

// ringFor rings every watcher whose prefix key starts with. The caller
// holds mu.
func (f *eventFeed) ringFor(key string) {
	for _, n := range f.lens {
		if n > len(key) {
			return
		}
		for w := range f.byPrefix[key[:n]] {
			w.ring.ring()
		}
	}
}

// ringAll rings every watcher: the feed was reset, and each must look at
// the store again (its history may be gone).
func (f *eventFeed) ringAll() {
	for _, set := range f.byPrefix {
		for w := range set {
			w.ring.ring()
		}
	}
}

// ticked returns the channel closed at the next progress tick.
func (f *eventFeed) ticked() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tick == nil {
		f.tick = make(chan struct{})
	}
	return f.tick
}

// progressed closes the tick channel if the last tick is progressInterval
// old or tickEntries indexes behind applied. The caller holds mu.
func (f *eventFeed) progressed(applied uint64, now time.Time) {
	every := f.tickEntries
	if every == 0 {
		every = progressEntries
	}
	if f.tick == nil || (now.Sub(f.tickAt) < progressInterval && applied < f.tickIndex+every) {
		return
	}
	close(f.tick)
	f.tick, f.tickAt, f.tickIndex = make(chan struct{}), now, applied
}

func eventBytes(e kv.Event) int { return len(e.Record.Key) + len(e.Record.Value) }

// reset empties the feed: events after floor will be appended from now on.
// Every watcher is rung, to find out from the store whether the history it
// has yet to see is still there.
func (f *eventFeed) reset(floor uint64) {
	f.mu.Lock()
	f.floor, f.evs, f.bytes = floor, nil, 0
	f.ringAll()
	f.mu.Unlock()
}

// append adds an applied batch's events, rings the watchers they concern,
// then drops the oldest whole indexes beyond the feed's bounds. It is
// called for every applied batch, with or without events, at now.
func (f *eventFeed) append(evs []kv.Event, applied uint64, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.evs = append(f.evs, evs...)
	for _, e := range evs {
		f.bytes += eventBytes(e)
		f.ringFor(e.Record.Key)
	}
	f.progressed(applied, now)
	if len(f.evs) < 2*feedEvents && f.bytes < 2*feedBytes {
		return
	}
	cut := 0
	for cut < len(f.evs) && (len(f.evs)-cut > feedEvents || f.bytes > feedBytes) {
		f.bytes -= eventBytes(f.evs[cut])
		cut++
	}
	// Never split an index: its events go together.
	for cut < len(f.evs) && f.evs[cut].Record.Index == f.evs[cut-1].Record.Index {
		f.bytes -= eventBytes(f.evs[cut])
		cut++
	}
	f.floor = f.evs[cut-1].Record.Index
	// Shift the kept events down in place: a new array for them on every
	// trim was the members' largest allocation per write (since copies
	// events out, so nothing holds a slice of this one).
	n := copy(f.evs, f.evs[cut:])
	clear(f.evs[n:])
	f.evs = f.evs[:n]
}

// since returns the events with index > from under prefix, paged as the
// store pages them (kv.EventPage: limit events, maxBytes, never ending inside
// an index), or ok false if the feed does not reach back to from.
func (f *eventFeed) since(prefix string, from uint64, limit, maxBytes int) (out []kv.Event, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if from < f.floor {
		return nil, false
	}
	var p kv.EventPage
	for i := sort.Search(len(f.evs), func(i int) bool { return f.evs[i].Record.Index > from }); i < len(f.evs); i++ {
		if !p.Add(f.evs[i], prefix, limit, maxBytes) {
			break
		}
	}
	return p.Events(), true
}
