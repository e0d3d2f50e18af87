package raftnode

import (
	"context"
	"time"
)

// Shutdown stops the member as an operator's SIGTERM asks: a leader first
// hands its leadership to the most caught-up voter, waiting at most wait,
// so the cluster goes on after a round trip instead of an election timeout
// with no leader; then Stop. A member that does not lead, or a leader with
// no other live voter, stops at once.
func (n *Node) Shutdown(wait time.Duration) error {
	if n.Status().Role == "leader" {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		to, err := n.MoveLeader(ctx, 0)
		cancel()
		if err != nil {
			n.cfg.Logger.Warn("stopping without handing off leadership", "err", err)
		} else {
			n.cfg.Logger.Info("handed off leadership before stopping", "to", to)
		}
	}
	return n.Stop()
}
