package demo

import "syscall"

// childAttrs puts a child in its own process group and, on Linux, has the
// kernel kill it if the demo dies first, so a killed demo leaves no member or
// worker running.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
