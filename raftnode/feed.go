package raftnode

import (
	"sort"
	"sync"

	"github.com/cxkv/cxkv/kv"
)

// The feed keeps the newest feedEvents events, or fewer if their keys and
// values pass feedBytes (values may be a MiB each); it trims when either
// doubles, so the copy is paid once per that many events, not per apply.
const (
	feedEvents = 16384
	feedBytes  = 32 << 20
)

// eventFeed holds the newest events in memory, so that watchers that keep
// up are served without opening a store iterator on every apply: with many
// watchers, that scan was most of the leader's CPU. A watcher further behind
// than the feed reads the store.
//
// What must hold: every event with index > floor is in evs, in log order,
// and apply appends an entry batch's events before it publishes the applied
// index, so a watcher that read applied index A finds every event up to A.
type eventFeed struct {
	mu    sync.Mutex
	floor uint64
	evs   []kv.Event
	bytes int // keys and values in evs
}

func eventBytes(e kv.Event) int { return len(e.Record.Key) + len(e.Record.Value) }

// reset empties the feed: events after floor will be appended from now on.
func (f *eventFeed) reset(floor uint64) {
	f.mu.Lock()
	f.floor, f.evs, f.bytes = floor, nil, 0
	f.mu.Unlock()
}

// append adds an applied batch's events, then drops the oldest whole
// indexes beyond the feed's bounds.
func (f *eventFeed) append(evs []kv.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.evs = append(f.evs, evs...)
	for _, e := range evs {
		f.bytes += eventBytes(e)
	}
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
	f.evs = append([]kv.Event(nil), f.evs[cut:]...)
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
