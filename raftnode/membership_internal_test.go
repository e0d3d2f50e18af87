package raftnode

import (
	"testing"

	"github.com/cxkv/cxkv/api/cxkvpb"
)

// Asking whether a peer was removed runs for every message a member
// receives and every batch it applies: it must not copy the member table
// (cloning each member's record was 2.4% of the members' CPU at
// lock-contended).
func TestRemovedCheckDoesNotCopyTheTable(t *testing.T) {
	tbl := newMemberTable()
	for id := uint64(1); id <= 5; id++ {
		tbl.members[id] = &cxkvpb.Member{Id: id, Addr: "127.0.0.1:1", Started: true}
	}
	tbl.removed[9] = true
	n := &Node{}
	n.cfg.ID = 1
	n.members.set(tbl)
	if n.refuseRemovedPeer(9) == nil || n.refuseRemovedPeer(2) != nil || n.selfRemoved() {
		t.Fatal("the checks disagree with the table")
	}
	if a := testing.AllocsPerRun(100, func() { _ = n.refuseRemovedPeer(2) }); a != 0 {
		t.Fatalf("checking a peer allocated %v times; want 0", a)
	}
	if a := testing.AllocsPerRun(100, func() { n.selfRemoved() }); a != 0 {
		t.Fatalf("checking the member itself allocated %v times; want 0", a)
	}
}
