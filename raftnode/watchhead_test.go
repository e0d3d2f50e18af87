package raftnode_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/protobuf/proto"
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

// A response's events fill up to cmpxchg.MaxAnswerBytes; the head rides
// along in the same message, so a full page of events and a head of the
// largest record must still fit in cxkvpb.MaxMessageBytes: a response over
// it fails its send, and the watch, resumed from the same index, builds the
// same response again and never gets past it.
func TestWatchHeadFitsBesideAFullPageOfEvents(t *testing.T) {
	c := raftnodetest.Start(t, 1)
	kv := c.Client(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Each event's answer bytes (a longKey, its value and kv's 64 of
	// overhead) exactly 1 MiB, so 15 of them are a full page.
	from := put(t, kv, longKey("h/", 0), strings.Repeat("h", 1<<20), 0).GetRecord().GetIndex()
	const events = 16
	for i := range events {
		put(t, kv, longKey("w/", i), strings.Repeat("w", 1<<20-1024-64), 0)
	}
	w, err := kv.Watch(ctx, &cxkvpb.WatchRequest{Prefix: "w/", FromIndex: from, HeadOf: "h/"})
	if err != nil {
		t.Fatal(err)
	}
	for seen := 0; seen < events; {
		resp, err := w.Recv()
		if err != nil {
			t.Fatalf("after %d of %d events of 1 MiB, with the head of a 1 MiB record: %v", seen, events, err)
		}
		if len(resp.GetEvents()) > 0 && resp.GetHead().GetKey() != longKey("h/", 0) {
			t.Fatalf("events came with head %.20q; want h/...", resp.GetHead().GetKey())
		}
		seen += len(resp.GetEvents())
	}
}

// A page never splits an index, and a session's end is one index whose
// events may fill an answer alone (its attached keys up to
// cmpxchg.MaxSessionBytes, its own record up to the largest): such a
// response goes without its head, as from a member older than head_of
// (the client reads instead), rather than over the message limit; the
// next response carries the head again.
func TestWatchHeadLeftOutWhenOneIndexFillsTheMessage(t *testing.T) {
	c := raftnodetest.Start(t, 1)
	kv := c.Client(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	put(t, kv, longKey("h/", 0), strings.Repeat("h", 1<<20), 0)
	// The largest session record, and attached keys to the most answer
	// bytes a session may hold.
	id := strings.Repeat("s", cmpxchg.MaxKeyBytes-len(cxkvpb.SessionKey("")))
	session := cxkvpb.SessionKey(id)
	from := put(t, kv, session, strings.Repeat("s", cmpxchg.MaxValueBytesLimit), 0).GetRecord().GetIndex()
	const attached = 14
	each := cmpxchg.MaxSessionBytes / attached
	for i := range attached {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := kv.Put(pctx, &cxkvpb.PutRequest{Key: longKey("w/", i), Value: []byte(strings.Repeat("w", each-cmpxchg.MaxKeyBytes-64)), Session: id})
		pcancel()
		if err != nil {
			t.Fatalf("put %d attached to the session: %v", i, err)
		}
	}
	w, err := kv.Watch(ctx, &cxkvpb.WatchRequest{Prefix: "", FromIndex: from, HeadOf: "h/"})
	if err != nil {
		t.Fatal(err)
	}
	next := func() *cxkvpb.WatchResponse {
		t.Helper()
		for {
			resp, err := w.Recv()
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetEvents()) > 0 {
				return resp
			}
		}
	}
	for seen := 0; seen < attached; {
		seen += len(next().GetEvents())
	}
	ended, err := kv.Delete(ctx, &cxkvpb.DeleteRequest{Key: session, ExpectIndex: from})
	if err != nil {
		t.Fatal(err)
	}
	resp := next()
	if n := len(resp.GetEvents()); n != attached+1 {
		t.Fatalf("the session's end came as %d events; want %d in one response", n, attached+1)
	}
	if i := resp.GetEvents()[0].GetRecord().GetIndex(); i != ended.GetHeader().GetAppliedIndex() {
		t.Fatalf("the response's events are at index %d; want the session's end, %d", i, ended.GetHeader().GetAppliedIndex())
	}
	if resp.GetHead() != nil {
		t.Fatalf("the session's end (%d bytes of events) came with head %.20q; want none, it would not fit", proto.Size(resp)-proto.Size(resp.GetHead()), resp.GetHead().GetKey())
	}
	put(t, kv, "w/small", "x", 0)
	if h := next().GetHead(); h.GetKey() != longKey("h/", 0) {
		t.Fatalf("the next event came with head %.20q; want h/...", h.GetKey())
	}
}

// longKey is the i-th key of the largest size (1 KiB) under prefix.
func longKey(prefix string, i int) string {
	return fmt.Sprintf("%s%0*d", prefix, 1024-len(prefix), i)
}
