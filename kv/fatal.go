package kv

import (
	"fmt"
	"log"
	"sync/atomic"
)

// FatalError is a failure after which the database accepts no more writes:
// Pebble reports a failed WAL write or sync through its logger's Fatalf and
// leaves its commit pipeline broken, because after a failed fsync nobody
// knows what the disk holds. kv turns Fatalf in a caller's commit into this
// error, returned by the write that met it, so the member can halt and the
// process exit non-zero; the writes acknowledged before it were synced and
// survive a restart. A Fatalf on one of Pebble's own goroutines (a flush's
// MANIFEST write) becomes the store's failure the same way, returned by
// every later write and by Store.Err (pebbleLogger).
type FatalError struct {
	Msg string
	err error // the cause, if Pebble passed one
}

func (e *FatalError) Error() string { return "kv: storage failed: " + e.Msg }
func (e *FatalError) Unwrap() error { return e.err }

// failure is a store's first storage failure. After it Pebble's commit
// pipeline is broken, and a later write can meet the failed disk where
// Pebble cannot report it: a batch that needs a new memtable closes the
// WAL, whose failed sync Pebble panics on with its mutex released, so the
// deferred unlock ends the process with a runtime fatal error that no
// recover catches. A halted member still had such writes to make (the
// batches its applier was handed before the halt). So once one write
// failed, every write of the store returns that failure without reaching
// Pebble.
//
// walWatch records a failed WAL write or sync as soon as the file reports
// it and keeps it from Pebble, so Pebble's commit pipeline never meets a
// failed log: a write later than the failure never reaches Pebble, and one
// inside Pebble at that moment returns the failure from guard. guard still
// recovers a panic with an error, for a failure of a file walWatch does not
// watch: such a panic may leave the pipeline's lock held, so Pebble's Close
// (which takes it) would wait forever. A Fatalf on one of Pebble's own
// goroutines (pebbleLogger) leaves a flush or compaction marked running,
// which Close would wait for as long. stuck records either, and Store.Close
// leaves the database unclosed. The process must restart anyway.
type failure struct {
	first atomic.Pointer[FatalError]
	stuck atomic.Bool
}

// record makes fe the store's failure unless one came first; stuck marks
// the database as one Close must leave unclosed. first is set before
// stuck, so a Close that sees stuck finds the failure to return.
func (f *failure) record(fe *FatalError, stuck bool) {
	f.first.CompareAndSwap(nil, fe)
	if stuck {
		f.stuck.Store(true)
	}
}

// err is the store's first failure, or nil.
func (f *failure) err() error {
	if fe := f.first.Load(); fe != nil {
		return fe
	}
	return nil
}

// guard runs one write, turning Pebble's Fatalf or a panic with an error
// during it into a FatalError; after a failure it returns the first one
// and does not run the write. A panic with anything but an error is a
// defect, not a disk's failure, and goes on.
func (f *failure) guard(write func() error) (err error) {
	if err := f.err(); err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(*FatalError)
			if !ok {
				e, isErr := r.(error)
				if !isErr {
					panic(r)
				}
				fe = &FatalError{Msg: "pebble: write failed: " + e.Error(), err: e}
				log.Printf("%s", fe.Msg)
			}
			// The log file may have recorded the failure first (walWatch):
			// every write returns the one first failure.
			f.record(fe, !ok)
			err = f.err()
		}
	}()
	if err := write(); err != nil {
		return err
	}
	// The log may have failed while the write was inside Pebble, which
	// walWatch keeps from Pebble: the write may not be durable.
	return f.err()
}

// quietLogger keeps Pebble's informational chatter out of the server log
// while still surfacing errors.
type quietLogger struct{}

func (quietLogger) Infof(string, ...interface{}) {}
func (quietLogger) Errorf(format string, args ...interface{}) {
	log.Printf("pebble: "+format, args...)
}

// Fatalf must not return (Pebble's contract): it panics with a FatalError,
// which guard recovers on the goroutine whose write failed.
func (quietLogger) Fatalf(format string, args ...interface{}) {
	f := newFatalError(format, args...)
	log.Printf("pebble: %s", f.Msg)
	panic(f)
}

// newFatalError is the FatalError of Pebble's Fatalf(format, args...),
// caused by the error among args.
func newFatalError(format string, args ...any) *FatalError {
	f := &FatalError{Msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if e, ok := a.(error); ok {
			f.err = e
		}
	}
	return f
}
