package raftnode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Snapshot streaming. Neither end holds the state in memory:
//
//   - the leader streams from the held Pebble snapshot (an iterator over a
//     consistent view) in snapshotChunk messages on a Peer.Snapshot stream of
//     its own; the first message carries the cluster id and the MsgSnap;
//   - the receiver hands the chunks, as a reader, to StateMachine.Stage,
//     which checks them and writes them to disk (kv: one sstable in the data
//     dir) as they arrive; only when the stream is whole and its checksum
//     matched does it hand raft the MsgSnap, whose Data is then the staged
//     snapshot's name, not the state;
//   - the Ready goroutine installs it (install.go), or discards it if raft
//     did not take the message (discardStaged).
//
// Neither end has a fixed deadline: a transfer ends when it makes no
// progress for snapshotStall, however long it takes in all.

const (
	snapshotChunk = 256 << 10
	// snapshotStall: a transfer that moves no chunk for this long (a peer
	// that stopped reading, a sender that vanished) is abandoned. The
	// receiver's last step, syncing the staged table, happens before its
	// answer and counts against it; a sync of a GiB takes seconds.
	snapshotStall = 30 * time.Second
)

// progressContext is ctx, cancelled once idle passes without a call to
// progress. stop releases it.
func progressContext(ctx context.Context, clock Clock, idle time.Duration) (_ context.Context, progress, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	t := clock.AfterFunc(idle, func() {
		cancel(fmt.Errorf("snapshot transfer made no progress for %v", idle))
	})
	return ctx, func() { t.Reset(idle) }, func() { t.Stop(); cancel(nil) }
}

// withCause names why ctx ended, if it did: gRPC reports only "canceled".
func withCause(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); err != nil && cause != nil && !errors.Is(err, cause) {
		return fmt.Errorf("%w (%v)", err, cause)
	}
	return err
}

func (t *transport) sendSnapshot(p *peer, m *pb.Message) {
	held := t.n.snaps.acquire(m.GetSnapshot().GetMetadata().GetIndex())
	if held == nil {
		reporter{t.n}.ReportSnapshot(p.id, raft.SnapshotFailure)
		return
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer t.n.snaps.release(held)
		status := raft.SnapshotFinish
		start := time.Now()
		err := t.streamSnapshot(p, m, held)
		t.n.snapshotSent(p.id, held.index, start, err)
		if err != nil {
			t.n.cfg.Logger.Warn("sending snapshot failed", "peer", p.id, "err", err)
			status = raft.SnapshotFailure
		}
		reporter{t.n}.ReportSnapshot(p.id, status)
	}()
}

func (t *transport) streamSnapshot(p *peer, m *pb.Message, held *heldSnapshot) (err error) {
	base, cancel := t.context(0)
	defer cancel()
	ctx, progress, stop := progressContext(base, t.n.cfg.Clock, snapshotStall)
	defer stop()
	defer func() { err = withCause(ctx, err) }()
	s, err := cxkvrpc.NewPeerClient(p.conn).Snapshot(ctx)
	if err != nil {
		return err
	}
	head, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	if err := s.Send(&cxkvpb.SnapshotChunk{ClusterId: t.n.clusterID, Message: head}); err != nil {
		return err
	}
	send := func(data []byte) error { return s.Send(&cxkvpb.SnapshotChunk{Data: data}) }
	w := newChunkWriter(send, progress)
	if _, err := held.state.WriteTo(w); err != nil {
		return err
	}
	if err := w.flush(); err != nil {
		return err
	}
	_, err = s.CloseAndRecv()
	return err
}

// chunkWriter cuts a stream into messages of snapshotChunk bytes: the
// peer stream's and a backup's.
type chunkWriter struct {
	send     func([]byte) error
	progress func()
	buf      []byte
}

func newChunkWriter(send func([]byte) error, progress func()) *chunkWriter {
	return &chunkWriter{send: send, progress: progress, buf: make([]byte, 0, snapshotChunk)}
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), snapshotChunk-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == snapshotChunk {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// flush sends what is buffered. gRPC has encoded the message when Send
// returns, so the buffer is reused.
func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if err := w.send(w.buf); err != nil {
		return err
	}
	w.progress()
	w.buf = w.buf[:0]
	return nil
}

