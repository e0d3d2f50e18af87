package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/protobuf/proto"
)

// transport carries raft messages to peers: one long-lived gRPC stream per
// peer, fed from a queue bounded by count and bytes. A full queue drops
// messages (raft retransmits); a broken stream is reported unreachable and
// redialled with backoff, which starts over once a stream has carried
// messages. Snapshots go on their own stream so a large one never delays
// heartbeats (snapshotstream.go).
//
// Messages for a peer whose stream is down are dropped, not queued, and the
// queue is emptied when a stream breaks: raft expects a lossy transport and
// repeats what still matters, while a queue kept across an outage hands the
// returning peer hundreds of stale heartbeats and votes at once. Each stale
// heartbeat it answers makes the leader build another append for it, which
// held a leader's Ready loop for over a second, long enough for the other
// followers to give up on it and elect again: a second stall, one
// election timeout after the member came back.
type transport struct {
	n *Node
	// peers changes when the membership does (setPeers); mu guards it
	// against Send from a wrapper's goroutines and against Stop.
	mu      sync.RWMutex
	peers   map[uint64]*peer
	stopped bool
	wg      sync.WaitGroup
	stopc   chan struct{}
	// resets counts peer streams that broke after carrying messages (a
	// peer that is down, so the stream never opens, is not counted).
	resets atomic.Uint64
}

type peer struct {
	id     uint64
	addr   string
	q      chan queued
	queued atomic.Int64 // bytes in q
	// up: the peer is not known to be down. Send queues only then. It
	// starts true, so what raft sends while the first stream opens (a
	// member's first campaign) waits for it instead of being lost; it is
	// false from a failed dial or broken stream until a stream opens.
	up   atomic.Bool
	conn *grpc.ClientConn
	gone chan struct{} // closed when the peer leaves the membership
}

type queued struct {
	m    *pb.Message
	size int
}

const (
	peerQueue = 4096
	// peerQueueBytes bounds the messages waiting for one peer. Raft keeps
	// at most maxInflightBytes of appends unacknowledged per follower, so
	// only a peer that stopped reading fills it.
	peerQueueBytes = 2 * maxInflightBytes
	// peerBatchBytes bounds one message of the peer stream, well below
	// what the receiver accepts (cxkvpb.MaxMessageBytes). A raft message
	// above it on its own (an entry larger than maxSizePerMsg) goes alone:
	// an entry is at most cmpxchg.MaxTxnBytesLimit and some framing, below
	// the receiver's limit.
	peerBatchBytes = cxkvpb.MaxMessageBytes / 4
	peerBatchCount = 256
	// Reconnect backoff, from the first failure after a stream that worked.
	peerBackoffMin = 20 * time.Millisecond
	peerBackoffMax = 250 * time.Millisecond
	// peerConnectTimeout bounds one dial of a peer (a refused one ends at
	// once; this is for a peer that does not answer at all).
	peerConnectTimeout = 5 * time.Second
)

func newTransport(n *Node) *transport {
	t := &transport{n: n, peers: map[uint64]*peer{}, stopc: make(chan struct{})}
	t.setPeers(n.cfg.Peers)
	return t
}

// addPeer dials a peer and starts its stream; t.mu is held.
func (t *transport) addPeer(id uint64, addr string) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(t.n.peerDialCreds()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(cxkvpb.MaxMessageBytes), grpc.ForceCodecV2(cxkvrpc.Codec{})),
		// gRPC's own reconnect backoff (1 s growing to 2 min by default)
		// sits under the stream's: a restarted peer was reached only at the
		// connection's next attempt, up to a second or more after it was
		// back. One pace for both.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: peerBackoffMin, Multiplier: 2, Jitter: 0.2, MaxDelay: peerBackoffMax},
			MinConnectTimeout: peerConnectTimeout,
		}))
	if err != nil {
		t.n.cfg.Logger.Error("bad peer address", "peer", id, "addr", addr, "err", err)
		return
	}
	t.n.metrics.addPeer(id)
	p := &peer{id: id, addr: addr, q: make(chan queued, peerQueue), conn: conn, gone: make(chan struct{})}
	p.up.Store(true)
	t.peers[id] = p
	t.wg.Add(1)
	go func() { defer t.wg.Done(); t.stream(p) }()
}

