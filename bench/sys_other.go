//go:build !linux

package bench

import (
	"os"
	"syscall"
	"time"
)

func datasync(f *os.File) error { return f.Sync() }

func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func procCPU(int) time.Duration { return 0 }

func selfCPU() time.Duration { return 0 }

func machineCPU() cpuTicks { return cpuTicks{} }
