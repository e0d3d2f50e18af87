package raftnode_test

import (
	"context"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A put with ttl_ms = 2^62 overflowed time.Duration in the leader's expiry
// queue (and the stamp arithmetic of the record's expiry), and the key was
// deleted at once. A TTL above the maximum is refused, in a Put and in a
// Txn; one at the maximum is kept for as long as it says.
func TestHugeTTLIsRefused(t *testing.T) {
	c := raftnodetest.Start(t, 3)
	kv := c.Client(c.WaitLeader())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const huge = int64(1) << 62
	_, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: "huge", Value: []byte("x"), TtlMs: huge})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("put with ttl 2^62 ms: %v; want InvalidArgument", err)
	}
	_, err = kv.Txn(ctx, &cxkvpb.TxnRequest{Ops: []*cxkvpb.TxnOp{{Type: cxkvpb.TxnOp_PUT, Key: "huge-txn", Value: []byte("x"), TtlMs: huge}}})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("txn put with ttl 2^62 ms: %v; want InvalidArgument", err)
	}

	// The largest TTL allowed neither overflows nor expires early: a key
	// with a short TTL, put after it, expires first.
	longest := cmpxchg.MaxTTL.Milliseconds()
	if _, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: "longest", Value: []byte("x"), TtlMs: longest}); err != nil {
		t.Fatalf("put with the largest ttl: %v", err)
	}
	if _, err := kv.Put(ctx, &cxkvpb.PutRequest{Key: "short", Value: []byte("x"), TtlMs: 50}); err != nil {
		t.Fatal(err)
	}
	raftnodetest.Eventually(t, 5*time.Second, "the short TTL runs out", func() bool {
		r, err := kv.Get(ctx, &cxkvpb.GetRequest{Key: "short"})
		return err == nil && !r.GetFound()
	})
	for _, key := range []string{"longest", "huge", "huge-txn"} {
		r, err := kv.Get(ctx, &cxkvpb.GetRequest{Key: key})
		if err != nil {
			t.Fatal(err)
		}
		if want := key == "longest"; r.GetFound() != want {
			t.Errorf("%s: found = %v after the short TTL ran out; want %v", key, r.GetFound(), want)
		}
	}
}
