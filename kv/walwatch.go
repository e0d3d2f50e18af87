package kv

import (
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// walWatch records a failed write or sync of a write-ahead log as the
// store's failure the moment the file reports it, on whichever goroutine
// met it. Pebble finds a failed WAL write on its log writer's goroutine and
// keeps it; the next commit then meets it inside Pebble, and if that commit
// needs a new memtable, Pebble's WAL rotation panics on it with its mutex
// released, which ends the process with a runtime fatal error that no
// recover catches (failure). Recorded here first, the failure stops every
// later write of the store before it reaches Pebble. A commit already
// inside Pebble when the file fails can still meet it there.
type walWatch struct {
	vfs.FS
	failed *failure
}

func isWAL(name string) bool { return strings.HasSuffix(name, ".log") }

func (w walWatch) watch(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !isWAL(name) {
		return f, err
	}
	return walFile{File: f, failed: w.failed, name: name}, nil
}

func (w walWatch) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := w.FS.Create(name, category)
	return w.watch(name, f, err)
}

func (w walWatch) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := w.FS.ReuseForWrite(oldname, newname, category)
	return w.watch(newname, f, err)
}

func (w walWatch) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := w.FS.OpenReadWrite(name, category, opts...)
	return w.watch(name, f, err)
}

type walFile struct {
	vfs.File
	failed *failure
	name   string
}

// record keeps err as the store's first failure, if it is the first.
func (f walFile) record(op string, err error) error {
	if err != nil {
		f.failed.first.CompareAndSwap(nil, &FatalError{Msg: "write-ahead log " + f.name + ": " + op + ": " + err.Error(), err: err})
	}
	return err
}

func (f walFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	return n, f.record("write", err)
}

func (f walFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	return n, f.record("write", err)
}

func (f walFile) Sync() error { return f.record("sync", f.File.Sync()) }

func (f walFile) SyncData() error { return f.record("sync", f.File.SyncData()) }

func (f walFile) SyncTo(length int64) (bool, error) {
	full, err := f.File.SyncTo(length)
	return full, f.record("sync", err)
}
