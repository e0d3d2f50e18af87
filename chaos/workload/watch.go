package workload

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cxkv/cxkv/client"
)

// watcher follows every change under prefix from the start, through the
// SDK's Watch (which resumes after failovers), and keeps what it saw.
//
// A member keeps the last --history-entries indexes of history (5000 in
// make chaos), and one that caught up by a snapshot keeps it only from the
// snapshot on. A watch whose position no member holds any more (its member
// partitioned away, then caught up by a snapshot, while the others moved
// on by more than their window) ends with ErrCompacted, as documented; the
// watcher then does what the SDK tells users to do and watches again from
// the cluster's current index. The writes in such a gap cannot be checked
// for delivery; the gaps are counted and reported.
type watcher struct {
	mu     sync.Mutex
	events []client.Event
	err    error
	last   uint64
	gaps   [][2]uint64 // (after, upTo]: history lost to compaction
	notify chan struct{}
	// trail says when the watch restarted and when it last delivered, for
	// the report of a watch that fell behind.
	trail   []string
	lastAt  time.Time
	started time.Time
}

func newWatcher() *watcher { return &watcher{notify: make(chan struct{}, 1), started: time.Now()} }

// run watches from index from on (never 0, "from now": the watch would see
// only the writes after it reached a member, however late that is).
func (w *watcher) run(ctx context.Context, cl *client.Client, prefix string, from uint64) {
	for ctx.Err() == nil {
		err := w.follow(ctx, cl, prefix, from)
		if !errors.Is(err, client.ErrCompacted) {
			w.mu.Lock()
			if ctx.Err() == nil {
				w.err = err
			}
			w.mu.Unlock()
			return
		}
		now, serr := currentIndex(ctx, cl)
		if serr != nil {
			w.mu.Lock()
			w.err = fmt.Errorf("%v, then no index to watch from: %v", err, serr)
			w.mu.Unlock()
			return
		}
		w.mu.Lock()
		w.gaps = append(w.gaps, [2]uint64{w.last, now})
		w.trail = append(w.trail, fmt.Sprintf("%.3fs: %v; watching again from index %d (last event seen: %d)",
			time.Since(w.started).Seconds(), err, now, w.last))
		w.last = max(w.last, now)
		w.mu.Unlock()
		from = now
	}
}

// currentIndex is the highest applied index any member reports.
func currentIndex(ctx context.Context, cl *client.Client) (uint64, error) {
	for ctx.Err() == nil {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		sts, err := cl.Status(sctx)
		cancel()
		var best uint64
		for _, s := range sts {
			if s.Unreachable == nil {
				best = max(best, s.Applied)
			}
		}
		if err == nil && best > 0 {
			return best, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, ctx.Err()
}

func (w *watcher) follow(ctx context.Context, cl *client.Client, prefix string, from uint64) error {
	for ev, err := range cl.Watch(ctx, prefix, from) {
		w.mu.Lock()
		if err != nil {
			w.mu.Unlock()
			return err
		}
		w.events = append(w.events, ev)
		w.last = max(w.last, ev.Record.Index)
		w.lastAt = time.Now()
		w.mu.Unlock()
		select {
		case w.notify <- struct{}{}:
		default:
		}
	}
	return ctx.Err()
}

// inGap reports whether index falls in history lost to compaction.
func (w *watcher) inGap(index uint64) bool {
	for _, g := range w.gaps {
		if index > g[0] && index <= g[1] {
			return true
		}
	}
	return false
}

// describe says when the watch restarted and when it last saw an event.
func (w *watcher) describe() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for _, t := range w.trail {
		fmt.Fprintf(&b, "; restart at %s", t)
	}
	if !w.lastAt.IsZero() {
		fmt.Fprintf(&b, "; last event (index %d) at %.3fs", w.last, w.lastAt.Sub(w.started).Seconds())
	}
	return b.String()
}

// waitFor waits until the watcher has seen an event at index or later.
func (w *watcher) waitFor(ctx context.Context, index uint64) error {
	for {
		w.mu.Lock()
		last, err := w.last, w.err
		w.mu.Unlock()
		if last >= index {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("watch reached index %d, not %d: %w", last, index, ctx.Err())
		case <-w.notify:
		}
	}
}

// checkWatch checks the watcher's events against the history: in log order,
// each at most once, every one from a write that may have applied, and every
// acknowledged write among them. It returns how many events it checked.
func checkWatch(w *watcher, h *history) (int, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var bad []string
	report := func(format string, args ...any) {
		if len(bad) < 20 {
			bad = append(bad, fmt.Sprintf(format, args...))
		}
	}
	if w.err != nil && !errors.Is(w.err, context.Canceled) {
		report("watch ended with %v", w.err)
	}
	type keyIndex struct {
		key   string
		index uint64
	}
	// A Txn may write one key twice at one index: an event is its type, key,
	// index and value.
	type eventID struct {
		t     client.EventType
		key   string
		index uint64
		value string
	}
	delivered := map[eventID]bool{}
	seen := map[keyIndex]bool{}
	seenPut := map[string]bool{}
	delUnk := map[string]int{}
	var prev uint64
	for _, ev := range w.events {
		r := ev.Record
		if r.Index < prev {
			report("event %s %s@%d after index %d: out of log order", ev.Type, r.Key, r.Index, prev)
		}
		prev = r.Index
		id := eventID{ev.Type, r.Key, r.Index, string(r.Value)}
		if delivered[id] {
			report("event %s %s@%d %q delivered twice", ev.Type, r.Key, r.Index, r.Value)
		}
		delivered[id] = true
		seen[keyIndex{r.Key, r.Index}] = true
		if r.Key == endKey {
			continue
		}
		switch ev.Type {
		case client.EventPut:
			v := string(r.Value)
			idx, acked := h.acked[v]
			switch {
			case acked && idx != r.Index:
				report("put of %s %q seen at index %d, acknowledged at %d", r.Key, v, r.Index, idx)
			case !acked && !h.unknown[v]:
				report("put of %s %q at %d: no write that may have applied wrote it", r.Key, v, r.Index)
			}
			seenPut[v] = true
		case client.EventDelete:
			if !h.delAck[[2]any{r.Key, r.Index}] {
				delUnk[r.Key]++
				if delUnk[r.Key] > h.delUnk[r.Key] {
					report("delete of %s at %d: no delete that may have applied explains it", r.Key, r.Index)
				}
			}
		default:
			report("event %s on %s@%d: the workload sets no TTL", ev.Type, r.Key, r.Index)
		}
	}
	for v, idx := range h.acked {
		if !seenPut[v] && !w.inGap(idx) {
			report("acknowledged put %q at index %d never seen by the watch", v, idx)
		}
	}
	for kd := range h.delAck {
		if !seen[keyIndex{kd[0].(string), kd[1].(uint64)}] && !w.inGap(kd[1].(uint64)) {
			report("acknowledged delete of %s at index %d never seen by the watch", kd[0], kd[1])
		}
	}
	return len(w.events), bad
}
