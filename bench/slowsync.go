package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// SlowSync emulates a disk slower than this machine's: a backend process
// runs under strace, which stops every fsync and fdatasync on its exit and,
// given a Delay, holds it that much longer before the call returns. Only
// those two calls are traced (strace's seccomp filter lets every other call
// through untouched), so the cost falls per sync, the same for every
// backend. The stop costs CPU (strace's and the kernel's) as well as time.
type SlowSync struct {
	// Delay is added on exit of every sync; 0 leaves the tracing stop
	// alone.
	Delay   time.Duration
	strace  string
	setpriv string
}

// SlowDisk is the disk every backend process the harness starts sees: nil
// for the machine's own. cxkvbench sets it once, from -slow-sync, before it
// starts anything, and nothing changes it after: members, their restarts
// and the fsync floor must all see the same disk.
var SlowDisk *SlowSync

// UseSlowDisk sets SlowDisk from the value of a -slow-sync flag: "" keeps
// the machine's own disk, anything else is the delay to add (a duration).
func UseSlowDisk(value string) error {
	if value == "" {
		SlowDisk = nil
		return nil
	}
	delay, err := time.ParseDuration(value)
	if err != nil {
		return err
	}
	s, err := NewSlowSync(delay)
	if err != nil {
		return err
	}
	SlowDisk = s
	return nil
}

// String is the delay as -slow-sync takes it; "" for nil, the machine's own
// disk (Report.SlowSync).
func (s *SlowSync) String() string {
	if s == nil {
		return ""
	}
	return s.Delay.String()
}

// NewSlowSync is a SlowSync adding delay, once the tools it needs are
// found.
func NewSlowSync(delay time.Duration) (*SlowSync, error) {
	if delay < 0 {
		return nil, fmt.Errorf("delay %v is negative", delay)
	}
	if runtime.GOOS != "linux" {
		return nil, fmt.Errorf("slow syncs need strace, which runs on Linux only, not %s", runtime.GOOS)
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		return nil, fmt.Errorf("slow syncs need strace, which is not on PATH (apt-get install strace): %w", err)
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		return nil, fmt.Errorf("slow syncs need setpriv (util-linux), which is not on PATH: %w", err)
	}
	return &SlowSync{Delay: delay, strace: strace, setpriv: setpriv}, nil
}

// command is the command line that runs bin with args under s; for a nil
// s, bin and args themselves.
func (s *SlowSync) command(bin string, args []string) (string, []string) {
	if s == nil {
		return bin, args
	}
	argv := []string{"-f", "--seccomp-bpf", "-qq", "-o", "/dev/null", "-e", "trace=fsync,fdatasync"}
	if s.Delay > 0 {
		argv = append(argv, "-e", fmt.Sprintf("inject=fsync,fdatasync:delay_exit=%dns", s.Delay.Nanoseconds()))
	}
	// strace 6.1 has no --kill-on-exit: a tracee outlives a strace that
	// dies (killed by its parent-death signal with the harness), and then
	// every sync it makes fails with ENOSYS (the seccomp filter stays, its
	// tracer gone). setpriv, which execs bin in the same process, gives
	// the tracee a parent-death signal of its own, so it dies with strace.
	argv = append(argv, "--", s.setpriv, "--pdeathsig", "KILL", "--", bin)
	return s.strace, append(argv, args...)
}

// tracedChild is the pid of the command strace (at pid) runs: its child
// once that has exec'd. strace first forks children of its own, to test
// that seccomp filters and ptrace work, and its command's process runs
// strace's image until the exec, so a child still running strace's image
// is not yet the one. exited closes when strace has exited.
func tracedChild(pid int, exited <-chan struct{}) (int, error) {
	self, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return 0, fmt.Errorf("strace's binary: %w", err)
	}
	path := fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)
	deadline := time.Now().Add(5 * time.Second)
	for {
		select {
		case <-exited:
			return 0, fmt.Errorf("strace (pid %d) exited before its command started", pid)
		default:
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, fmt.Errorf("strace's children, from %s (the kernel needs CONFIG_PROC_CHILDREN): %w", path, err)
		}
		var execd []int
		for _, f := range strings.Fields(string(b)) {
			child, err := strconv.Atoi(f)
			if err != nil {
				return 0, fmt.Errorf("%s holds %q, not a pid", path, f)
			}
			// Unreadable: the child has just exited, so it is not the
			// command (which the harness has not yet signalled).
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", child)); err == nil && exe != self {
				execd = append(execd, child)
			}
		}
		switch len(execd) {
		case 0:
		case 1:
			return execd[0], nil
		default:
			return 0, fmt.Errorf("strace (pid %d) runs %d commands (pids %v), not the one it was given", pid, len(execd), execd)
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("strace (pid %d) started no command within 5s", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// MeasureFsync is the fsync floor (MeasureFsync) taken by self (this
// harness's binary) under s, so the floor shows the disk the members see:
// self must print MeasureFsync(dir, files, d) as JSON on stdout when given
// -fsync-probe dir -fsync-files files -fsync d.
func (s *SlowSync) MeasureFsync(self, dir string, files int, d time.Duration) (FsyncFloor, error) {
	bin, argv := s.command(self, []string{"-fsync-probe", dir, "-fsync-files", strconv.Itoa(files), "-fsync", d.String()})
	cmd := exec.Command(bin, argv...)
	cmd.SysProcAttr = childAttr()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return FsyncFloor{}, fmt.Errorf("fsync probe under strace: %w; its stderr: %q", err, strings.TrimSpace(stderr.String()))
	}
	// Without the filter strace stops every call, not only syncs, and
	// still runs: the disk it emulates would be another one.
	if msg := stderr.String(); strings.Contains(msg, "seccomp filter is requested but unavailable") {
		return FsyncFloor{}, fmt.Errorf("strace cannot filter by seccomp here, so it would stop every call, not only syncs: %s", strings.TrimSpace(msg))
	}
	var f FsyncFloor
	if err := json.Unmarshal(out, &f); err != nil {
		return FsyncFloor{}, fmt.Errorf("fsync probe under strace printed %q, not a floor: %w", out, err)
	}
	return f, nil
}

// SlowSyncNote is the clause a report's header carries for a run on a disk
// slowed by SlowSync of delay (Report.SlowSync), "" for the machine's own
// disk.
func SlowSyncNote(delay string) string {
	switch delay {
	case "":
		return ""
	case "0s":
		return "syncs slowed by strace (the tracing stop alone, no delay added, on every fsync/fdatasync)"
	}
	return fmt.Sprintf("syncs slowed by strace (delay %s on exit of every fsync/fdatasync)", delay)
}

// SlowSyncClause is SlowSyncNote as a header's last clause ("; syncs
// slowed ..."), "" for the machine's own disk.
func SlowSyncClause(delay string) string {
	if n := SlowSyncNote(delay); n != "" {
		return "; " + n
	}
	return ""
}
