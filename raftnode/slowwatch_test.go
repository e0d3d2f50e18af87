package raftnode_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// A watcher that stops reading fills its stream's flow-control window; the
// member must go on applying and answering writes (the watcher's goroutine
// blocks, nothing else), and the watcher, once it reads again, gets every
// event in order.
func TestStalledWatcherDoesNotStallWrites(t *testing.T) {
	c := raftnodetest.Start(t, 3)
	leader := c.WaitLeader()
	kv := c.Client(leader)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := kv.Watch(ctx, &cxkvpb.WatchRequest{Prefix: "s/", FromIndex: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Far more than gRPC's flow-control windows: 1200 events of 1 KiB.
	const writers, each = 12, 100
	value := make([]byte, 1024)
	wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
	defer wcancel()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r, err := kv.Put(wctx, &cxkvpb.PutRequest{Key: fmt.Sprintf("s/%d/%d", w, i), Value: value})
				if err != nil || !r.GetSuccessful() {
					t.Errorf("put while a watcher is stalled: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	var last uint64
	seen := 0
	for seen < writers*each {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("the stalled watcher, reading again: %v after %d events", err, seen)
		}
		for _, e := range resp.GetEvents() {
			if idx := e.GetRecord().GetIndex(); idx <= last {
				t.Fatalf("event at %d after %d", idx, last)
			} else {
				last = idx
			}
			seen++
		}
	}
}
