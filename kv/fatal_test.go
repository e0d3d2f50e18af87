package kv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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

// Once a write met a storage failure, no later write of the member may reach
// Pebble: its commit pipeline is broken, and a state batch that needs a new
// memtable rotates the WAL, whose close fails on the same disk; Pebble then
// panics with its mutex released, and the deferred unlock turns that into a
// runtime fatal error ("sync: unlock of unlocked mutex") that no recover can
// catch. The nemesis met it when a halted member's applier committed the
// batches queued before the halt. The later write must return the first
// failure instead.
func TestNoWriteReachesPebbleAfterItsStorageFailed(t *testing.T) {
	s, failing := openWithFailingSyncs(t)
	ent := func(i uint64) []*pb.Entry { return []*pb.Entry{{Index: proto.Uint64(i), Term: proto.Uint64(1)}} }
	if _, err := s.RaftLog().Append(ent(1), nil, 0, true); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	_, first := s.RaftLog().Append(ent(2), nil, 1, true)
	var fatal *FatalError
	if !errors.As(first, &fatal) {
		t.Fatalf("append with a failing sync: %v, want a FatalError", first)
	}
	// More than the first memtable (256 KiB) holds, so that committing it
	// would rotate the WAL.
	b := s.NewBatch()
	defer b.Close()
	value := make([]byte, 1024)
	for i := range 400 {
		if err := b.Put(Record{Key: fmt.Sprintf("k/%04d", i), Value: value, Index: uint64(i + 1), CreateIndex: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(false); !errors.As(err, &fatal) || err.Error() != first.Error() {
		t.Fatalf("state batch after the storage failed: %v, want the first failure %q", err, first)
	}
	if err := s.MarkRemoved(); !errors.As(err, &fatal) {
		t.Fatalf("a synced write after the storage failed: %v, want a FatalError", err)
	}
}

// A failed WAL write (not a sync) is noticed by Pebble's log writer on its
// own goroutine; the next commit to write a record then panics with the
// bare error, holding the commit pipeline's lock, instead of calling
// Fatalf. That is a storage failure like any other: the write returns a
// FatalError, later writes return it too, and Close returns instead of
// waiting forever for the lock the panic left held. The nemesis met the
// panic on a member's applier, and it killed the test binary.
func TestFailedWALWriteIsAFatalErrorOfTheNextWrite(t *testing.T) {
	var failing, failed atomic.Bool
	fs := failingLogWrites(&failing, &failed)
	s, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	// Small records, so the log writer's 32 KiB blocks fill (and its
	// goroutine meets the failed write) long before the first memtable
	// (256 KiB) does: a rotation first would be the other, uncatchable path
	// of TestNoWriteReachesPebbleAfterItsStorageFailed.
	value := make([]byte, 256)
	var first error
	for i := 0; first == nil && i < 500; i++ {
		b := s.NewBatch()
		if err := b.Put(Record{Key: fmt.Sprintf("k/%05d", i), Value: value, Index: uint64(i + 1), CreateIndex: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
		first = b.Commit(false)
		b.Close()
		// Once a block is queued, let the log writer's goroutine meet the
		// failure before more records fill the memtable.
		for deadline := time.Now().Add(5 * time.Second); i > 200 && !failed.Load() && time.Now().Before(deadline); {
			runtime.Gosched()
		}
	}
	var fatal *FatalError
	if !errors.As(first, &fatal) || !errors.Is(first, errorfs.ErrInjected) {
		t.Fatalf("unsynced commits on a disk whose writes fail: %v, want a FatalError caused by the injected error", first)
	}
	if err := s.MarkRemoved(); !errors.As(err, &fatal) {
		t.Fatalf("a write after the storage failed: %v, want a FatalError", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close of a store whose storage failed did not return")
	}
}

// A WAL write that fails on the log writer's goroutine, with no commit
// waiting to be told, is the store's failure from that moment, before any
// commit meets it inside Pebble. The
// commit that would have met it first may need a new memtable, and Pebble's
// WAL rotation panics on the kept error with its mutex released: a runtime
// fatal error no recover catches, which killed the nemesis test binary in
// CI ("panic: syscall.Errno(5)", "fatal error: sync: unlock of unlocked
// mutex" in DB.rotateWAL under kv.(*Batch).Commit).
func TestFailedWALWriteStopsWritesBeforeAWALRotationMeetsIt(t *testing.T) {
	var failing, failed atomic.Bool
	fs := failingLogWrites(&failing, &failed)
	s, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	failing.Store(true)
	// Unsynced commits of small records, until the log writer's goroutine
	// writes a full block and meets the failure; none of them is told.
	value := make([]byte, 256)
	for i := 0; !failed.Load() && i < 500; i++ {
		b := s.NewBatch()
		if err := b.Put(Record{Key: fmt.Sprintf("k/%05d", i), Value: value, Index: uint64(i + 1), CreateIndex: uint64(i + 1)}); err != nil {
			t.Fatal(err)
		}
		err := b.Commit(false)
		b.Close()
		if err != nil {
			break
		}
	}
	for deadline := time.Now().Add(5 * time.Second); !failed.Load() && time.Now().Before(deadline); {
		runtime.Gosched()
	}
	if !failed.Load() {
		t.Fatal("the log writer never wrote to the log file")
	}
	// The failure is recorded when the write returns, on the log writer's
	// goroutine.
	for deadline := time.Now().Add(5 * time.Second); s.failed.first.Load() == nil && time.Now().Before(deadline); {
		runtime.Gosched()
	}
	var fatal *FatalError
	big := rotatingBatch(t, s, 1000)
	defer big.Close()
	if err := big.Commit(false); !errors.As(err, &fatal) || !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("a commit after the log failed: %v, want the first failure, caused by the injected error", err)
	}
}

// failingLogWrites is a filesystem whose log files' writes fail once
// failing is set; failed records that one did.
func failingLogWrites(failing, failed *atomic.Bool) vfs.FS {
	return errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && strings.HasSuffix(op.Path, ".log") && (op.Kind == errorfs.OpFileWrite || op.Kind == errorfs.OpFileWriteAt) {
			failed.Store(true)
			return errorfs.ErrInjected
		}
		return nil
	}))
}

// The log fails while a commit is already inside Pebble: the commit that
// makes Pebble rotate the WAL passed the store's check before anything had
// failed, and the old log's last write, as the rotation closes it, is the
// one that fails. Pebble panics on that with its mutex released, and the
// deferred unlock ended the process with a runtime fatal error ("fatal
// error: sync: unlock of unlocked mutex" in DB.rotateWAL; seen in a nemesis
// run, disk full). The commit must fail with the store's failure instead,
// and the store must close.
func TestWALFailingInsideACommitThatRotatesIt(t *testing.T) {
	var failing, failed atomic.Bool
	s, err := Open("db", Options{FS: failingLogWrites(&failing, &failed)})
	if err != nil {
		t.Fatal(err)
	}
	// Synced: the log writer has nothing left to write when the disk fails.
	commitSmall(t, s)
	failing.Store(true)
	big := rotatingBatch(t, s, 2)
	var fatal *FatalError
	if err := big.Commit(false); !errors.As(err, &fatal) || !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("a commit whose WAL rotation met the failed log: %v, want the store's failure, caused by the injected error", err)
	}
	big.Close()
	if !failed.Load() {
		t.Fatal("the log file was never written after the disk failed")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close after the failure: %v", err)
	}
}

// The disk fails for the directory too: the rotation that closes the failed
// log (walWatch keeps that failure from Pebble) then syncs the directory
// for the new log, and Pebble panicked on that sync's failure, again with
// its mutex released (DB.rotateWAL, "panic: syscall.Errno(28)", "fatal
// error: sync: unlock of unlocked mutex"; seen in a nemesis run with the
// disk full).
func TestDirectorySyncFailingInAWALRotation(t *testing.T) {
	var failing atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !failing.Load() {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			return syscall.ENOSPC
		}
		return nil
	}))
	rotationMeetsFailure(t, fs, &failing, syscall.ENOSPC)
}

