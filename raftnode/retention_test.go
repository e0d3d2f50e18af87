package raftnode_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/raftnode"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func watchFrom(t *testing.T, c *raftnodetest.Cluster, i int) *cxkvpb.StatusResponse {
	t.Helper()
	st, err := c.Client(i).Status(context.Background(), &cxkvpb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// History retention follows its own setting: a short window is enforced
// while the log is never compacted, and a long one survives a log that is
// compacted every 20 entries.
func TestHistoryRetentionIsIndependentOfLogCompaction(t *testing.T) {
	t.Run("short window, uncompacted log", func(t *testing.T) {
		const keep = 50
		c := raftnodetest.Start(t, 1, func(cfg *raftnode.Config) { cfg.HistoryEntries = keep; cfg.SnapshotEntries = 1 << 40 })
		var last uint64
		for i := range 200 {
			last = put(t, c.Client(0), fmt.Sprintf("h%d", i), "v", 0).GetHeader().GetAppliedIndex()
		}
		st := watchFrom(t, c, 0)
		if st.GetFirstIndex() > 2 {
			t.Fatalf("the log was compacted to %d; this case needs it whole", st.GetFirstIndex())
		}
		from := st.GetWatchFromIndex()
		if from+keep > last+1 || from+keep+keep/16+1 < last {
			t.Fatalf("after %d applied, watch can start from %d; want the last %d indexes (and at most a step of %d more) kept", last, from, keep, keep/16)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, at := range []uint64{from, from - 1} {
			w, err := c.Client(0).Watch(ctx, &cxkvpb.WatchRequest{Prefix: "h", FromIndex: at})
			if err == nil {
				_, err = w.Recv()
			}
			if code := status.Code(err); (at == from) != (code == codes.OK) {
				t.Fatalf("watch from %d (oldest kept %d): %v", at, from, err)
			}
		}
	})
	t.Run("long window, compacted log", func(t *testing.T) {
		c := raftnodetest.Start(t, 1, func(cfg *raftnode.Config) {
			cfg.HistoryEntries = 1 << 20
			cfg.SnapshotEntries, cfg.CatchUpEntries = 20, 5
		})
		for i := range 200 {
			put(t, c.Client(0), fmt.Sprintf("h%d", i), "v", 0)
		}
		st := watchFrom(t, c, 0)
		if st.GetFirstIndex() < 100 {
			t.Fatalf("the log starts at %d; this case needs it compacted", st.GetFirstIndex())
		}
		if st.GetWatchFromIndex() != 0 {
			t.Fatalf("watch can start only from %d; the whole history is within the window", st.GetWatchFromIndex())
		}
	})
}
