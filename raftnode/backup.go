package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cxkv/cxkv/kv"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cxkv/cxkv/api/cxkvpb"
	"github.com/cxkv/cxkv/api/cxkvrpc"
	"go.etcd.io/raft/v3"
)

// Backups. A backup is the snapshot stream members send each other
// (kv/snapshot.go), taken from the member that answers: a consistent view
// at one applied index, streamed from a Pebble snapshot in chunks, so
// neither the member nor the client holds the state in memory.

// Snapshot streams a backup of the member's state. Unless serializable, the
// view is taken after a linearizable read, so it holds every write
// acknowledged before the request.
func (s *kvService) Snapshot(r *cxkvpb.SnapshotRequest, stream cxkvrpc.KV_SnapshotServer) error {
	ctx := stream.Context()
	if err := s.read(ctx, r.GetSerializable()); err != nil {
		return toStatus(err)
	}
	ss, err := s.n.snapshotNow(ctx)
	if err != nil {
		return toStatus(err)
	}
	defer ss.Close()
	h := s.header()
	h.AppliedIndex = ss.Index()
	first := true
	send := func(data []byte) error {
		resp := &cxkvpb.SnapshotResponse{Data: data}
		if first {
			resp.Header, first = h, false
		}
		return stream.Send(resp)
	}
	w := newChunkWriter(send, func() {})
	if _, err := ss.WriteTo(w); err != nil {
		return toStatus(err)
	}
	if err := w.flush(); err != nil {
		return toStatus(err)
	}
	return nil
}

// snapshotNow captures the state at the applied index. The state machine
// is only asked from the Ready goroutine (its contract), with the applier
// idle, so between two applies.
func (n *Node) snapshotNow(ctx context.Context) (StateSnapshot, error) {
	type taken struct {
		ss  StateSnapshot
		err error
	}
	var mu sync.Mutex
	abandoned := false
	done := make(chan taken, 1)
	take := func(*raft.RawNode) {
		// The view must be at exactly the applied index: with the applier
		// idle, as for the member's own snapshots.
		n.applier.wait()
		err := n.applier.failed()
		var ss StateSnapshot
		if err == nil {
			ss, err = n.sm.Snapshot()
		}
		mu.Lock()
		defer mu.Unlock()
		if abandoned && err == nil {
			ss.Close() // nobody will stream it
			return
		}
		done <- taken{ss, err}
	}
	select {
	case n.onRaftc <- take:
	case <-ctx.Done():
		return nil, contextError(ctx.Err(), false)
	case <-n.stopc:
		return nil, errStopping
	}
	select {
	case t := <-done:
		return t.ss, t.err
	case <-n.stopc:
		mu.Lock()
		defer mu.Unlock()
		abandoned = true
		select {
		case t := <-done:
			if t.err == nil {
				t.ss.Close()
			}
		default:
		}
		return nil, errStopping
	}
}

// BackupInfo describes a checked backup: index, keys, size, checksum.
type BackupInfo = kv.SnapshotInfo

// InspectBackup reads a whole backup and checks it as a restore would,
// writing nothing.
func InspectBackup(r io.Reader) (BackupInfo, error) { return kv.InspectSnapshot(r) }

// RestoreConfig names the member a backup becomes.
type RestoreConfig struct {
	DataDir string
	ID      uint64
	// Peers is the new cluster's membership, this member included: every
	// member of it is restored from the same backup with the same Peers.
	Peers map[uint64]string
	// ClusterToken, with the member ids, makes the new cluster's id, as
	// Config.ClusterToken does at a bootstrap: every member of the new
	// cluster is restored with the same token.
	ClusterToken string
	FS           vfs.FS // default: the OS's
}

