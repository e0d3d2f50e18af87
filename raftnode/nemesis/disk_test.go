package nemesis_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// haltCounter counts a member's "member halted" log records.
type haltCounter struct {
	slog.Handler
	n *atomic.Int32
}

func (h haltCounter) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, "member halted") {
		h.n.Add(1)
	}
	return nil
}
func (h haltCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h haltCounter) WithGroup(string) slog.Handler      { return h }
func (h haltCounter) Enabled(context.Context, slog.Level) bool {
	return true
}

// A member whose disk fails a write or sync halts: its process goes on (an
// embedding program, this test), nothing more is acknowledged by it, and
// restarted on what its disk had synced it rejoins. Pebble reports a failed
// log write by calling Fatalf, which used to panic the whole process
// ("panic: pebble: fatal commit error: no space left on device").
func TestDiskFailureHaltsTheMember(t *testing.T) {
	for _, e := range []error{syscall.ENOSPC, syscall.EIO} {
		t.Run(e.Error(), func(t *testing.T) {
			var halts [3]atomic.Int32
			disks := []*raftnodetest.Disk{raftnodetest.NewDisk(), raftnodetest.NewDisk(), raftnodetest.NewDisk()}
			c := raftnodetest.Start(t, 3, func(cfg *raftnode.Config) {
				cfg.FS = disks[cfg.ID-1].FS
				cfg.Logger = slog.New(haltCounter{slog.DiscardHandler, &halts[cfg.ID-1]})
			})
			l := c.WaitLeader()
			put := func(i int, key string) error {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_, err := c.Client(i).Put(ctx, &cxkvpb.PutRequest{Key: key, Value: []byte("v")})
				return err
			}
			if err := put(l, "before"); err != nil {
				t.Fatal(err)
			}
			disks[l].Fail(e)
			if err := put(l, "during"); err == nil {
				t.Fatalf("the leader acknowledged a write its disk failed to take (%v)", e)
			}
			raftnodetest.Eventually(t, 5*time.Second, "the member with the failed disk halts", func() bool { return halts[l].Load() > 0 })
			// The rest of the cluster goes on without it.
			other := (l + 1) % 3
			raftnodetest.Eventually(t, 10*time.Second, "the others take writes", func() bool { return put(other, "without") == nil })
			disks[l] = disks[l].Crash(rand.New(rand.NewPCG(1, 2)), 100)
			c.Crash(l, disks[l].FS)
			c.Revive(l)
			raftnodetest.Eventually(t, 10*time.Second, "the restarted member serves writes", func() bool { return put(l, "after") == nil })
		})
	}
}
