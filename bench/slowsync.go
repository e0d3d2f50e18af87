package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// SlowSync emulates a disk slower than this machine's: a backend process
// runs under a seccomp filter that hands every fsync and fdatasync it makes
// to this harness (a user notification), which holds the call for Delay
// and then lets the kernel run it in the process as it would have. Only
// those two calls reach the harness (the filter lets every other call
// through in the kernel), so the cost falls per sync, the same for every
// backend. The round trip costs some CPU, the member's (the kernel's
// handling of its notification) and the harness's (receiving and
// answering it), as well as time.
type SlowSync struct {
	// Delay is how long each sync is held before it runs; 0 leaves the
	// notification round trip alone.
	Delay time.Duration
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

// NewSlowSync is a SlowSync adding delay, once this binary has shown it
// can run a process under the filter and answer its syncs: the platform is
// Linux on an architecture the filter knows, the kernel has seccomp user
// notification, and main calls MaybeRunSlowSyncShim first.
func NewSlowSync(delay time.Duration) (*SlowSync, error) {
	if delay < 0 {
		return nil, fmt.Errorf("delay %v is negative", delay)
	}
	if err := probeSlowSync(); err != nil {
		return nil, fmt.Errorf("slow syncs: %w", err)
	}
	return &SlowSync{Delay: delay}, nil
}

// The shim: Go runs no code of the child's between fork and exec, so the
// filter is installed by this harness's own binary, started with shimEnv
// set, before it execs the command it is given. The harness's mains (and
// the bench package's TestMain) call MaybeRunSlowSyncShim first thing.
const (
	// shimEnv, in a process's environment, has MaybeRunSlowSyncShim take
	// the process over; its value is the mode. The shim removes it before
	// it execs, so nothing the member starts sees it.
	shimEnv = "CXKV_SLOWSYNC_SHIM"
	// shimExec: install the filter, hand its listener to the harness on
	// fd 3, exec the command.
	shimExec = "exec"
	// shimProbe: install the filter, hand over the listener, make one
	// sync that the harness must answer, exit 0 (probeSlowSync).
	shimProbe = "probe"
	// shimFlag is the shim's first argument: a flag no program of the
	// harness defines, so a binary that lacks the hook stops at once on
	// it (as flag.Parse does on any unknown flag) instead of running as
	// the harness with the command's arguments.
	shimFlag = "-cxkv-slowsync-shim"
)

// shimArgs is the shim's argv (self is the harness's binary) for the
// command whose binary is path and argv argv, argv[0] included: the
// shim execs exactly path with argv.
func shimArgs(self, path string, argv []string) []string {
	return append([]string{self, shimFlag, path}, argv...)
}

// parseShimArgs undoes shimArgs.
func parseShimArgs(args []string) (path string, argv []string, err error) {
	if len(args) < 4 || args[1] != shimFlag || args[2] == "" {
		return "", nil, fmt.Errorf("arguments %q are not SELF %s PATH ARGV0 [ARG...]", args, shimFlag)
	}
	return args[2], args[3:], nil
}

// MaybeRunSlowSyncShim returns at once unless this process was started as
// the slow-sync shim; then it does the shim's work and never returns: it
// execs the command (the process becomes the member, same pid) or exits,
// non-zero with the reason on stderr if it failed. Every binary that runs
// a SlowSync must call it first thing in main (or TestMain), before it
// parses flags or starts anything.
func MaybeRunSlowSyncShim() {
	mode, ok := os.LookupEnv(shimEnv)
	if !ok {
		return
	}
	err := runShim(mode)
	if err == nil && mode != shimProbe {
		err = errors.New("returned without exec")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "slow-sync shim (%s=%s): %v\n", shimEnv, mode, err)
		os.Exit(2)
	}
	os.Exit(0)
}

// start starts cmd, made by exec.Command, on s's disk (nil: the machine's
// own). done closes once cmd has exited and been waited for (its
// ProcessState set) and nothing of s's is left running for it. On an
// error nothing is left running either.
func (s *SlowSync) start(cmd *exec.Cmd) (done <-chan struct{}, err error) {
	if s == nil {
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		c := make(chan struct{})
		go func() { cmd.Wait(); close(c) }()
		return c, nil
	}
	return s.startShim(cmd, shimExec)
}

// MeasureFsync is the fsync floor (MeasureFsync) on s's disk, so the
// floor shows the disk the members see: for a nil s, taken in this
// process; otherwise by this harness's binary started on the slowed disk,
// which must print MeasureFsync(dir, files, d) as JSON on stdout when
// given -fsync-probe dir -fsync-files files -fsync d.
func (s *SlowSync) MeasureFsync(dir string, files int, d time.Duration) (FsyncFloor, error) {
	if s == nil {
		return MeasureFsync(dir, files, d)
	}
	self, err := os.Executable()
	if err != nil {
		return FsyncFloor{}, err
	}
	cmd := exec.Command(self, "-fsync-probe", dir, "-fsync-files", strconv.Itoa(files), "-fsync", d.String())
	cmd.SysProcAttr = childAttr()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done, err := s.start(cmd)
	if err != nil {
		return FsyncFloor{}, fmt.Errorf("fsync probe on the slowed disk: %w; its stderr: %q", err, strings.TrimSpace(stderr.String()))
	}
	<-done
	if !cmd.ProcessState.Success() {
		return FsyncFloor{}, fmt.Errorf("fsync probe on the slowed disk: %v; its stderr: %q", cmd.ProcessState, strings.TrimSpace(stderr.String()))
	}
	var f FsyncFloor
	if err := json.Unmarshal(stdout.Bytes(), &f); err != nil {
		return FsyncFloor{}, fmt.Errorf("fsync probe on the slowed disk printed %q, not a floor: %w", stdout.Bytes(), err)
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
		return "syncs slowed by a seccomp notifier (the notification round trip alone, no delay added, on every fsync/fdatasync)"
	}
	return fmt.Sprintf("syncs slowed by a seccomp notifier (delay %s before every fsync/fdatasync)", delay)
}

// SlowSyncClause is SlowSyncNote as a header's last clause ("; syncs
// slowed ..."), "" for the machine's own disk.
func SlowSyncClause(delay string) string {
	if n := SlowSyncNote(delay); n != "" {
		return "; " + n
	}
	return ""
}
