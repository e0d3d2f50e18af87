package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSlowSyncCommand(t *testing.T) {
	var off *SlowSync
	if bin, args := off.command("/bin/x", []string{"-a", "b"}); bin != "/bin/x" || !slices.Equal(args, []string{"-a", "b"}) {
		t.Errorf("off: %s %q, want the command itself", bin, args)
	}
	head := []string{"-f", "--seccomp-bpf", "-qq", "-o", "/dev/null", "-e", "trace=fsync,fdatasync"}
	tailArgs := []string{"--", "/usr/bin/setpriv", "--pdeathsig", "KILL", "--", "/bin/x", "-a", "b"}
	for _, c := range []struct {
		delay time.Duration
		want  []string
	}{
		{0, slices.Concat(head, tailArgs)},
		{100 * time.Microsecond, slices.Concat(head, []string{"-e", "inject=fsync,fdatasync:delay_exit=100000ns"}, tailArgs)},
		{1500 * time.Nanosecond, slices.Concat(head, []string{"-e", "inject=fsync,fdatasync:delay_exit=1500ns"}, tailArgs)},
	} {
		s := &SlowSync{Delay: c.delay, strace: "/usr/bin/strace", setpriv: "/usr/bin/setpriv"}
		bin, args := s.command("/bin/x", []string{"-a", "b"})
		if bin != "/usr/bin/strace" || !slices.Equal(args, c.want) {
			t.Errorf("delay %v:\n got %s %q\nwant /usr/bin/strace %q", c.delay, bin, args, c.want)
		}
	}
	if _, err := NewSlowSync(-time.Millisecond); err == nil {
		t.Error("a negative delay was accepted")
	}
}

func TestSlowSyncNote(t *testing.T) {
	for delay, want := range map[string]string{
		"":      "",
		"0s":    "syncs slowed by strace (the tracing stop alone, no delay added, on every fsync/fdatasync)",
		"100µs": "syncs slowed by strace (delay 100µs on exit of every fsync/fdatasync)",
	} {
		if got := SlowSyncNote(delay); got != want {
			t.Errorf("SlowSyncNote(%q) = %q, want %q", delay, got, want)
		}
	}
}

func TestUseSlowDisk(t *testing.T) {
	t.Cleanup(func() { SlowDisk = nil })
	if err := UseSlowDisk("fast"); err == nil {
		t.Error(`UseSlowDisk("fast") took a value that is no duration`)
	}
	if err := UseSlowDisk(""); err != nil || SlowDisk != nil || SlowDisk.String() != "" {
		t.Errorf(`UseSlowDisk("") = %v, SlowDisk %v: want the machine's own disk`, err, SlowDisk)
	}
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace is not on PATH (apt-get install strace)")
	}
	if err := UseSlowDisk("100us"); err != nil || SlowDisk.String() != "100µs" {
		t.Fatalf(`UseSlowDisk("100us") = %v, SlowDisk %q: want a delay of 100µs`, err, SlowDisk.String())
	}
	if got := SlowSyncClause(SlowDisk.String()); got != "; "+SlowSyncNote("100µs") {
		t.Errorf("SlowSyncClause = %q", got)
	}
	if SlowSyncClause("") != "" {
		t.Error(`SlowSyncClause("") is not empty`)
	}
}

// syncHelperEnv, set to a directory, makes this test binary the member
// TestSlowSyncSignals drives (TestSlowSyncHelper).
const syncHelperEnv = "CXKV_BENCH_SYNC_HELPER"

