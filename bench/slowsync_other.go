//go:build !linux

package bench

import (
	"fmt"
	"os/exec"
	"runtime"
)

// errNoSlowSync: the slowed disk is a seccomp filter's, Linux's alone.
var errNoSlowSync = fmt.Errorf("slow syncs need seccomp user notification, which is Linux's, not %s's", runtime.GOOS)

func runShim(string) error { return errNoSlowSync }

func probeSlowSync() error { return errNoSlowSync }

func (s *SlowSync) startShim(*exec.Cmd, string) (<-chan struct{}, error) {
	return nil, errNoSlowSync
}
