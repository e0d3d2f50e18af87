package raftnode

import "sync/atomic"

// metrics count what batching is worth: entries persisted per synced write.
type metrics struct {
	syncs   atomic.Uint64
	entries atomic.Uint64
}

func (m *metrics) persisted(entries int, synced bool) {
	m.entries.Add(uint64(entries))
	if synced {
		m.syncs.Add(1)
	}
}

// Metrics reports how many synced writes the member made and how many log
// entries they carried.
func (n *Node) Metrics() (syncs, entries uint64) {
	return n.metrics.syncs.Load(), n.metrics.entries.Load()
}
