package raftnode

import (
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	pb "go.etcd.io/raft/v3/raftpb"
)

func appendTo(to, commit uint64, entries int) *pb.Message {
	m := &pb.Message{Type: pb.MsgApp.Enum(), To: new(to), Commit: new(commit)}
	for range entries {
		m.Entries = append(m.Entries, &pb.Entry{})
	}
	return m
}

func heartbeatTo(to uint64) *pb.Message {
	return &pb.Message{Type: pb.MsgHeartbeat.Enum(), To: new(to)}
}

// commitsHeld is the commit index of each held append, by follower.
func commitsHeld(c *commitNotices) map[uint64]uint64 {
	out := map[uint64]uint64{}
	for id, m := range c.held {
		out[id] = m.GetCommit()
	}
	return out
}

func TestCommitNoticesHoldEntryLessAppendsUntilOvertakenOrDue(t *testing.T) {
	clock := clockwork.NewFakeClock()
	c := commitNotices{delay: time.Millisecond}
	if c.due() != nil {
		t.Fatal("due before anything was held")
	}

	// Entry-less appends are held, one per follower (the newest); the
	// rest goes out as it came.
	hb := heartbeatTo(2)
	withEntries := appendTo(3, 5, 1)
	sent := c.filter([]*pb.Message{appendTo(2, 5, 0), hb, withEntries, appendTo(2, 6, 0)}, clock)
	if !slices.Equal(sent, []*pb.Message{hb, withEntries}) {
		t.Fatalf("sent %v; want the heartbeat and the append with entries", sent)
	}
	if got := commitsHeld(&c); len(got) != 1 || got[2] != 6 {
		t.Fatalf("held %v; want follower 2's newest (commit 6)", got)
	}

	// An append with entries to a follower overtakes what is held for it,
	// and only for it.
	c.filter([]*pb.Message{appendTo(3, 6, 0)}, clock)
	c.filter([]*pb.Message{appendTo(2, 7, 2)}, clock)
	if got := commitsHeld(&c); len(got) != 1 || got[3] != 6 {
		t.Fatalf("held %v; want only follower 3's", got)
	}

	// At the delay the held appends are due, and taking them empties the
	// hold and disarms the timer.
	due := c.due()
	if due == nil {
		t.Fatal("nothing due while holding")
	}
	select {
	case <-due:
		t.Fatal("due before the delay")
	default:
	}
	clock.Advance(time.Millisecond)
	select {
	case <-due:
	case <-time.After(10 * time.Second):
		t.Fatal("not due after the delay")
	}
	taken := c.take()
	if len(taken) != 1 || taken[0].GetTo() != 3 || taken[0].GetCommit() != 6 {
		t.Fatalf("took %v; want follower 3's append", taken)
	}
	if c.due() != nil || len(c.held) != 0 {
		t.Fatal("still holding after take")
	}

	// Holding again arms the timer again.
	c.filter([]*pb.Message{appendTo(2, 8, 0)}, clock)
	clock.Advance(time.Millisecond)
	select {
	case <-c.due():
	case <-time.After(10 * time.Second):
		t.Fatal("not due after the delay, the second time")
	}
	if taken := c.take(); len(taken) != 1 || taken[0].GetCommit() != 8 {
		t.Fatalf("took %v the second time", taken)
	}

	// A member that stops leading forgets what it held.
	c.filter([]*pb.Message{appendTo(2, 9, 0)}, clock)
	c.drop()
	if c.due() != nil || len(c.held) != 0 {
		t.Fatal("still holding after drop")
	}
	c.stop()
}

// A follower that forwarded a read waits until it is told a commit index
// at least the log's last index when its request arrived, so its appends go
// out at once until one carries that index; after that they are held
// again. A follower that only answers is not marked.
func TestCommitNoticesToAFollowerForwardingAReadAreNotHeld(t *testing.T) {
	clock := clockwork.NewFakeClock()
	c := commitNotices{delay: time.Millisecond}
	defer c.stop()
	c.received(&pb.Message{Type: pb.MsgReadIndex.Enum(), From: new(uint64(2))}, 10)
	c.received(&pb.Message{Type: pb.MsgHeartbeatResp.Enum(), From: new(uint64(3))}, 10)
	c.received(&pb.Message{Type: pb.MsgAppResp.Enum(), From: new(uint64(3))}, 10)
	for _, commit := range []uint64{9, 10} {
		notice := appendTo(2, commit, 0)
		if sent := c.filter([]*pb.Message{notice, appendTo(3, commit, 0)}, clock); !slices.Equal(sent, []*pb.Message{notice}) {
			t.Fatalf("commit %d: sent %v; want the waiting follower's notice only", commit, sent)
		}
	}
	c.take()
	if sent := c.filter([]*pb.Message{appendTo(2, 11, 0)}, clock); len(sent) != 0 {
		t.Fatalf("sent %v; want it held once the follower was told commit 10", sent)
	}
}

// A forwarded write waits for its own entries, appended after the log's
// last index: an append with entries that tells an older commit index
// does not end the wait.
func TestCommitNoticesToAFollowerForwardingAWriteAreNotHeld(t *testing.T) {
	clock := clockwork.NewFakeClock()
	c := commitNotices{delay: time.Millisecond}
	defer c.stop()
	c.received(&pb.Message{Type: pb.MsgProp.Enum(), From: new(uint64(3)), Entries: []*pb.Entry{{}, {}}}, 5)
	c.filter([]*pb.Message{appendTo(3, 5, 2)}, clock) // the entries 6 and 7, commit 5
	notice := appendTo(3, 6, 0)
	if sent := c.filter([]*pb.Message{notice}, clock); !slices.Equal(sent, []*pb.Message{notice}) {
		t.Fatalf("commit 6: sent %v; want the notice to the follower waiting for 7", sent)
	}
	notice = appendTo(3, 7, 0)
	if sent := c.filter([]*pb.Message{notice}, clock); !slices.Equal(sent, []*pb.Message{notice}) {
		t.Fatalf("commit 7: sent %v; want the notice that ends the wait", sent)
	}
	if sent := c.filter([]*pb.Message{appendTo(3, 8, 0)}, clock); len(sent) != 0 {
		t.Fatalf("commit 8: sent %v; want it held after the wait ended", sent)
	}
	c.received(&pb.Message{Type: pb.MsgProp.Enum(), From: new(uint64(3)), Entries: []*pb.Entry{{}}}, 9)
	c.drop()
	if sent := c.filter([]*pb.Message{appendTo(3, 10, 0)}, clock); len(sent) != 0 {
		t.Fatalf("sent %v; want a former leader's waits forgotten", sent)
	}
}
