package raftnode

import (
	"context"
	"testing"
	"time"
)

// While the leader's log write syncs, its loop goes on: a linearizable read
// is answered (its round needs nothing written), and the write waits for
// its own sync.
func TestReadsAreAnsweredWhileTheLogSyncs(t *testing.T) {
	gate := &walSyncGate{tokens: make(chan struct{})}
	n := startGated(t, gate)
	gate.closed.Store(true)
	w := gatedPut(n)("w")
	gatedWaitFor(t)("W's sync is held", func() bool { return gate.held.Load() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := n.readIndex(ctx); err != nil {
		t.Fatalf("a read while the log syncs: %v", err)
	}
	select {
	case err := <-w:
		t.Fatalf("write W was answered (%v) before its sync", err)
	default:
	}
	gate.closed.Store(false)
	close(gate.tokens)
	if err := <-w; err != nil {
		t.Fatalf("put W: %v", err)
	}
}
