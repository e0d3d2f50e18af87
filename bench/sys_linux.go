package bench

import (
	"os"
	"syscall"
)

// datasync is fdatasync, what a log append needs (the data, not the mtime).
func datasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }

func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
