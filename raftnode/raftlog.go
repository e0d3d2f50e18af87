package raftnode

import (
	"fmt"
	"log/slog"
	"os"
)

// raftLogger routes the raft library's logging into slog; raft's Info is
// chatty (every vote), so it goes to Debug.
type raftLogger struct{ l *slog.Logger }

func (r raftLogger) Debug(v ...interface{})              { r.l.Debug(fmt.Sprint(v...)) }
func (r raftLogger) Debugf(f string, v ...interface{})   { r.l.Debug(fmt.Sprintf(f, v...)) }
func (r raftLogger) Error(v ...interface{})              { r.l.Error(fmt.Sprint(v...)) }
func (r raftLogger) Errorf(f string, v ...interface{})   { r.l.Error(fmt.Sprintf(f, v...)) }
func (r raftLogger) Info(v ...interface{})               { r.l.Debug(fmt.Sprint(v...)) }
func (r raftLogger) Infof(f string, v ...interface{})    { r.l.Debug(fmt.Sprintf(f, v...)) }
func (r raftLogger) Warning(v ...interface{})            { r.l.Warn(fmt.Sprint(v...)) }
func (r raftLogger) Warningf(f string, v ...interface{}) { r.l.Warn(fmt.Sprintf(f, v...)) }
func (r raftLogger) Fatal(v ...interface{})              { r.l.Error(fmt.Sprint(v...)); os.Exit(1) }
func (r raftLogger) Fatalf(f string, v ...interface{})   { r.l.Error(fmt.Sprintf(f, v...)); os.Exit(1) }
func (r raftLogger) Panic(v ...interface{})              { panic(fmt.Sprint(v...)) }
func (r raftLogger) Panicf(f string, v ...interface{})   { panic(fmt.Sprintf(f, v...)) }
