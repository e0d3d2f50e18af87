package raftnode

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/cxkv/cxkv/cmpxchg"
	"github.com/cxkv/cxkv/kv"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// crashPoints clones a crashable filesystem just before every sync while
// armed: each clone is what a crash at that moment leaves on disk (nothing
// unsynced survives), so together they are every state a crash between two
// durable steps can leave.
type crashPoints struct {
	mem    *vfs.MemFS
	mu     sync.Mutex
	armed  bool
	clones []*vfs.MemFS
}

func (c *crashPoints) String() string { return "crashPoints" }

func (c *crashPoints) MaybeError(op errorfs.Op) error {
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		c.clone()
	}
	return nil
}

func (c *crashPoints) clone() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.armed {
		c.clones = append(c.clones, c.mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}))
	}
}

func (c *crashPoints) arm(on bool) {
	c.mu.Lock()
	c.armed = on
	c.mu.Unlock()
}

// confState returns a marshalled ConfState with member 1 as the only voter.
func confState(t *testing.T) ([]byte, *pb.ConfState) {
	cs := &pb.ConfState{Voters: []uint64{1}}
	data, err := proto.Marshal(cs)
	if err != nil {
		t.Fatal(err)
	}
	return data, cs
}

// A received snapshot replaces the state and the log and moves the commit
// index. A crash at any point of receiving (staging) or installing it must
// leave a member that opens (raft accepts its HardState, log and applied
// index), holds either the old state with the old log or the new state with
// the log reset to it, and keeps no staged file.
func TestSnapshotInstallIsCrashAtomic(t *testing.T) {
	csData, cs := confState(t)
	const oldIndex, newIndex = 5, 20

	// The snapshot: a state at index 20 holding key "new".
	src, err := kv.Open("src", kv.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	b := src.NewBatch()
	for _, err := range []error{b.Put(kv.Record{Key: "new", Value: []byte("v"), Index: 19, CreateIndex: 19}), b.SetConfState(csData), b.SetApplied(newIndex), b.Commit(true), b.Close()} {
		if err != nil {
			t.Fatal(err)
		}
	}
	var stream bytes.Buffer
	ss := src.NewStateSnapshot()
	if _, err := ss.WriteTo(&stream); err != nil {
		t.Fatal(err)
	}
	ss.Close()
	src.Close()

	// The member: entries 1..5 of term 1, state applied to 5 holding "old".
	mem := vfs.NewCrashableMem()
	points := &crashPoints{mem: mem}
	store, err := kv.Open("db", kv.Options{FS: errorfs.Wrap(mem, points)})
	if err != nil {
		t.Fatal(err)
	}
	sm := newKVMachine(store, cmpxchg.DefaultLimits())
	b = store.NewBatch()
	for _, err := range []error{b.Put(kv.Record{Key: "old", Value: []byte("v"), Index: 4, CreateIndex: 4}), b.SetConfState(csData), b.SetApplied(oldIndex), b.Commit(true), b.Close()} {
		if err != nil {
			t.Fatal(err)
		}
	}
	ls, _, err := openStorage(store, sm)
	if err != nil {
		t.Fatal(err)
	}
	var ents []*pb.Entry
	for i := uint64(1); i <= oldIndex; i++ {
		ents = append(ents, &pb.Entry{Index: proto.Uint64(i), Term: proto.Uint64(1)})
	}
	if _, err := ls.persist(ents, &pb.HardState{Term: proto.Uint64(1), Vote: proto.Uint64(1), Commit: proto.Uint64(oldIndex)}, true); err != nil {
		t.Fatal(err)
	}

	// The receiver stages the stream; then the Ready that carries the
	// snapshot, as raft hands it to a follower, names what was staged.
	points.arm(true)
	name, err := sm.Stage(&stream)
	if err != nil {
		t.Fatal(err)
	}
	rd := raft.Ready{
		Snapshot:  &pb.Snapshot{Data: []byte(name), Metadata: &pb.SnapshotMetadata{Index: proto.Uint64(newIndex), Term: proto.Uint64(2), ConfState: cs}},
		HardState: &pb.HardState{Term: proto.Uint64(2), Vote: proto.Uint64(0), Commit: proto.Uint64(newIndex)},
		MustSync:  true,
	}
	if _, err := persistReady(ls, sm, rd); err != nil {
		t.Fatal(err)
	}
	points.arm(false)
	points.clones = append(points.clones, mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0}))
	store.Close()

	sawOld, sawNew := false, false
	var seen []uint64
	for i, fs := range points.clones {
		applied := reopen(t, fs)
		seen = append(seen, applied)
		switch applied {
		case oldIndex:
			sawOld = true
		case newIndex:
			sawNew = true
		default:
			t.Fatalf("crash point %d: applied index %d, want %d or %d", i, applied, oldIndex, newIndex)
		}
	}
	t.Logf("applied index after a crash at each of %d syncs: %v", len(points.clones), seen)
	if !sawOld {
		t.Fatalf("no crash point before the install changed anything, among %d", len(points.clones))
	}
	if !sawNew || reopen(t, points.clones[len(points.clones)-1]) != newIndex {
		t.Fatal("the finished install is not durable")
	}
}

