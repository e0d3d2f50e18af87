package lock_test

import (
	"context"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/client/lock"
)

// A write under two locks, through one and carrying the other's IsOwner,
// is refused once the other was lost, before its holder has learned of the
// loss; without it the write would land under a lock someone else holds.
func TestIsOwnerGuardsAWriteUnderTwoLocks(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			_, c := start(t)
			ctx := context.Background()
			m := lock.NewProcessMonitor(c, lock.Options{TTL: 10 * time.Second, Mode: mode, Name: "m"})
			defer m.Close()
			l1, err := m.Lock(ctx, "one")
			if err != nil {
				t.Fatal(err)
			}
			l2, err := m.Lock(ctx, "two")
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Unlock()
			put := []client.Op{client.PutOp("data", []byte("under both"), 0)}
			if res, err := l2.Txn(ctx, []client.Compare{l1.IsOwner()}, put); err != nil || !res.Successful {
				t.Fatalf("write under both locks while held: %+v, %v", res, err)
			}
			if _, err := lock.ForceRelease(ctx, c, "one"); err != nil {
				t.Fatal(err)
			}
			res, err := l2.Txn(ctx, []client.Compare{l1.IsOwner()}, []client.Op{client.PutOp("data", []byte("after one was lost"), 0)})
			if err != nil || res.Successful || res.FailedCompare != 0 {
				t.Fatalf("write under both locks after the first was force-released: %+v, %v; want compare 0 failed", res, err)
			}
			if rec, _ := c.Get(ctx, "data"); string(rec.Value) != "under both" {
				t.Fatalf("data = %q", rec.Value)
			}
		})
	}
}
