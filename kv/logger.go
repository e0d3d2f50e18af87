package kv

import (
	"fmt"
	"log/slog"
)

// pebbleLogger routes Pebble's logging into the member's slog logger.
// Fatalf must not return (Pebble's contract): after logging it panics with
// a FatalError through quietLogger, which guard recovers on the goroutine
// whose write failed.
type pebbleLogger struct{ l *slog.Logger }

func newPebbleLogger(l *slog.Logger) pebbleLogger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return pebbleLogger{l.With("component", "pebble")}
}

func (p pebbleLogger) Infof(format string, args ...any) { p.l.Info(fmt.Sprintf(format, args...)) }
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
}
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
	quietLogger{}.Fatalf(format, args...)
}
