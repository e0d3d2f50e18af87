package kv

import (
	"fmt"
	"log"
	"log/slog"
	"runtime"
	"strings"
)

// pebbleLogger routes Pebble's logging into the member's slog logger.
// Fatalf must not return (Pebble's contract). On a goroutine of ours it
// panics with a FatalError (quietLogger), which guard recovers on the
// goroutine whose write failed. On a goroutine Pebble started (a flush, a
// compaction) nothing of ours is there to recover it, and a panic ended
// the whole process: there Fatalf makes the failure the store's (every
// later write returns it, and Close leaves the broken database to the
// process's exit) and ends that goroutine alone (runtime.Goexit, which
// runs Pebble's deferred unlocks).
type pebbleLogger struct {
	l      *slog.Logger
	failed *failure
}

func newPebbleLogger(l *slog.Logger, failed *failure) pebbleLogger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return pebbleLogger{l.With("component", "pebble"), failed}
}

func (p pebbleLogger) Infof(format string, args ...any) { p.l.Info(fmt.Sprintf(format, args...)) }
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
}
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
	if p.failed != nil && startedByPebble() {
		fe := newFatalError(format, args...)
		p.failed.record(fe, true)
		log.Printf("pebble: %s (on a goroutine of Pebble's; the store accepts no more writes)", fe.Msg)
		runtime.Goexit()
	}
	quietLogger{}.Fatalf(format, args...)
}

// startedByPebble reports whether the calling goroutine was started by
// Pebble: the first function it ran is Pebble's. A stack too deep to
// read to its start counts as not.
func startedByPebble() bool {
	pcs := make([]uintptr, 512)
	n := runtime.Callers(1, pcs)
	if n == len(pcs) {
		return false
	}
	frames := runtime.CallersFrames(pcs[:n])
	entry := ""
	for {
		f, more := frames.Next()
		if f.Function != "runtime.goexit" {
			entry = f.Function
		}
		if !more {
			break
		}
	}
	return strings.HasPrefix(entry, "github.com/cockroachdb/pebble/")
}
