package kv

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// A failed WAL sync is fatal to Pebble; the write that met it must return a
// FatalError naming the cause (not panic the process from inside the
// caller), so the member can halt and exit.
func TestFailedSyncIsAFatalErrorOfTheWrite(t *testing.T) {
	s, failing := openWithFailingSyncs(t)
	ent := func(i uint64) []*pb.Entry { return []*pb.Entry{{Index: proto.Uint64(i), Term: proto.Uint64(1)}} }
	if _, err := s.RaftLog().Append(ent(1), nil, 0, true); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	_, err := s.RaftLog().Append(ent(2), nil, 1, true)
	var fatal *FatalError
	if !errors.As(err, &fatal) || !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("append with a failing sync: %v, want a FatalError caused by the injected error", err)
	}
}

// Reserving proposal ids is a synced write like any other: a failed sync
// there is the write's FatalError too, not a panic that ends the process
// (the nemesis's disk faults met it on a member's first write after a
// restart).
func TestFailedSyncWhileReservingProposalIDsIsAFatalError(t *testing.T) {
	s, failing := openWithFailingSyncs(t)
	if _, err := s.ReserveProposalIDs(10); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	_, err := s.ReserveProposalIDs(10)
	var fatal *FatalError
	if !errors.As(err, &fatal) || !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("reserve with a failing sync: %v, want a FatalError caused by the injected error", err)
	}
}

// openWithFailingSyncs opens a store on an in-memory FS whose syncs fail
// with errorfs.ErrInjected once the returned flag is set.
func openWithFailingSyncs(t *testing.T) (*Store, *atomic.Bool) {
	t.Helper()
	failing := new(atomic.Bool)
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && (op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileSyncTo) {
			return errorfs.ErrInjected
		}
		return nil
	}))
	s, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, failing
}
