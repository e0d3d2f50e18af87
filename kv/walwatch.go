package kv

import (
	"path/filepath"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// walWatch records a failed write or sync of a write-ahead log as the
// store's failure the moment the file reports it, on whichever goroutine
// met it, and from then on keeps every failure of the log from Pebble: the
// log's writes and syncs are dropped and report success.
//
// Pebble treats a failed WAL as the end of the process. Its log writer
// keeps a failed write, and whichever commit next closes that log to rotate
// it (a commit that needs a new memtable) panics on it with Pebble's mutex
// released; the deferred unlock then ends the process with a runtime fatal
// error that no recover catches. A commit can be inside Pebble when the
// disk fails (it passed the store's check before anything had failed), so
// stopping later writes at the store is not enough: Pebble must never see
// the failure. What makes hiding it safe is failure.guard: every write of
// the store returns the recorded failure instead of Pebble's answer, so a
// commit whose log write was dropped is never reported durable, and no
// write after it reaches Pebble. The member halts on that failure and a
// restart reads the log as the disk kept it.
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
	if isWAL(name) && w.failed.err() != nil {
		return w.offDisk(name, category)
	}
	f, err := w.FS.Create(name, category)
	if err == nil && isWAL(name) {
		w.syncDirOf(name)
	}
	return w.watch(name, f, err)
}

func (w walWatch) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	if isWAL(newname) && w.failed.err() != nil {
		return w.offDisk(newname, category)
	}
	f, err := w.FS.ReuseForWrite(oldname, newname, category)
	if err == nil && isWAL(newname) {
		w.syncDirOf(newname)
	}
	return w.watch(newname, f, err)
}

// syncDirOf makes a new log's directory entry durable before Pebble does,
// and records its failure as the store's. Pebble syncs the directory
// right after it creates a log, and panics on a failure there with its
// mutex released (DB.rotateWAL): a runtime fatal error no recover catches.
// Met here first, the failure is the store's, so walDir hides Pebble's own
// sync's failure that follows on the same disk, and the commit that rotated
// the log returns the failure from guard. A failed directory sync of
// anything else (a flush's new table) still reaches Pebble, which retries
// it.
func (w walWatch) syncDirOf(name string) {
	d, err := w.FS.OpenDir(filepath.Dir(name))
	if err == nil {
		err = d.Sync()
		if cerr := d.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		w.failed.record(&FatalError{Msg: "write-ahead log " + name + ": directory sync: " + err.Error(), err: err}, false)
	}
}

// offDisk is the log a rotation after the failure opens: never put on the
// disk. The failed log may end in a torn record (a short write on a full
// disk), which Pebble's recovery tolerates only in the newest log; a newer
// log file beside it would make the restart refuse the whole store as
// corrupt ("error when replaying WAL: unexpected EOF"). Nothing written
// after the failure is kept anyway.
func (w walWatch) offDisk(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := vfs.NewMem().Create(filepath.Base(name), category)
	return w.watch(name, f, err)
}

func (w walWatch) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := w.FS.OpenReadWrite(name, category, opts...)
	return w.watch(name, f, err)
}

// OpenDir wraps the directory Pebble syncs after creating a file, the new
// log's included: WAL rotation syncs it after closing the failed log, and a
// failure there would reach Pebble as one of the log's. After the store's
// failure a directory sync reports success; the store accepts no write
// from then on, so nothing depends on it. Before, a failed directory sync
// reaches Pebble as it is (it fails a flush, which Pebble retries); a new
// log's directory is synced by walWatch first (syncDirOf), so a failure
// there is already the store's when Pebble's own sync meets it.
func (w walWatch) OpenDir(name string) (vfs.File, error) {
	f, err := w.FS.OpenDir(name)
	if err != nil {
		return f, err
	}
	return walDir{File: f, failed: w.failed}, nil
}

type walDir struct {
	vfs.File
	failed *failure
}

func (d walDir) Sync() error {
	if err := d.File.Sync(); err != nil && d.failed.err() == nil {
		return err
	}
	return nil
}

type walFile struct {
	vfs.File
	failed *failure
	name   string
}

// dead reports whether the store has failed: the log is not written to
// any more.
func (f walFile) dead() bool { return f.failed.err() != nil }

// record keeps err as the store's first failure, if it is the first, and
// hides it from Pebble.
func (f walFile) record(op string, err error) {
	if err != nil {
		f.failed.record(&FatalError{Msg: "write-ahead log " + f.name + ": " + op + ": " + err.Error(), err: err}, false)
	}
}

func (f walFile) Write(p []byte) (int, error) {
	if !f.dead() {
		_, err := f.File.Write(p)
		f.record("write", err)
	}
	return len(p), nil
}

func (f walFile) WriteAt(p []byte, off int64) (int, error) {
	if !f.dead() {
		_, err := f.File.WriteAt(p, off)
		f.record("write", err)
	}
	return len(p), nil
}

func (f walFile) Sync() error {
	if !f.dead() {
		f.record("sync", f.File.Sync())
	}
	return nil
}

func (f walFile) SyncData() error {
	if !f.dead() {
		f.record("sync", f.File.SyncData())
	}
	return nil
}

func (f walFile) SyncTo(length int64) (bool, error) {
	if f.dead() {
		return true, nil
	}
	full, err := f.File.SyncTo(length)
	f.record("sync", err)
	return full || err != nil, nil
}