// Stop ends the peer streams and closes the connections.
func (t *transport) Stop() {
	t.mu.Lock()
	t.stopped = true
	t.mu.Unlock()
	close(t.stopc)
	t.wg.Wait()
	for _, p := range t.peers {
		p.conn.Close()
	}
}

// context is cancelled when the transport stops (or after timeout, if set),
// so no stream outlives Stop.
func (t *transport) context(timeout time.Duration) (context.Context, context.CancelFunc) {
	var ctx context.Context
	var cancel context.CancelFunc
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(context.Background(), timeout)
	} else {
		ctx, cancel = context.WithCancel(context.Background())
	}
	go func() {
		select {
		case <-t.stopc:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Send queues messages; it never blocks.
func (t *transport) Send(msgs []*pb.Message) {
	for _, m := range msgs {
		t.n.metrics.heartbeat(m, true)
		t.mu.RLock()
		p := t.peers[m.GetTo()]
		t.mu.RUnlock()
		if p == nil {
			continue
		}
		if m.GetType() == pb.MsgSnap {
			t.sendSnapshot(p, m)
			continue
		}
		if !p.up.Load() {
			t.n.metrics.peerMessages(p.id, 1, errPeerDown)
			reporter{t.n}.ReportUnreachable(p.id)
			continue
		}
		size := proto.Size(m)
		if p.queued.Load()+int64(size) > peerQueueBytes {
			t.n.metrics.peerMessages(p.id, 1, errPeerQueueFull)
			reporter{t.n}.ReportUnreachable(p.id)
			continue
		}
		select {
		case p.q <- queued{m, size}:
			p.queued.Add(int64(size))
		default:
			t.n.metrics.peerMessages(p.id, 1, errPeerQueueFull)
			reporter{t.n}.ReportUnreachable(p.id)
		}
	}
}

func (t *transport) stream(p *peer) {
	backoff := peerBackoffMin
	broke := false // the last stream broke after carrying messages
	for {
		sent, err := t.streamOnce(p)
		select {
		case <-t.stopc:
			return
		case <-p.gone:
			return
		default:
		}
		if sent {
			backoff = peerBackoffMin // the peer was healthy: retry soon
			if err != nil {
				t.resets.Add(1)
			}
		}
		if isRemovedStatus(err, t.n.cfg.ID) {
			t.n.halt(t.n.removedError())
			return
		}
		if err != nil {
			t.n.peerStream(p.id, 0, err)
			t.n.cfg.Logger.Debug("peer stream broke", "peer", p.id, "err", err)
			reporter{t.n}.ReportUnreachable(p.id)
			if broke && !sent {
				t.checkLeaderGone(p) // deadleader.go
			}
		}
		broke = sent && err != nil
		select {
		case <-t.stopc:
			return
		case <-p.gone:
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, peerBackoffMax)
	}
}

func (t *transport) streamOnce(p *peer) (sent bool, err error) {
	ctx, cancel := t.context(0)
	defer cancel()
	s, err := cxkvrpc.NewPeerClient(p.conn).Send(ctx)
	if err != nil {
		t.down(p)
		return false, err
	}
	p.up.Store(true)
	defer t.down(p)
	// The peer answers nothing until the stream ends, and this member may
	// send it nothing for as long as a leader lives (a follower to a
	// follower). A stream that broke meanwhile (the peer restarted) would
	// be found broken only by the next message, and lose it: the first
	// pre-vote request or answer between the survivors of a leader's death,
	// whose loss costs another election timeout. So the stream's end is
	// awaited from the start: it ends this stream at once, and the peer is
	// redialled while there is nothing to send.
	var endErr error
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		endErr = s.RecvMsg(&cxkvpb.PeerAck{})
		if endErr == nil {
			endErr = errPeerStreamEnded
		}
	}()
	defer func() {
		cancel()
		<-ended
	}()
	t.n.peerStream(p.id, 0, nil)
	batch := &cxkvpb.RaftBatch{ClusterId: t.n.clusterID, From: t.n.cfg.ID, To: p.id}
	// next is a message taken from the queue that did not fit in the
	// previous batch; it starts the next one.
	var next *queued
	take := func(q queued) {
		p.queued.Add(-int64(q.size))
		next = &q
	}
	for {
		if next == nil {
			select {
			case q := <-p.q:
				take(q)
			case <-ended:
				return sent, endErr
			case <-ctx.Done():
				return sent, ctx.Err()
			case <-p.gone:
				return sent, nil
			}
		}
		batch.Messages = batch.Messages[:0]
		size := 0
		for next != nil && len(batch.Messages) < peerBatchCount && (size == 0 || size+next.size <= peerBatchBytes) {
			data, err := proto.Marshal(next.m)
			if err != nil {
				return sent, err
			}
			batch.Messages = append(batch.Messages, data)
			size += next.size
			next = nil
			select {
			case q := <-p.q:
				take(q)
			default:
			}
		}
		err := s.Send(batch)
		if errors.Is(err, io.EOF) {
			// The peer ended the stream; its status says why.
			<-ended
			err = endErr
		}
		t.n.peerStream(p.id, len(batch.Messages), err)
		if err != nil {
			return sent, err
		}
		sent = true
	}
}

// down marks p's stream down and empties its queue: what was queued for the
// stream that broke is stale by the time another opens.
func (t *transport) down(p *peer) {
	p.up.Store(false)
	for {
		select {
		case q := <-p.q:
			p.queued.Add(-int64(q.size))
			t.n.metrics.peerMessages(p.id, 1, errPeerDown)
		default:
			return
		}
	}
}

// PeerStreamResets is how many of this member's streams to its peers broke
// after carrying messages.
func (n *Node) PeerStreamResets() uint64 { return n.grpcPeers.resets.Load() }

// peerService receives what other members' transports send.
type peerService struct {
	cxkvrpc.UnimplementedPeerServer
	n *Node
}

func (s *peerService) Send(stream cxkvrpc.Peer_SendServer) error {
	// The stream is read on a goroutine of its own: a Recv waiting for the
	// peer's next batch ends only when the handler returns, and the
	// handler must return when the member stops, or the server's graceful
	// stop waits for the peer to hang up, which it never does by itself.
	read := make(chan error, 1)
	go func() { read <- s.receive(stream) }()
	select {
	case err := <-read:
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&cxkvpb.PeerAck{})
		}
		return err
	case <-s.n.stopc:
		return toStatus(errStopping)
	}
}

