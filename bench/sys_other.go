//go:build !linux

package bench

import (
	"os"
	"syscall"
)

func datasync(f *os.File) error { return f.Sync() }

func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
