package raftnode

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// A transfer has no deadline of its own: it is abandoned only after
// snapshotStall without progress, however long it has run.
func TestSnapshotDeadlineFollowsProgress(t *testing.T) {
	clock := clockwork.NewFakeClock()
	ctx, progress, stop := progressContext(context.Background(), clock, snapshotStall)
	defer stop()
	for range 10 { // ten stalls' worth of time, in steps below one stall
		clock.Advance(snapshotStall - time.Second)
		if ctx.Err() != nil {
			t.Fatalf("a transfer making progress was cancelled: %v", context.Cause(ctx))
		}
		progress()
	}
	clock.Advance(snapshotStall)
	select {
	case <-ctx.Done():
		t.Logf("cancelled: %v", context.Cause(ctx))
	case <-time.After(5 * time.Second):
		t.Fatal("a stalled transfer was not cancelled")
	}
}