// receive hands the batches a peer sends to the Ready loop until the
// stream or a batch fails; io.EOF is the peer's end of the stream.
func (s *peerService) receive(stream cxkvrpc.Peer_SendServer) error {
	var admitted uint64 // the sender peerGuard admitted this stream for
	for {
		batch, err := stream.Recv()
		if err != nil {
			return err
		}
		if admitted == 0 || batch.GetFrom() != admitted || batch.GetClusterId() != s.n.clusterID {
			if err := s.n.peerGuard.admit(stream.Context(), batch.GetClusterId(), batch.GetFrom()); err != nil {
				return err
			}
			admitted = batch.GetFrom()
		}
		if err := s.n.refuseRemovedPeer(batch.GetFrom()); err != nil {
			return toStatus(err)
		}
		for _, data := range batch.GetMessages() {
			m := &pb.Message{}
			if err := proto.Unmarshal(data, m); err != nil {
				return err
			}
			if err := s.n.peerGuard.sender(admitted, m.GetFrom()); err != nil {
				return err
			}
			if m.GetType() == pb.MsgSnap {
				// Its Data would be taken for a staged snapshot's name.
				return fmt.Errorf("member %d: a snapshot arrived on the message stream from member %d; snapshots have their own", s.n.cfg.ID, batch.GetFrom())
			}
			s.n.metrics.heartbeat(m, false)
			if err := s.deliver(stream.Context(), m, len(data)); err != nil {
				return err
			}
		}
	}
}

// deliver hands a received message of size bytes to the Ready loop, first
// waiting for room in the member's received-bytes budget (budget.go).
func (s *peerService) deliver(ctx context.Context, m *pb.Message, size int) error {
	if err := s.n.receivedBytes.take(ctx, size); err != nil {
		return err
	}
	select {
	case s.n.recvc <- received{m, size}:
		return nil
	case <-ctx.Done():
		s.n.receivedBytes.give(size)
		return ctx.Err()
	case <-s.n.stopc:
		s.n.receivedBytes.give(size)
		return errStopping
	}
}

// received is a peer's message on its way to the Ready loop, with the bytes
// it holds of the received budget.
type received struct {
	m    *pb.Message
	size int
}

// Raft's flow control towards each follower.
const (
	maxSizePerMsg    = 1 << 20
	maxInflightBytes = 32 << 20
)
