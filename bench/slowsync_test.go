package bench

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestSlowSyncShimArgs(t *testing.T) {
	args := shimArgs("/self", "/bin/x", []string{"x", "-a", "b"})
	if want := []string{"/self", shimFlag, "/bin/x", "x", "-a", "b"}; !slices.Equal(args, want) {
		t.Errorf("shimArgs = %q, want %q", args, want)
	}
	path, argv, err := parseShimArgs(args)
	if err != nil || path != "/bin/x" || !slices.Equal(argv, []string{"x", "-a", "b"}) {
		t.Errorf("parseShimArgs(%q) = %q %q %v: want /bin/x and its argv back", args, path, argv, err)
	}
	for _, bad := range [][]string{
		{"/self"},
		{"/self", shimFlag, "/bin/x"},          // no argv[0]
		{"/self", "-slow-sync", "/bin/x", "x"}, // not the shim's flag
		{"/self", shimFlag, "", "x"},
	} {
		if _, _, err := parseShimArgs(bad); err == nil {
			t.Errorf("parseShimArgs(%q) took arguments that are not the shim's", bad)
		}
	}
	if _, err := NewSlowSync(-time.Millisecond); err == nil {
		t.Error("a negative delay was accepted")
	}
}

func TestSlowSyncNote(t *testing.T) {
	for delay, want := range map[string]string{
		"":      "",
		"0s":    "syncs slowed by a seccomp notifier (the notification round trip alone, no delay added, on every fsync/fdatasync)",
		"100µs": "syncs slowed by a seccomp notifier (delay 100µs before every fsync/fdatasync)",
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
	if runtime.GOOS != "linux" {
		if err := UseSlowDisk("100us"); err == nil {
			t.Errorf("UseSlowDisk on %s took a slowed disk, which needs Linux", runtime.GOOS)
		}
		t.Skip("slow syncs need Linux's seccomp user notification")
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

// syncHelperEnv, set to "MODE DIR", makes this test binary a helper
// process of the slow-sync tests (TestSlowSyncHelper), working in DIR.
const syncHelperEnv = "CXKV_BENCH_SYNC_HELPER"

// TestSlowSyncHelper is not a test: run by the slow-sync tests, on the
// slowed disk or as a harness, it does as its mode says:
//
//   - loop: print its pid, then append a byte and fdatasync it, over and
//     over, so the file's size shows it running;
//   - time-syncs: time 20 appends' fdatasyncs, print "median NS";
//   - time-others: time 100 appends without a sync ("writes NS"), 1000
//     getpids ("getpids NS"), then one fdatasync ("sync NS");
//   - wait: print its pid, then wait to be killed, making no call a lost
//     supervisor would fail;
//   - harness: start a wait helper in DIR on a slowed disk (delay 0), print
//     "member PID", and wait to be killed.
func TestSlowSyncHelper(t *testing.T) {
	mode, dir, ok := strings.Cut(os.Getenv(syncHelperEnv), " ")
	if !ok {
		t.Skip("only a helper process for the slow-sync tests")
	}
	fail := func(err error) {
		fmt.Println(err)
		os.Exit(1)
	}
	if mode == "harness" {
		os.Setenv(syncHelperEnv, "wait "+dir)
		p, err := spawn("helper", filepath.Join(dir, "helper.log"), os.Args[0], []string{"-test.run=^TestSlowSyncHelper$"}, &SlowSync{})
		if err != nil {
			fail(err)
		}
		fmt.Printf("member %d\n", p.cmd.Process.Pid)
		time.Sleep(time.Minute) // a bound, in case the test cannot kill it
		os.Exit(1)
	}
	if mode == "wait" {
		fmt.Printf("pid %d\n", os.Getpid())
		time.Sleep(time.Minute) // a bound, in case the test cannot kill it
		os.Exit(1)
	}
	f, err := os.OpenFile(filepath.Join(dir, "synced"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fail(err)
	}
	write := func() {
		if _, err := f.Write([]byte{1}); err != nil {
			fail(err)
		}
	}
	sync := func() time.Duration {
		t0 := time.Now()
		if err := datasync(f); err != nil {
			fail(fmt.Errorf("fdatasync: %w", err))
		}
		return time.Since(t0)
	}
	switch mode {
	case "loop":
		fmt.Printf("pid %d\n", os.Getpid())
		// A bound, in case the test that started it cannot end it.
		for start := time.Now(); time.Since(start) < time.Minute; {
			write()
			sync()
		}
	case "time-syncs":
		var took []time.Duration
		for range 20 {
			write()
			took = append(took, sync())
		}
		slices.Sort(took)
		fmt.Printf("median %d\n", took[len(took)/2])
	case "time-others":
		t0 := time.Now()
		for range 100 {
			write()
		}
		fmt.Printf("writes %d\n", time.Since(t0))
		t0 = time.Now()
		for range 1000 {
			syscall.Getpid()
		}
		fmt.Printf("getpids %d\n", time.Since(t0))
		fmt.Printf("sync %d\n", sync())
	default:
		fail(fmt.Errorf("unknown helper mode %q", mode))
	}
}

// needSlowSync skips a test that runs processes on the slowed disk where
// it cannot be had.
func needSlowSync(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("slow syncs need Linux's seccomp user notification")
	}
	if err := probeSlowSync(); err != nil {
		t.Skipf("no seccomp user notification here: %v", err)
	}
}

// runHelper runs this test binary as a helper in mode on slow's disk, and
// returns the lines it printed that begin with one of keys, by key, as
// numbers.
func runHelper(t *testing.T, slow *SlowSync, mode, dir string, keys ...string) map[string]int64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSlowSyncHelper$")
	cmd.Env = append(os.Environ(), syncHelperEnv+"="+mode+" "+dir)
	cmd.SysProcAttr = childAttr()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done, err := slow.start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("helper %s did not end within 30s; its output:\n%s", mode, out.String())
	}
	if !cmd.ProcessState.Success() {
		t.Fatalf("helper %s: %v; its output:\n%s", mode, cmd.ProcessState, out.String())
	}
	got := map[string]int64{}
	for _, l := range strings.Split(out.String(), "\n") {
		k, v, _ := strings.Cut(l, " ")
		if slices.Contains(keys, k) {
			if got[k], err = strconv.ParseInt(v, 10, 64); err != nil {
				t.Fatalf("helper %s printed %q", mode, l)
			}
		}
	}
	for _, k := range keys {
		if _, ok := got[k]; !ok {
			t.Fatalf("helper %s printed no %q line; its output:\n%s", mode, k, out.String())
		}
	}
	return got
}

// The delay applies to every sync: none returns sooner than the delay
// after it began; without one, the notification alone costs far less. The
// delay is long beside a busy disk's own syncs (5.3 ms median seen with two
// test suites on one disk), so the bare median stays under it.
func TestSlowSyncDelay(t *testing.T) {
	needSlowSync(t)
	const delay = 20 * time.Millisecond
	slowed := time.Duration(runHelper(t, &SlowSync{Delay: delay}, "time-syncs", t.TempDir(), "median")["median"])
	if slowed < delay {
		t.Errorf("median fdatasync %v with a delay of %v: the delay did not apply", slowed, delay)
	}
	bare := time.Duration(runHelper(t, &SlowSync{}, "time-syncs", t.TempDir(), "median")["median"])
	if bare >= delay {
		t.Errorf("median fdatasync %v with no delay, not under %v", bare, delay)
	}
	t.Logf("median fdatasync: %v with a delay of %v, %v with none", slowed, delay, bare)
}

// Only syncs are held: a process on the slowed disk writes and makes other
// calls at full speed, while its one sync waits the delay.
func TestSlowSyncOnlySyncs(t *testing.T) {
	needSlowSync(t)
	const delay = 50 * time.Millisecond
	got := runHelper(t, &SlowSync{Delay: delay}, "time-others", t.TempDir(), "writes", "getpids", "sync")
	if d := time.Duration(got["writes"]); d >= time.Second {
		t.Errorf("100 writes took %v with a delay of %v on syncs: writes were held", d, delay)
	}
	if d := time.Duration(got["getpids"]); d >= time.Second {
		t.Errorf("1000 getpids took %v with a delay of %v on syncs: other calls were held", d, delay)
	}
	if d := time.Duration(got["sync"]); d < delay {
		t.Errorf("the fdatasync took %v, under the delay %v: the process was not on the slowed disk", d, delay)
	}
}

// A member spawned on the slowed disk is the process the harness started
// (the shim execs it), under the filter and traced by no one; SIGSTOP
// stops it and SIGCONT resumes it though a sync may be waiting on the
// supervisor; Kill, Restart and Stop leave no process and no supervisor
// behind.
func TestSlowSyncSignals(t *testing.T) {
	needSlowSync(t)
	slow, err := NewSlowSync(50 * time.Microsecond)
	if err != nil {
		t.Fatal(err)
	}
	goroutines := runtime.NumGoroutine()
	dir := t.TempDir()
	t.Setenv(syncHelperEnv, "loop "+dir)
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

	checkFiltered := func(p *proc, logged int) {
		t.Helper()
		pid := helperPid(t, logPath, logged)
		if pid != p.cmd.Process.Pid {
			t.Fatalf("member pid %d, but the helper says it is %d", p.cmd.Process.Pid, pid)
		}
		for field, want := range map[string]string{"Seccomp": "2", "Seccomp_filters": "1", "NoNewPrivs": "1", "TracerPid": "0"} {
			if got := statusField(t, pid, field); got != want {
				t.Errorf("helper %d: %s %q in /proc/%d/status, want %q", pid, field, got, pid, want)
			}
		}
		waitFor(t, "the helper's syncs on the slowed disk", func() bool { return syncedSize(t, dir) > 0 })
	}
	checkFiltered(p, 1)

	if err := c.Pause(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every thread of the paused helper stopped", func() bool { return allStopped(p.cmd.Process.Pid) })
	paused := syncedSize(t, dir)
	if err := c.Resume(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the resumed helper syncing again", func() bool { return syncedSize(t, dir) > paused })

	gone := []int{p.cmd.Process.Pid}
	if err := c.Kill(0); err != nil {
		t.Fatal(err)
	}
	checkGone(t, gone)

	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	p = c.procs[0]
	if p.slow != slow {
		t.Fatal("the restarted member is not on the same slowed disk")
	}
	checkFiltered(p, 2)
	gone = []int{p.cmd.Process.Pid}
	stopped = true
	c.Stop()
	checkGone(t, gone)
	waitFor(t, fmt.Sprintf("no more goroutines than the %d before the member started", goroutines), func() bool {
		return runtime.NumGoroutine() <= goroutines
	})
}

// A harness killed outright takes its members with it: the parent-death
// signal set for the shim survives its exec into the member. (The member
// here makes no sync, which would fail with ENOSYS once the harness's
// listener is gone and might end it for another reason.)
func TestSlowSyncHarnessKilled(t *testing.T) {
	needSlowSync(t)
	dir := t.TempDir()
	harness := exec.Command(os.Args[0], "-test.run=^TestSlowSyncHelper$")
	harness.Env = append(os.Environ(), syncHelperEnv+"=harness "+dir)
	out, err := harness.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := harness.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		harness.Process.Kill()
		harness.Wait()
	}()
	lines := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(out)
		lines <- string(b)
	}()
	pid := helperPid(t, filepath.Join(dir, "helper.log"), 1)
	if got := statusField(t, pid, "Seccomp_filters"); got != "1" {
		t.Fatalf("member %d: Seccomp_filters %q, not under the filter", pid, got)
	}
	if err := harness.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	harness.Wait()
	if printed := <-lines; !strings.Contains(printed, fmt.Sprintf("member %d\n", pid)) {
		t.Fatalf("the harness printed %q, not member %d", printed, pid)
	}
	// Reparented, it is reaped by whoever adopts it, or lingers as a
	// zombie if that one does not reap; either way it no longer runs.
	waitFor(t, fmt.Sprintf("member %d killed with the harness", pid), func() bool {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		i := bytes.LastIndexByte(st, ')')
		return i >= 0 && i+2 < len(st) && st[i+2] == 'Z'
	})
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
// traced thread in group-stop would show.
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