// commitSmall commits one small record ("small", index 1), synced.
func commitSmall(t *testing.T, s *Store) {
	t.Helper()
	b := s.NewBatch()
	defer b.Close()
	if err := b.Put(Record{Key: "small", Value: []byte("v"), Index: 1, CreateIndex: 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
}

// rotatingBatch is a batch larger than the first memtable (256 KiB): its
// commit makes Pebble rotate the WAL, if it gets that far. Its records'
// indexes start at index.
func rotatingBatch(t *testing.T, s *Store, index uint64) *Batch {
	t.Helper()
	b := s.NewBatch()
	value := make([]byte, 64<<10)
	for i := range uint64(8) {
		if err := b.Put(Record{Key: fmt.Sprintf("big/%d", i), Value: value, Index: index + i, CreateIndex: index + i}); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// A disk that fills up writes part of what it was given before it fails
// (a short write, ENOSPC), and the process that halts on the failure may
// crash with those bytes in the log. The commit that met the failure inside
// Pebble rotated the WAL (walWatch hid the failure from it), so the torn log
// is no longer the last one. A restart on the healed disk must open the
// store and find every acknowledged write.
func TestRestartAfterAShortLogWriteInARotation(t *testing.T) {
	mem := vfs.NewCrashableMem()
	var full atomic.Bool
	s, err := Open("db", Options{FS: shortWriteFS{FS: mem, full: &full}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Synced: acknowledged before the disk fills.
	commitSmall(t, s)
	full.Store(true)
	// Pebble writes it to the log, then rotates the log.
	big := rotatingBatch(t, s, 2)
	if err := big.Commit(false); err == nil {
		t.Fatal("a commit on a full disk succeeded")
	}
	big.Close()
	// The process crashes: what it wrote stays, synced or not.
	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(1, 2))})
	r, err := Open("db", Options{FS: crashed})
	if err != nil {
		t.Fatalf("restart after the disk filled: %v", err)
	}
	defer r.Close()
	if _, found, err := r.Get("small"); err != nil || !found {
		t.Fatalf("the acknowledged write after the restart: found=%v, %v", found, err)
	}
}

// shortWriteFS is a disk that, once full is set, writes half of each
// write to a log or table and fails it with ENOSPC.
type shortWriteFS struct {
	vfs.FS
	full *atomic.Bool
}

func (fs shortWriteFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !(strings.HasSuffix(name, ".log") || strings.HasSuffix(name, ".sst")) {
		return f, err
	}
	return shortWriteFile{File: f, full: fs.full}, nil
}

func (fs shortWriteFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs shortWriteFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

type shortWriteFile struct {
	vfs.File
	full *atomic.Bool
}

func (f shortWriteFile) Write(p []byte) (int, error) {
	if !f.full.Load() {
		return f.File.Write(p)
	}
	n, _ := f.File.Write(p[:len(p)/2])
	return n, syscall.ENOSPC
}

// The directory fails before the log does: the rotation's sync of the
// directory for the new log is the first failure, and Pebble panicked on it
// with its mutex released, as in TestDirectorySyncFailingInAWALRotation
// ("panic: syscall.Errno(5)", "fatal error: sync: unlock of unlocked
// mutex" in DB.rotateWAL). The commit must fail with the store's failure
// instead, and the store must close.
func TestDirectorySyncFailingFirstInAWALRotation(t *testing.T) {
	var failing atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && op.Kind == errorfs.OpFileSync && op.Path == "db" {
			return syscall.EIO
		}
		return nil
	}))
	rotationMeetsFailure(t, fs, &failing, syscall.EIO)
}

// rotationMeetsFailure opens a store on fs, turns failing on, and commits a
// batch that makes Pebble rotate the WAL on the failing disk: the commit
// must return the store's failure, caused by cause, and the store must
// close.
func rotationMeetsFailure(t *testing.T, fs vfs.FS, failing *atomic.Bool, cause error) {
	t.Helper()
	s, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	big := rotatingBatch(t, s, 1)
	var fatal *FatalError
	if err := big.Commit(false); !errors.As(err, &fatal) || !errors.Is(err, cause) {
		t.Fatalf("a commit whose WAL rotation met the failing disk: %v, want the store's failure, caused by %v", err, cause)
	}
	big.Close()
	if err := s.Close(); err != nil {
		t.Fatalf("close after the failure: %v", err)
	}
}

// The MANIFEST fails under one of Pebble's own goroutines: the flush that
// a full memtable starts writes its table, then the version edit, which
// fails, and Pebble calls Fatalf there, with no write of ours on that
// goroutine to return the failure to. A panic there ended the whole
// process ("pebble: MANIFEST flush failed: input/output error" under
// DB.flush, in the in-process nemesis under make test). The failure must
// become the store's, returned by the next write, and the store must close.
func TestManifestFailingInABackgroundFlush(t *testing.T) {
	var failing, failed atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && strings.Contains(op.Path, "MANIFEST") && (op.Kind == errorfs.OpFileWrite || op.Kind == errorfs.OpFileWriteAt || op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) {
			failed.Store(true)
			return errorfs.ErrInjected
		}
		return nil
	}))
	s, err := Open("db", Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	commitSmall(t, s)
	if err := s.Err(); err != nil {
		t.Fatalf("Err() of a sound store = %v", err)
	}
	failing.Store(true)
	// As a full memtable does: Pebble flushes it on a goroutine of its own
	// (the flush never ends, so nothing waits for it).
	if _, err := s.db.AsyncFlush(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); s.Err() == nil && time.Now().Before(deadline); {
		runtime.Gosched()
	}
	if !failed.Load() {
		t.Fatal("no flush wrote the MANIFEST")
	}
	// Before any write: Err is how a member that writes nothing learns of it.
	if err := s.Err(); !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("Err() after the flush's MANIFEST failed: %v, want the injected error", err)
	}
	b := s.NewBatch()
	defer b.Close()
	if err := b.Put(Record{Key: "after", Value: []byte("v"), Index: 2, CreateIndex: 2}); err != nil {
		t.Fatal(err)
	}
	var fatal *FatalError
	if err := b.Commit(false); !errors.As(err, &fatal) || !errors.Is(err, errorfs.ErrInjected) {
		t.Fatalf("a commit after the flush's MANIFEST failed: %v, want the store's failure, caused by the injected error", err)
	}
	if err := s.Close(); !errors.As(err, &fatal) {
		t.Fatalf("close after the failure: %v, want the store's failure", err)
	}
}
