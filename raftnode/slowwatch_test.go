package raftnode_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
				if err := putOnce(wctx, kv, fmt.Sprintf("s/%d/%d", w, i), value); err != nil {
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

// putOnce creates key with value, retrying an attempt that failed with
// Unavailable (on a loaded machine a leader change may cut a write short).
// Creation is put-if-absent, so a retry of an attempt that did apply fails
// its compare and finds the value it wrote: the key is written once either
// way, and the watcher must see exactly one event for it. A stalled member
// would not answer at all, and the caller's deadline reports that.
func putOnce(ctx context.Context, kv cxkvrpc.KVClient, key string, value []byte) error {
	for {
		r, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: key, Value: value})
		switch {
		case err == nil && r.GetSuccessful():
			return nil
		case err == nil && bytes.Equal(r.GetRecord().GetValue(), value):
			return nil // an earlier attempt applied
		case err == nil:
			return fmt.Errorf("put of %s found %q", key, r.GetRecord().GetValue())
		case status.Code(err) != codes.Unavailable:
			return err
		}
		select { // pace the retries while an election runs
		case <-ctx.Done():
			return err
		case <-time.After(10 * time.Millisecond):
		}
	}
}
