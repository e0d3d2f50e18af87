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
	sent := c.filter([]*pb.Message{appendTo(2, 5, 0), hb, withEntries, appendTo(2, 6, 0)}, clock, 0)
	if !slices.Equal(sent, []*pb.Message{hb, withEntries}) {
		t.Fatalf("sent %v; want the heartbeat and the append with entries", sent)
	}
	if got := commitsHeld(&c); len(got) != 1 || got[2] != 6 {
		t.Fatalf("held %v; want follower 2's newest (commit 6)", got)
	}

	// An append with entries to a follower overtakes what is held for it,
	// and only for it.
	c.filter([]*pb.Message{appendTo(3, 6, 0)}, clock, 0)
	c.filter([]*pb.Message{appendTo(2, 7, 2)}, clock, 0)
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
	c.filter([]*pb.Message{appendTo(2, 8, 0)}, clock, 0)
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
	c.filter([]*pb.Message{appendTo(2, 9, 0)}, clock, 0)
	c.drop()
	if c.due() != nil || len(c.held) != 0 {
		t.Fatal("still holding after drop")
	}
	c.stop()
}

// A follower that forwarded a proposal or a read waits for the commit
// notice to answer it, so its notices go out at once for forwarderTicks
// ticks after it last forwarded; after that they are held again. A
// follower that only answers (3) is not marked.
func TestCommitNoticesToAForwardingFollowerAreNotHeld(t *testing.T) {
	clock := clockwork.NewFakeClock()
	c := commitNotices{delay: time.Millisecond}
	defer c.stop()
	c.received(&pb.Message{Type: pb.MsgReadIndex.Enum(), From: new(uint64(2))}, 10)
	c.received(&pb.Message{Type: pb.MsgHeartbeatResp.Enum(), From: new(uint64(3))}, 10)
	c.received(&pb.Message{Type: pb.MsgAppResp.Enum(), From: new(uint64(3))}, 10)
	for _, tick := range []uint64{10, 11, 10 + forwarderTicks} {
		notice := appendTo(2, tick, 0)
		if sent := c.filter([]*pb.Message{notice, appendTo(3, tick, 0)}, clock, tick); !slices.Equal(sent, []*pb.Message{notice}) {
			t.Fatalf("tick %d: sent %v; want the forwarder's notice only", tick, sent)
		}
	}
	c.take()
	late := uint64(10 + forwarderTicks + 1)
	if sent := c.filter([]*pb.Message{appendTo(2, late, 0)}, clock, late); len(sent) != 0 {
		t.Fatalf("tick %d: sent %v; want it held, %d ticks after the forward", late, sent, late-10)
	}
}

// A forwarded proposal marks its follower as a forwarded read does.
func TestCommitNoticesToAFollowerForwardingAWriteAreNotHeld(t *testing.T) {
	clock := clockwork.NewFakeClock()
	c := commitNotices{delay: time.Millisecond}
	defer c.stop()
	c.received(&pb.Message{Type: pb.MsgProp.Enum(), From: new(uint64(3))}, 5)
	notice := appendTo(3, 5, 0)
	if sent := c.filter([]*pb.Message{notice}, clock, 5); !slices.Equal(sent, []*pb.Message{notice}) {
		t.Fatalf("sent %v; want the notice to the follower that forwarded a write", sent)
	}
}
