package raftnode

// Watch history retention. The history (kv's events) is what Watch replays;
// it is kept for the last HistoryEntries applied indexes, whatever the log
// keeps: log compaction decides when a lagging member needs a snapshot,
// retention decides how far back a watcher may resume. They used to be one
// setting, so a member with a long catch-up log kept a long history too.
//
// Forgetting history is local (each member keeps its own, from its own
// applied index) and is not part of Apply: it runs in the Ready goroutine
// after an apply batch, in steps of a sixteenth of the window so that one
// range deletion covers many indexes.

// maybeCompactHistory forgets the history older than the window once it
// has grown a step past it. historyFloor caches the store's floor (every
// event at or below it is gone) so the check costs no read.
func (n *Node) maybeCompactHistory() error {
	keep := n.cfg.HistoryEntries
	applied := n.applied.get()
	step := max(keep/16, 1)
	if applied < n.historyFloor+keep+step {
		return nil
	}
	floor := applied - keep
	if err := n.store.CompactEvents(floor + 1); err != nil {
		return err
	}
	n.historyFloor = floor
	return nil
}

// resetHistoryFloor reads the store's floor: on open, and after a snapshot
// install restarted the history.
func (n *Node) resetHistoryFloor() error {
	first, err := n.store.FirstEventIndex()
	if err != nil {
		return err
	}
	n.historyFloor = first - 1
	return nil
}
