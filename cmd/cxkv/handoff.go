package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/cxkv/cxkv/raftnode"
)

// handOffLeadership moves the leadership to the most caught-up voter before
// a leader stops, so the cluster does not wait an election timeout for a
// new leader. It waits a bounded time; a member that is not the leader, or
// a cluster with no other live voter, stops at once.
func handOffLeadership(node *raftnode.Node, logger *slog.Logger) {
	if node.Status().Role != "leader" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	to, err := node.MoveLeader(ctx, 0)
	if err != nil {
		logger.Warn("stopping without handing off leadership", "err", err)
		return
	}
	logger.Info("handed off leadership", "to", to)
}
