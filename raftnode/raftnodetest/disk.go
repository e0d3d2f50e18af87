package raftnodetest

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// Disk is one member's disk for fault tests: an in-memory filesystem that
// keeps track of what was synced (vfs.NewCrashableMem), behind an
// errorfs injector that can make every write and sync fail, or every sync
// slow. A member runs on Disk.FS.
type Disk struct {
	mem  *vfs.MemFS
	fail atomic.Pointer[error]
	slow atomic.Int64 // time.Duration each sync waits before it runs
	FS   vfs.FS
}

// NewDisk is an empty, healthy disk.
func NewDisk() *Disk { return wrapDisk(vfs.NewCrashableMem()) }

func wrapDisk(mem *vfs.MemFS) *Disk {
	d := &Disk{mem: mem}
	d.FS = errorfs.Wrap(mem, errorfs.InjectorFunc(func(op errorfs.Op) error {
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if wait := time.Duration(d.slow.Load()); wait > 0 {
				time.Sleep(wait)
			}
		}
		p := d.fail.Load()
		if p == nil {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			return *p
		}
		return nil
	}))
	return d
}

// Fail makes every write and sync from now on fail with err (e.g.
// syscall.ENOSPC or syscall.EIO); nil heals the disk.
func (d *Disk) Fail(err error) {
	if err == nil {
		d.fail.Store(nil)
		return
	}
	d.fail.Store(&err)
}

// Slow makes every sync from now on take delay longer, as on a disk whose
// fsyncs spike (a saturated or throttled volume); 0 makes it fast again. A
// sync already waiting finishes its wait.
func (d *Disk) Slow(delay time.Duration) { d.slow.Store(int64(delay)) }

// Crash is the disk as a machine finds it after losing power now: what was
// synced, plus, for each unsynced block or directory entry, a chance of
// lostPercent out of 100 that it is gone. The returned disk is healthy and
// separate: whatever the crashed member still writes goes to the old one.
func (d *Disk) Crash(rng *rand.Rand, lostPercent int) *Disk {
	return wrapDisk(d.mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100 - lostPercent, RNG: rng}))
}
