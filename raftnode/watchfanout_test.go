package raftnode_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// A watch stream wakes only for writes under its prefix: with many
// watchers each on its own key (a lock queue's waiters), a write must not
// cost a wake-up of every stream on every member. Writes elsewhere move
// the applied index but leave the stream asleep; the one write under the
// prefix wakes it and arrives.
func TestUnrelatedWritesDoNotWakeAWatcher(t *testing.T) {
	c := raftnodetest.Start(t, 1)
	node := c.Members[0]
	kv := c.Client(0)
	from := put(t, kv, "other/start", "x", 0).GetRecord().GetIndex()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := kv.Watch(ctx, &cxkvpb.WatchRequest{Prefix: "mine/", FromIndex: from})
	if err != nil {
		t.Fatal(err)
	}
	raftnodetest.Eventually(t, 10*time.Second, "the watch stream open", func() bool {
		return raftnodetest.Scrape(t, node.Handler()).Value(t, "cxkv_watch_streams") == 1
	})
	wakeups := func() float64 { return raftnodetest.Scrape(t, node.Handler()).Value(t, "cxkv_watch_wakeups_total") }
	before := wakeups()
	const unrelated = 50
	for i := range unrelated {
		put(t, kv, fmt.Sprintf("other/%d", i), "v", 0)
	}
	want := put(t, kv, "mine/k", "v", 0).GetRecord().GetIndex()
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if evs := resp.GetEvents(); len(evs) > 0 {
			if got := evs[0].GetRecord(); got.GetKey() != "mine/k" || got.GetIndex() != want {
				t.Fatalf("first event %s@%d, want mine/k@%d", got.GetKey(), got.GetIndex(), want)
			}
			break
		}
	}
	// The write under the prefix wakes the stream once; a second may come
	// from a race between the scan and the doorbell. Never one per write.
	woke := wakeups() - before
	t.Logf("%v wake-ups for %d writes outside the prefix and 1 under it", woke, unrelated)
	if woke > 2 {
		t.Errorf("the watch stream woke %v times for %d writes outside its prefix and 1 under it; want at most 2", woke, unrelated)
	}
}