// TestSlowSyncHelper is not a test: run by TestSlowSyncSignals as a member
// under strace, it prints its pid, then appends a byte and fdatasyncs it,
// over and over, so the file's size shows it running.
func TestSlowSyncHelper(t *testing.T) {
	dir := os.Getenv(syncHelperEnv)
	if dir == "" {
		t.Skip("only a helper process for TestSlowSyncSignals")
	}
	f, err := os.OpenFile(filepath.Join(dir, "synced"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Printf("pid %d\n", os.Getpid())
	// A bound, in case the test that started it cannot end it.
	for start := time.Now(); time.Since(start) < time.Minute; {
		if _, err := f.Write([]byte{1}); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		if err := datasync(f); err != nil {
			fmt.Println("fdatasync:", err)
			os.Exit(1)
		}
	}
}

// A member spawned under strace: signals reach it, not strace; SIGSTOP
// stops it and SIGCONT resumes it while traced; Kill, Restart and Stop
// leave neither it nor strace behind.
func TestSlowSyncSignals(t *testing.T) {
	if _, err := exec.LookPath("strace"); err != nil {
		t.Skip("strace is not on PATH (apt-get install strace): slow syncs run members under it")
	}
	slow, err := NewSlowSync(50 * time.Microsecond)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Setenv(syncHelperEnv, dir)
	logPath := filepath.Join(dir, "helper.log")
	p, err := spawn("helper", logPath, os.Args[0], []string{"-test.run=^TestSlowSyncHelper$"}, slow)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Name: "helper", procs: []*proc{p}}
	stopped := false
	defer func() {
		if !stopped {
			c.Stop()
		}
	}()

	checkTraced := func(p *proc, logged int) {
		t.Helper()
		pid := helperPid(t, logPath, logged)
		if pid != p.member.Pid {
			t.Fatalf("member pid %d, but the helper says it is %d (strace is %d)", p.member.Pid, pid, p.cmd.Process.Pid)
		}
		if tracer := statusField(t, pid, "TracerPid"); tracer != strconv.Itoa(p.cmd.Process.Pid) {
			t.Fatalf("helper %d traced by %q, not by strace %d", pid, tracer, p.cmd.Process.Pid)
		}
		waitFor(t, "the helper's syncs under strace", func() bool { return syncedSize(t, dir) > 0 })
	}
	checkTraced(p, 1)

	if err := c.Pause(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every thread of the paused helper stopped", func() bool { return allStopped(p.member.Pid) })
	paused := syncedSize(t, dir)
	if err := c.Resume(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the resumed helper syncing again", func() bool { return syncedSize(t, dir) > paused })

	gone := []int{p.member.Pid, p.cmd.Process.Pid}
	if err := c.Kill(0); err != nil {
		t.Fatal(err)
	}
	checkGone(t, gone)

	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	p = c.procs[0]
	if p.slow != slow {
		t.Fatal("the restarted member is not under the same strace settings")
	}
	checkTraced(p, 2)
	gone = []int{p.member.Pid, p.cmd.Process.Pid}
	stopped = true
	c.Stop()
	checkGone(t, gone)
}

// helperPid is the pid the helper printed the nth time it started.
func helperPid(t *testing.T, logPath string, n int) int {
	t.Helper()
	var pid int
	waitFor(t, fmt.Sprintf("the helper's pid line %d in %s", n, logPath), func() bool {
		b, _ := os.ReadFile(logPath)
		var pids []int
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "pid "); ok {
				if p, err := strconv.Atoi(v); err == nil {
					pids = append(pids, p)
				}
			}
		}
		if len(pids) < n {
			return false
		}
		pid = pids[n-1]
		return true
	})
	return pid
}

func syncedSize(t *testing.T, dir string) int64 {
	t.Helper()
	st, err := os.Stat(filepath.Join(dir, "synced"))
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func statusField(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return ""
}

// allStopped reports whether every thread of pid is stopped: T, or t as a
// traced thread in group-stop shows.
func allStopped(pid int) bool {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
		if err != nil {
			return false
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
			return false
		}
	}
	return true
}

// checkGone fails unless every pid has left /proc: exited and reaped.
func checkGone(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !os.IsNotExist(err) {
			st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			t.Errorf("process %d is still there: %s", pid, st)
		}
	}
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within 10s", what)
		}
	}
}
