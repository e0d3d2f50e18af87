package raftnode

import (
	"time"

	"github.com/jonboulle/clockwork"
	pb "go.etcd.io/raft/v3/raftpb"
)

// commitNoticeDelay is how long the leader holds an append that carries no
// entries before sending it. Raft sends one to every follower each time the
// commit index moves, only to tell them so; with writes arriving one at a
// time (a sequential client, a lock hand-off) that doubled the peer traffic
// of a write: append, ack, then that notice and its ack, each a message to
// write, read, step and answer on both members, and on the follower a second
// Ready (the hard state's commit, then the apply). The next append to the
// follower carries the newer commit index, so a notice it overtakes says
// nothing; one that no append overtakes within the delay goes out then.
// Heartbeats carry the commit index too, so a follower learns it at the
// latest one heartbeat later even if a notice is lost.
//
// A follower that forwarded a write (raft's MsgProp: its client does not
// know the leader) answers that write only once it has applied it, and one
// that forwarded a linearizable read (MsgReadIndex) serves it only once it
// has applied up to the read index, so each waits on the commit index: the
// leader sends such a follower its notices at once until it has told it a
// commit index that covers what it forwarded (the log's last index when
// the request arrived, plus a forwarded write's own entries).
//
// The leader's own commit does not wait on this: it needs the followers'
// acks of the entries, which go out at once. What waits (at most the delay)
// is a follower that forwards nothing applying an entry: its serializable
// reads and its watch events, nothing a write's answer depends on.
var commitNoticeDelay = 2 * time.Millisecond

// commitNotices is the leader's held entry-less appends, one per follower:
// the newest raft asked for. Touched by the Ready loop only.
//
// Holding or dropping such an append is safe at any time: raft tolerates
// messages delayed, reordered or lost, and an entry-less append is nothing
// but a probe of the follower's log at its index and the commit index, both
// of which any later append to the same follower (of this leader's term)
// repeats or advances. A probe held back delays a lagging follower's catch-up
// by the delay at most.
type commitNotices struct {
	delay time.Duration // commitNoticeDelay when the member started
	held  map[uint64]*pb.Message
	timer clockwork.Timer // armed while held is not empty
	armed bool
	// waiting: follower -> the commit index it waits to be told, having
	// forwarded a write or a read.
	waiting map[uint64]uint64
}

// forwardedRequest says whether m is a request a follower forwarded to the
// leader and then waits on the commit index for: a write (MsgProp) or a
// linearizable read (MsgReadIndex).
func forwardedRequest(m *pb.Message) bool {
	t := m.GetType()
	return t == pb.MsgProp || t == pb.MsgReadIndex
}

// received notes a message a follower sent this leader when the log's
// last index was last: a forwarded request (forwardedRequest) makes it
// wait for a commit index of last, plus a proposal's entries (appended
// right after last, before this turn's own proposals).
func (c *commitNotices) received(m *pb.Message, last uint64) {
	if !forwardedRequest(m) {
		return
	}
	last += uint64(len(m.GetEntries())) // none in a read
	if c.waiting == nil {
		c.waiting = map[uint64]uint64{}
	}
	c.waiting[m.GetFrom()] = max(c.waiting[m.GetFrom()], last)
}

// waits says whether m goes to a follower waiting on the commit index,
// and forgets the wait once m tells the follower the index it waits for.
func (c *commitNotices) waits(m *pb.Message) bool {
	index, ok := c.waiting[m.GetTo()]
	if ok && m.GetCommit() >= index {
		delete(c.waiting, m.GetTo())
	}
	return ok
}

// filter returns the messages to send now: msgs without the entry-less
// appends, which it holds instead (each replacing the one held for its
// follower), and it forgets a held append that a later append to its
// follower in msgs overtakes; an append to a follower waiting on the commit
// index goes out at once. It arms the timer when it starts holding. msgs is
// filtered in place.
func (c *commitNotices) filter(msgs []*pb.Message, clock clockwork.Clock) []*pb.Message {
	out := msgs[:0]
	for _, m := range msgs {
		if m.GetType() != pb.MsgApp {
			out = append(out, m)
			continue
		}
		if waits := c.waits(m); len(m.GetEntries()) > 0 || waits {
			delete(c.held, m.GetTo())
			out = append(out, m)
			continue
		}
		if c.held == nil {
			c.held = map[uint64]*pb.Message{}
		}
		c.held[m.GetTo()] = m
	}
	if len(c.held) > 0 && !c.armed {
		if c.timer == nil {
			c.timer = clock.NewTimer(c.delay)
		} else {
			c.timer.Reset(c.delay)
		}
		c.armed = true
	}
	return out
}

// due is the timer's channel while something is held, nil otherwise (a
// select never takes a nil channel).
func (c *commitNotices) due() <-chan time.Time {
	if !c.armed {
		return nil
	}
	return c.timer.Chan()
}

// take returns the held appends, to be sent now, and holds nothing more.
// The timer fired (or is stopped): it is disarmed.
func (c *commitNotices) take() []*pb.Message {
	c.armed = false
	if len(c.held) == 0 {
		return nil
	}
	out := make([]*pb.Message, 0, len(c.held))
	for _, m := range c.held {
		out = append(out, m)
	}
	clear(c.held)
	return out
}

// drop forgets what is held and who waits: the member no longer leads, and
// a former leader's appends are news to no one.
func (c *commitNotices) drop() {
	clear(c.held)
	clear(c.waiting)
	c.stop()
}

// stop disarms the timer.
func (c *commitNotices) stop() {
	if c.armed {
		c.timer.Stop()
		c.armed = false
	}
}