// Snapshot receives a state stream into the state machine's staging, then
// hands raft the MsgSnap naming what was staged.
func (s *peerService) Snapshot(stream cxkvrpc.Peer_SnapshotServer) (err error) {
	start := time.Now()
	ctx, progress, stop := progressContext(stream.Context(), s.n.cfg.Clock, snapshotStall)
	defer stop()
	defer func() { err = withCause(ctx, err) }()
	r := newChunkReader(ctx, stream.Recv, progress)
	first, err := r.recv()
	if err != nil {
		return err
	}
	m := &pb.Message{}
	if err := proto.Unmarshal(first.GetMessage(), m); err != nil {
		return err
	}
	if err := s.n.peerGuard.admit(stream.Context(), first.GetClusterId(), m.GetFrom()); err != nil {
		return err
	}
	if m.GetType() != pb.MsgSnap || m.GetSnapshot() == nil {
		return errors.New("snapshot stream does not start with a MsgSnap")
	}
	r.cur = first.GetData()
	name, err := s.n.sm.Stage(r)
	if err != nil {
		return fmt.Errorf("member %d refuses the snapshot at %d: %w", s.n.cfg.ID, m.GetSnapshot().GetMetadata().GetIndex(), err)
	}
	m.Snapshot.Data = []byte(name)
	if err := s.deliver(ctx, m, len(name)); err != nil {
		s.n.sm.Discard(name)
		return err
	}
	s.n.snapshotReceived(m, int(r.n), start)
	return stream.SendAndClose(&cxkvpb.PeerAck{})
}

// chunkReader reads the data of a stream of SnapshotChunks. A goroutine
// receives, so that a stalled sender cannot block the reader past ctx; it
// ends when the handler returns, which ends the stream.
type chunkReader struct {
	ctx      context.Context
	chunks   chan chunkOrErr
	progress func()
	cur      []byte
	n        int64
}

type chunkOrErr struct {
	c   *cxkvpb.SnapshotChunk
	err error
}

func newChunkReader(ctx context.Context, recv func() (*cxkvpb.SnapshotChunk, error), progress func()) *chunkReader {
	r := &chunkReader{ctx: ctx, chunks: make(chan chunkOrErr, 1), progress: progress}
	go func() {
		for {
			c, err := recv()
			select {
			case r.chunks <- chunkOrErr{c, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return r
}

func (r *chunkReader) recv() (*cxkvpb.SnapshotChunk, error) {
	select {
	case c := <-r.chunks:
		if c.err == nil {
			r.progress()
		}
		return c.c, c.err
	case <-r.ctx.Done():
		return nil, r.ctx.Err()
	}
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		c, err := r.recv()
		if err != nil {
			return 0, err // io.EOF when the sender closed the stream
		}
		r.cur = c.GetData()
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	r.n += int64(n)
	return n, nil
}

// stepped records a MsgSnap handed to raft; Ready goroutine only.
func (n *Node) stepped(m *pb.Message) {
	if m.GetType() == pb.MsgSnap {
		n.steppedSnaps = append(n.steppedSnaps, string(m.GetSnapshot().GetData()))
	}
}

// discardStaged drops the staged snapshots of every MsgSnap raft was given
// but did not install in rd (it refused one that is not newer than what the
// member has, or a newer one replaced it): raft puts a snapshot it accepted
// in the very next Ready, so after that Ready nothing else will ask for
// them. The one rd installed was consumed by Restore.
func (n *Node) discardStaged(rd raft.Ready) {
	var installed string
	if rd.Snapshot != nil && !raft.IsEmptySnap(rd.Snapshot) {
		installed = string(rd.Snapshot.GetData())
	}
	for _, name := range n.steppedSnaps {
		if name == installed {
			continue
		}
		if err := n.sm.Discard(name); err != nil {
			n.cfg.Logger.Warn("discarding a snapshot raft did not take", "name", name, "err", err)
		}
	}
	n.steppedSnaps = n.steppedSnaps[:0]
}