// reopen opens a member's store the way Start does and checks that raft
// accepts it and that state and log agree; it returns the applied index.
func reopen(t *testing.T, fs vfs.FS) uint64 {
	t.Helper()
	store, err := kv.Open("db", kv.Options{FS: fs})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer store.Close()
	sm := newKVMachine(store, cmpxchg.DefaultLimits())
	ls, applied, err := openStorage(store, sm)
	if err != nil {
		t.Fatalf("open storage: %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				hs, _, _ := ls.InitialState()
				first, _ := ls.FirstIndex()
				last, _ := ls.LastIndex()
				t.Fatalf("raft refuses the reopened member (applied %d, log [%d, %d], commit %d): %v", applied, first, last, hs.GetCommit(), r)
			}
		}()
		if _, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: ls, Applied: applied, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 16, Logger: raftLogger{slog.New(slog.DiscardHandler)}}); err != nil {
			t.Fatalf("raft refuses the reopened member: %v", err)
		}
	}()
	_, hasOld, err := store.Get("old")
	if err != nil {
		t.Fatal(err)
	}
	_, hasNew, err := store.Get("new")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := store.StagedCount(); err != nil || n != 0 {
		t.Fatalf("%d staged snapshots left after reopening (%v)", n, err)
	}
	first, _ := ls.FirstIndex()
	if hasOld == hasNew || hasNew != (first == applied+1) {
		t.Fatalf("state and log disagree: applied %d, old key %v, new key %v, log starts at %d", applied, hasOld, hasNew, first)
	}
	return applied
}

// Committed entries already on a member's synced log are applied while the
// Ready that raised the commit index is still being written, so a crash
// can leave the state applied beyond the stored commit index. Every entry
// up to the applied index is committed and on the log, so the member must
// open, with its commit index caught up, instead of raft refusing it.
func TestOpenWithTheStateAheadOfTheStoredCommitIndex(t *testing.T) {
	csData, _ := confState(t)
	fs := vfs.NewMem()
	store, err := kv.Open("db", kv.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	sm := newKVMachine(store, cmpxchg.DefaultLimits())
	ls, _, err := openStorage(store, sm)
	if err != nil {
		t.Fatal(err)
	}
	var ents []*pb.Entry
	for i := uint64(1); i <= 5; i++ {
		ents = append(ents, &pb.Entry{Index: proto.Uint64(i), Term: proto.Uint64(1)})
	}
	if _, err := ls.persist(ents, &pb.HardState{Term: proto.Uint64(1), Vote: proto.Uint64(1), Commit: proto.Uint64(3)}, true); err != nil {
		t.Fatal(err)
	}
	b := store.NewBatch()
	for _, err := range []error{b.SetConfState(csData), b.SetApplied(5), b.Commit(true), b.Close()} {
		if err != nil {
			t.Fatal(err)
		}
	}
	store.Close()

	store, err = kv.Open("db", kv.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ls, applied, err := openStorage(store, newKVMachine(store, cmpxchg.DefaultLimits()))
	if err != nil {
		t.Fatalf("open storage: %v", err)
	}
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("raft refuses a member whose state (applied %d) is ahead of its stored commit index: %v", applied, r)
			}
		}()
		if _, err := raft.NewRawNode(&raft.Config{ID: 1, ElectionTick: 10, HeartbeatTick: 1, Storage: ls, Applied: applied, MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 16, Logger: raftLogger{slog.New(slog.DiscardHandler)}}); err != nil {
			t.Fatalf("raft refuses the reopened member: %v", err)
		}
	}()
	if hs, _, _ := ls.InitialState(); hs.GetCommit() != 5 {
		t.Fatalf("commit index %d after opening with the state applied to 5", hs.GetCommit())
	}
}
