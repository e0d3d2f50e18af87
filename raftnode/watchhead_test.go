package raftnode_test

import (
	"context"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// A watch with head_of carries, on each response with events, the record
// under head_of with the lowest create index as the member stood after the
// events: what a lock waiter reads the queue for once its predecessor goes.
// The queue's order is the create index, not the key: q/c is created
// first. A response without head_of carries none.
func TestWatchHeadOfNamesTheQueueHeadAfterTheEvent(t *testing.T) {
	c := raftnodetest.Start(t, 1)
	kv := c.Client(0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	index := map[string]uint64{}
	for _, k := range []string{"q/c", "q/a", "q/b"} {
		index[k] = put(t, kv, k, "v", 0).GetRecord().GetIndex()
	}
	from := index["q/c"] - 1
	put(t, kv, "other/x", "4", 0) // outside the queue: never its head
	headed, err := kv.Watch(ctx, &cxkvpb.WatchRequest{Prefix: "q/", FromIndex: from, HeadOf: "q/"})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := kv.Watch(ctx, &cxkvpb.WatchRequest{Prefix: "q/", FromIndex: from})
	if err != nil {
		t.Fatal(err)
	}
	next := func(s interface {
		Recv() (*cxkvpb.WatchResponse, error)
	}) *cxkvpb.WatchResponse {
		t.Helper()
		for {
			resp, err := s.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetEvents()) > 0 {
				return resp
			}
		}
	}
	// The puts' events come first, together or not; the head after them
	// is q/c, the oldest.
	seen := 0
	for seen < 3 {
		resp := next(headed)
		seen += len(resp.GetEvents())
		if resp.GetHead() == nil {
			t.Fatalf("a response with events %v carries no head", resp.GetEvents())
		}
	}
	for seen := 0; seen < 3; {
		resp := next(plain)
		seen += len(resp.GetEvents())
		if resp.GetHead() != nil {
			t.Fatalf("a watch without head_of got head %v", resp.GetHead())
		}
	}
	for _, step := range []struct{ del, head string }{{"q/c", "q/a"}, {"q/b", "q/a"}, {"q/a", ""}} {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := kv.Delete(dctx, &cxkvpb.DeleteRequest{Key: step.del, ExpectIndex: index[step.del]})
		dcancel()
		if err != nil {
			t.Fatalf("delete %s: %v", step.del, err)
		}
		resp := next(headed)
		ev := resp.GetEvents()[len(resp.GetEvents())-1]
		if ev.GetRecord().GetKey() != step.del || ev.GetType() != cxkvpb.Event_DELETE {
			t.Fatalf("after deleting %s the watch sent %v", step.del, resp.GetEvents())
		}
		h := resp.GetHead()
		switch {
		case h == nil:
			t.Fatalf("the deletion of %s came with no head", step.del)
		case step.head == "" && h.GetIndex() != 0:
			t.Fatalf("after deleting %s, the last entry, the head is %s@%d; want none (index 0)", step.del, h.GetKey(), h.GetIndex())
		case step.head != "" && h.GetKey() != step.head:
			t.Fatalf("after deleting %s the head is %q; want %q (the lowest create index left)", step.del, h.GetKey(), step.head)
		}
	}
}
