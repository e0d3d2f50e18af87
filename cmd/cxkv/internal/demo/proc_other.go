//go:build !linux

package demo

import "syscall"

// childAttrs puts a child in its own process group. Other systems have no
// parent-death signal: a demo killed with SIGKILL leaves its children to be
// stopped by hand (Ctrl-C and SIGTERM still stop them).
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
