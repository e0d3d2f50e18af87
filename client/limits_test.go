package client_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// mib is a value of the largest size, recognisable by its first byte.
func mib(tag byte) []byte {
	v := bytes.Repeat([]byte{'.'}, 1<<20)
	v[0] = tag
	return v
}

// dialLarge is a client whose attempts have time for megabytes on a loaded
// test machine.
func dialLarge(t *testing.T, endpoints []string, opts []grpc.DialOption) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Endpoints: endpoints, RequestTimeout: 20 * time.Second, RetryTimeout: time.Minute, DialOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitCaughtUp waits until member i has applied what the leader has.
func waitCaughtUp(t *testing.T, cl *raftnodetest.Cluster, i int, what string) {
	t.Helper()
	raftnodetest.Eventually(t, 20*time.Second, what, func() bool {
		l := cl.WaitLeader()
		return cl.Members[i] != nil && cl.Members[l] != nil && cl.Members[i].Status().Applied >= cl.Members[l].Status().Applied
	})
}

// A ~2 KB Txn whose answer would be ~73 MB (70 gets of a 1 MiB key and a
// put) is refused whole with a clear error; the exactly-once table keeps
// only the refusal, so a member that later restores a snapshot of that
// state restarts and catches up, twice.
func TestTxnAnswerOverMessageLimitIsRefusedWhole(t *testing.T) {
	cl, _ := start(t, func(cfg *raftnode.Config) { cfg.SnapshotEntries, cfg.CatchUpEntries = 20, 5 })
	c := dialLarge(t, cl.Endpoints(), nil)
	ctx := context.Background()
	if _, err := c.Put(ctx, "big", mib('b'), 0); err != nil {
		t.Fatal(err)
	}
	lagger := (cl.WaitLeader() + 1) % 3
	cl.Stop(lagger)
	var ops []client.Op
	for range 70 {
		ops = append(ops, client.GetOp("big"))
	}
	ops = append(ops, client.PutOp("marker", []byte("x"), 0))
	_, err := c.Txn(ctx, nil, ops)
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Txn with a ~73 MB answer: %v; want InvalidArgument saying the answer is too large", err)
	}
	t.Logf("refused: %v", err)
	if rec, err := c.Get(ctx, "marker"); err != nil || rec.Exists() {
		t.Fatalf("marker = %+v, %v; the refused Txn's put must not apply", rec, err)
	}
	for i := range 40 { // the log moves past the refusal: the lagger needs a snapshot
		if _, err := c.Put(ctx, fmt.Sprintf("fill/%d", i), nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	cl.Restart(lagger)
	waitCaughtUp(t, cl, lagger, "the lagging member catches up by snapshot")
	cl.Restart(lagger)
	waitCaughtUp(t, cl, lagger, "the member restarts from the restored state")
	if _, err := c.Put(ctx, "after", []byte("x"), 0); err != nil {
		t.Fatalf("the cluster takes writes afterwards: %v", err)
	}
}

// List pages and Watch batches are bounded by bytes: six 1 MiB values are
// more than the default gRPC message of 4 MiB, and a page of 1000 of them
// more than any message.
func TestListAndWatchOverLargeValues(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 20 MiB; runs without -short")
	}
	cl, _ := start(t)
	c := dialLarge(t, cl.Endpoints(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const n = 20
	var first uint64
	for i := range n {
		res, err := c.Put(ctx, fmt.Sprintf("big/%02d", i), mib(byte('a'+i)), 0)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = res.Record.Index
		}
	}
	got := 0
	for rec, err := range c.List(ctx, "big/") {
		if err != nil {
			t.Fatalf("List after %d records: %v", got, err)
		}
		if rec.Key != fmt.Sprintf("big/%02d", got) || len(rec.Value) != 1<<20 || rec.Value[0] != byte('a'+got) {
			t.Fatalf("List record %d = %s (%d bytes)", got, rec.Key, len(rec.Value))
		}
		got++
	}
	if got != n {
		t.Fatalf("List gave %d records, want %d", got, n)
	}
	got = 0
	for ev, err := range c.Watch(ctx, "big/", first-1) {
		if err != nil {
			t.Fatalf("Watch after %d events: %v", got, err)
		}
		if ev.Record.Key != fmt.Sprintf("big/%02d", got) || ev.Record.Value[0] != byte('a'+got) {
			t.Fatalf("Watch event %d = %s", got, ev.Record.Key)
		}
		if got++; got == n {
			break
		}
	}
}
