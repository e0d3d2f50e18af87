package raftnodetest

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/cxkv/cxkv/raftnode"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Net is a fault-injecting network between the members of one cluster: each
// member's transport is wrapped (Config.WrapTransport) so that what it sends
// passes through the Net first. A cut link (from, to) loses everything from
// from to to, so partitions of any shape, one-way ones included, are sets of
// cuts; a dropped kind (Drop) loses only messages of one type on one link.
// Loss, duplication, delay and reordering apply to every link, each
// decision drawn from one seeded RNG. Snapshots are never lost or delayed
// except by a cut, where the sender is told the snapshot failed: raft sends
// a peer nothing more until it hears what became of its snapshot.
type Net struct {
	mu     sync.Mutex
	rng    *rand.Rand
	cut    map[[2]uint64]bool
	kinds  map[droppedKind]bool
	loss   Loss
	counts NetCounts
}

// Loss is what happens to messages on every link that is not cut.
type Loss struct {
	Drop      float64       // probability a message is lost
	Duplicate float64       // probability it is delivered twice
	Delay     time.Duration // every message arrives this much later
	Reorder   float64       // probability it is held back up to ReorderBy, so later ones overtake it
	ReorderBy time.Duration
}

type droppedKind struct {
	from, to uint64
	t        pb.MessageType
}

// NetCounts are the messages the Net interfered with.
type NetCounts struct {
	Cut, Dropped, Duplicated, Delayed, Reordered int
}

// NewNet is a healed network whose decisions come from seed.
func NewNet(seed uint64) *Net {
	return &Net{rng: rand.New(rand.NewPCG(seed, 0x6e6574)), cut: map[[2]uint64]bool{}, kinds: map[droppedKind]bool{}}
}

// Wrap is member id's Config.WrapTransport.
func (n *Net) Wrap(id uint64) func(raftnode.Transport, raftnode.Reporter) raftnode.Transport {
	return func(next raftnode.Transport, r raftnode.Reporter) raftnode.Transport {
		return &faultTransport{net: n, next: next, r: r, timers: map[*time.Timer]bool{}}
	}
}

// Cut loses every message from from to to until Heal.
func (n *Net) Cut(from, to uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[[2]uint64{from, to}] = true
}

// Drop loses every message of type t from from to to until Heal, and
// nothing else: a test can lose one step of a protocol while the link keeps
// carrying heartbeats, so that the receiver does not start an election of
// its own (as it would behind a Cut).
func (n *Net) Drop(from, to uint64, t pb.MessageType) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.kinds[droppedKind{from, to, t}] = true
}

// Isolate cuts id from every member in ids, both ways.
func (n *Net) Isolate(id uint64, ids []uint64) {
	for _, o := range ids {
		if o != id {
			n.Cut(id, o)
			n.Cut(o, id)
		}
	}
}

// SetLoss sets the loss on every link.
func (n *Net) SetLoss(l Loss) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.loss = l
}

// Heal removes every cut and all loss.
func (n *Net) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut = map[[2]uint64]bool{}
	n.kinds = map[droppedKind]bool{}
	n.loss = Loss{}
}

// Counts are the messages interfered with so far.
func (n *Net) Counts() NetCounts {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.counts
}

type faultTransport struct {
	net     *Net
	next    raftnode.Transport
	r       raftnode.Reporter
	mu      sync.Mutex // orders late deliveries against Stop
	stopped bool
	timers  map[*time.Timer]bool
}

func (t *faultTransport) Send(msgs []*pb.Message) {
	n := t.net
	var now []*pb.Message
	type later struct {
		m *pb.Message
		d time.Duration
	}
	var lates []later
	n.mu.Lock()
	for _, m := range msgs {
		if n.cut[[2]uint64{m.GetFrom(), m.GetTo()}] || n.kinds[droppedKind{m.GetFrom(), m.GetTo(), m.GetType()}] {
			n.counts.Cut++
			if m.GetType() == pb.MsgSnap {
				t.r.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
			}
			continue
		}
		if m.GetType() == pb.MsgSnap {
			now = append(now, m)
			continue
		}
		l := n.loss
		if l.Drop > 0 && n.rng.Float64() < l.Drop {
			n.counts.Dropped++
			continue
		}
		copies := 1
		if l.Duplicate > 0 && n.rng.Float64() < l.Duplicate {
			n.counts.Duplicated++
			copies = 2
		}
		d := l.Delay
		if d > 0 {
			n.counts.Delayed++
		}
		if l.Reorder > 0 && l.ReorderBy > 0 && n.rng.Float64() < l.Reorder {
			n.counts.Reordered++
			d += time.Duration(n.rng.Int64N(int64(l.ReorderBy)))
		}
		for range copies {
			if d > 0 {
				lates = append(lates, later{m, d})
			} else {
				now = append(now, m)
			}
		}
	}
	n.mu.Unlock()
	if len(now) > 0 {
		t.next.Send(now)
	}
	if len(lates) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	for _, l := range lates {
		var tm *time.Timer
		tm = time.AfterFunc(l.d, func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			delete(t.timers, tm)
			if !t.stopped {
				t.next.Send([]*pb.Message{l.m})
			}
		})
		t.timers[tm] = true
	}
}

func (t *faultTransport) Stop() {
	t.mu.Lock()
	t.stopped = true
	for tm := range t.timers {
		tm.Stop()
	}
	t.timers = nil
	t.mu.Unlock()
	t.next.Stop()
}
