package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// A member cut off from its peers, but not from the client, applies
// nothing while the rest of the cluster goes on. A watch on it must not go
// silent until the cut heals: it resumes, from where it was, on a member
// that keeps up.
func TestWatchLeavesAMemberLeftBehind(t *testing.T) {
	net := raftnodetest.NewNet(1)
	cl := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) { cfg.WrapTransport = net.Wrap(cfg.ID) })
	writer := dial(t, leaderFirst(cl))
	leader := cl.WaitLeader()
	behind := (leader + 1) % 3
	ctx := context.Background()
	first, err := writer.Put(ctx, "s/first", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	raftnodetest.Eventually(t, 5*time.Second, "the member to be cut off applies the first write", func() bool {
		return cl.Members[behind].Status().Applied >= first.Record.Index
	})
	eps := cl.Endpoints()
	eps[0], eps[behind] = eps[behind], eps[0]
	const stall = 300 * time.Millisecond
	watcher, err := client.New(client.Config{Endpoints: eps, RequestTimeout: 2 * time.Second, WatchStallTimeout: stall})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()

	var ids []uint64
	for i := range 3 {
		ids = append(ids, cl.Config(i).ID)
	}
	net.Isolate(cl.Config(behind).ID, ids)
	defer net.Heal()

	const writes = 10
	events := make(chan client.Event, writes)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		for ev, err := range watcher.Watch(wctx, "s/", first.Record.Index) {
			if err != nil {
				done <- err
				return
			}
			events <- ev
		}
		done <- nil
	}()
	for i := range writes {
		if _, err := writer.Put(ctx, fmt.Sprintf("s/%d", i), nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	// The cut stays for the whole wait: only a watch that left the
	// member sees the writes.
	deadline := time.After(20 * stall)
	for i := range writes {
		select {
		case ev := <-events:
			if want := fmt.Sprintf("s/%d", i); ev.Record.Key != want {
				t.Fatalf("event %d is of %s, want %s", i, ev.Record.Key, want)
			}
		case err := <-done:
			t.Fatalf("the watch ended after %d events: %v", i, err)
		case <-deadline:
			t.Fatalf("after %v, with the member still cut off, the watch had delivered %d of %d writes", 20*stall, i, writes)
		}
	}
	if st := cl.Members[behind].Status(); st.Applied >= first.Record.Index+writes {
		t.Fatalf("the member cut off applied %d: it was not left behind, and the test is not about what it means to be", st.Applied)
	}
}
