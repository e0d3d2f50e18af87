package kv

import (
	"fmt"
	"log"
)

// FatalError is a failure after which the database accepts no more writes:
// Pebble reports a failed WAL write or sync through its logger's Fatalf and
// leaves its commit pipeline broken, because after a failed fsync nobody
// knows what the disk holds. kv turns Fatalf in a caller's commit into this
// error, returned by the write that met it, so the member can halt and the
// process exit non-zero; the writes acknowledged before it were synced and
// survive a restart. (A Fatalf on one of Pebble's background goroutines
// still panics there, which also ends the process non-zero.)
type FatalError struct {
	Msg string
	err error // the cause, if Pebble passed one
}

func (e *FatalError) Error() string { return "kv: storage failed: " + e.Msg }
func (e *FatalError) Unwrap() error { return e.err }

// guard runs one write, turning Pebble's Fatalf during it into a FatalError.
func guard(write func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(*FatalError)
			if !ok {
				panic(r)
			}
			err = f
		}
	}()
	return write()
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
	f := &FatalError{Msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if e, ok := a.(error); ok {
			f.err = e
		}
	}
	log.Printf("pebble: %s", f.Msg)
	panic(f)
}