// RestoreBackup creates the data dir of a member of a new cluster from a
// backup: the backup's state with the new cluster's membership, and a log
// that starts after the backup's index, so indexes (and fencing tokens) go
// on growing from where the backup left them. open is called twice: the
// backup is checked in full before anything is created, then read into the
// data dir. A data dir that exists and is not empty is refused, and a
// failure after creating it removes it: a refused restore leaves nothing.
func RestoreBackup(cfg RestoreConfig, open func() (io.ReadCloser, error)) (BackupInfo, error) {
	if cfg.FS == nil {
		cfg.FS = vfs.Default
	}
	if cfg.ID == 0 {
		return BackupInfo{}, errors.New("restore: member id must be positive")
	}
	if _, ok := cfg.Peers[cfg.ID]; !ok {
		return BackupInfo{}, fmt.Errorf("restore: the cluster does not name member %d", cfg.ID)
	}
	if names, err := cfg.FS.List(cfg.DataDir); err == nil && len(names) > 0 {
		return BackupInfo{}, fmt.Errorf("restore: data dir %s is not empty (%d entries); restore creates a new member's data dir, give an empty or new one", cfg.DataDir, len(names))
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return BackupInfo{}, fmt.Errorf("restore: data dir %s: %w", cfg.DataDir, err)
	}
	info, err := readBackup(open, InspectBackup)
	if err != nil {
		return BackupInfo{}, err
	}
	if info.Applied == 0 {
		return BackupInfo{}, errors.New("restore: the backup holds no applied state (index 0)")
	}
	if err := restoreInto(cfg, info, open); err != nil {
		cfg.FS.RemoveAll(cfg.DataDir)
		return BackupInfo{}, err
	}
	return info, nil
}

func readBackup[T any](open func() (io.ReadCloser, error), read func(io.Reader) (T, error)) (T, error) {
	var zero T
	r, err := open()
	if err != nil {
		return zero, fmt.Errorf("restore: %w", err)
	}
	defer r.Close()
	out, err := read(r)
	if err != nil {
		return zero, fmt.Errorf("restore: the backup is refused: %w", err)
	}
	return out, nil
}

// restoreInto installs the backup the way a member installs a snapshot a
// leader sent (install.go): staged, then the install record, the state
// replaced, and the log reset to the snapshot's point.
func restoreInto(cfg RestoreConfig, info BackupInfo, open func() (io.ReadCloser, error)) error {
	voters := slices.Sorted(maps.Keys(cfg.Peers))
	cs := &pb.ConfState{Voters: voters}
	csData, err := proto.Marshal(cs)
	if err != nil {
		return err
	}
	store, err := kv.Open(cfg.DataDir, kv.Options{FS: cfg.FS})
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer store.Close()
	staged, err := readBackup(open, func(r io.Reader) (kv.StagedState, error) { return store.StageState(r, csData) })
	if err != nil {
		return err
	}
	if staged.Applied != info.Applied || staged.Checksum != info.Checksum {
		return fmt.Errorf("restore: the backup changed while it was read (index %d then %d)", info.Applied, staged.Applied)
	}
	// The new cluster's log starts after the backup's index, in term 1:
	// every member restored from the backup holds the same point, so none
	// needs a snapshot from another.
	index, term := info.Applied, uint64(1)
	meta := &pb.SnapshotMetadata{Index: &index, Term: &term, ConfState: cs}
	log := store.RaftLog()
	if err := log.BeginInstall(meta); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := store.InstallStaged(staged.Name); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	hs := &pb.HardState{Term: proto.Uint64(term), Vote: proto.Uint64(0), Commit: proto.Uint64(index)}
	if err := log.FinishInstall(meta, hs, nil); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	// The backup's state carries the old cluster's member table; the new
	// cluster's members are cfg.Peers, none of them started yet.
	t := newMemberTable()
	for id, addr := range cfg.Peers {
		t.members[id] = &cxkvpb.Member{Id: id, Addr: addr}
	}
	b := store.NewBatch()
	defer b.Close()
	if err := b.SetMembers(t.encode()); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := b.Commit(true); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return store.SetIdentity(cfg.ID, ClusterID(cfg.ClusterToken, cfg.Peers))
}
