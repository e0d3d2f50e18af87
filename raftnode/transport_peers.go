package raftnode

// setPeers makes the transport's peers the members of addrs (this member
// aside): a new member is dialled, a removed one's stream ends, a member at
// a new address is dialled there. It runs when a configuration change is
// applied, and once at start.
func (t *transport) setPeers(addrs map[uint64]string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	for id, p := range t.peers {
		if addr, ok := addrs[id]; !ok || addr != p.addr {
			delete(t.peers, id)
			close(p.gone)
			if !ok {
				// A member moving to a new address keeps its series.
				t.n.metrics.removePeer(id)
			}
			// The stream goroutine returns on gone; the connection closes
			// once it has, so a send in progress fails instead of hanging.
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				p.conn.Close()
			}()
		}
	}
	for id, addr := range addrs {
		if id == t.n.cfg.ID || t.peers[id] != nil {
			continue
		}
		t.addPeer(id, addr)
	}
}
