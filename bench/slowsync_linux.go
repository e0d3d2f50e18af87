package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The shim must exec from the process's main thread: the parent-death
// signal the harness sets (childAttr) is held by that thread alone (a
// thread the Go runtime starts later has none), and exec from another
// thread would leave the member without it. The seccomp filter and
// no_new_privs are per thread too, so the thread that installs them must
// be the one that execs. An init's LockOSThread keeps the main goroutine
// on the main thread into main, where MaybeRunSlowSyncShim runs.
func init() {
	if _, ok := os.LookupEnv(shimEnv); ok {
		runtime.LockOSThread()
	}
}

// seccompNotif is the kernel's struct seccomp_notif (80 bytes), which
// SECCOMP_IOCTL_NOTIF_RECV fills.
type seccompNotif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Data  struct {
		Nr                 int32
		Arch               uint32
		InstructionPointer uint64
		Args               [6]uint64
	}
}

// seccompNotifResp is the kernel's struct seccomp_notif_resp (24 bytes),
// which SECCOMP_IOCTL_NOTIF_SEND takes.
type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

// auditArch is the seccomp_data arch of this build's syscalls: the filter
// must compare numbers of this ABI only, since another ABI numbers its
// calls differently.
func auditArch() (uint32, error) {
	switch runtime.GOARCH {
	case "amd64":
		return unix.AUDIT_ARCH_X86_64, nil
	case "arm64":
		return unix.AUDIT_ARCH_AARCH64, nil
	}
	return 0, fmt.Errorf("no seccomp filter for %s, only for amd64 and arm64", runtime.GOARCH)
}

// syncFilter hands fsync and fdatasync of arch to the listener and lets
// every other call through.
func syncFilter(arch uint32) []unix.SockFilter {
	return []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4}, // seccomp_data.arch
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, K: arch},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 2, K: unix.SYS_FSYNC},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, K: unix.SYS_FDATASYNC},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_USER_NOTIF},
	}
}

// runShim is MaybeRunSlowSyncShim's work in mode: it returns only on a
// failure, or with nil once a probe has succeeded.
func runShim(mode string) error {
	os.Unsetenv(shimEnv) // the exec takes os.Environ()
	var (
		path string
		argv []string
		err  error
	)
	switch mode {
	case shimExec:
		if path, argv, err = parseShimArgs(os.Args); err != nil {
			return err
		}
	case shimProbe:
		if len(os.Args) != 2 || os.Args[1] != shimFlag {
			return fmt.Errorf("arguments %q are not SELF %s", os.Args, shimFlag)
		}
	default:
		return fmt.Errorf("unknown mode %q (want %s or %s)", mode, shimExec, shimProbe)
	}
	runtime.LockOSThread()
	if tid, pid := unix.Gettid(), unix.Getpid(); tid != pid {
		return fmt.Errorf("on thread %d, not the main thread %d, so the parent-death signal would not survive the exec (is MaybeRunSlowSyncShim called from main's goroutine, with the bench package's init run?)", tid, pid)
	}
	arch, err := auditArch()
	if err != nil {
		return err
	}
	// Without CAP_SYS_ADMIN the kernel installs a filter only for a thread
	// that can gain no privileges by exec.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	filter := syncFilter(arch)
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	// No SECCOMP_FILTER_FLAG_TSYNC: only this thread, the one that execs,
	// needs the filter, and the exec keeps it.
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(filter)
	if errno != 0 {
		return fmt.Errorf("seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER) (the kernel needs seccomp user notification, Linux 5.0+): %w", errno)
	}
	listener := int(r)
	if err := unix.Sendmsg(3, []byte{0}, unix.UnixRights(listener), nil, 0); err != nil {
		return fmt.Errorf("send the listener to the harness on fd 3: %w", err)
	}
	unix.Close(3)
	unix.Close(listener) // the harness holds its own
	if mode == shimProbe {
		// fd -1: the notification comes before the kernel looks at the
		// fd, so once the harness lets the call run it fails with EBADF;
		// ENOSYS would mean no listener answered.
		if err := unix.Fdatasync(-1); err != unix.EBADF {
			return fmt.Errorf("fdatasync(-1) under the filter returned %v, not EBADF", err)
		}
		return nil
	}
	err = syscall.Exec(path, argv, os.Environ())
	return fmt.Errorf("exec %s: %w", path, err)
}

// probeSlowSync runs the shim in probe mode: a process of this binary
// installs the filter and makes one sync, which this process answers.
func probeSlowSync() error {
	if _, err := auditArch(); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self)
	cmd.SysProcAttr = childAttr()
	var stderr limitedBuffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	done, err := (&SlowSync{}).startShim(cmd, shimProbe)
	if err != nil {
		return fmt.Errorf("seccomp notifier self-test: %w; its output: %q", err, stderr.String())
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("seccomp notifier self-test: its sync was not answered within 10s; its output: %q", stderr.String())
	}
	if !cmd.ProcessState.Success() {
		return fmt.Errorf("seccomp notifier self-test: %v; its output: %q", cmd.ProcessState, stderr.String())
	}
	return nil
}

// limitedBuffer keeps the first 4 KiB written to it: enough of a
// failing shim's output to name the problem, however much it writes.
type limitedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p[:min(len(p), max(0, 4096-len(b.buf)))]...)
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

// startShim is start for a non-nil s: cmd runs as the shim, which
// becomes cmd's command by exec (same pid, so cmd.Process is the member),
// and a supervisor in this process answers the filter's notifications.
//
// The member's parent-death signal (childAttr) survives the shim's exec,
// so a killed harness still kills its members. The harness's death also
// closes the listener, after which any sync under the filter fails with
// ENOSYS; no member lives to see it, being killed at the same moment.
func (s *SlowSync) startShim(cmd *exec.Cmd, mode string) (<-chan struct{}, error) {
	if cmd.Err != nil {
		return nil, cmd.Err
	}
	if len(cmd.ExtraFiles) > 0 {
		return nil, errors.New("the shim needs fd 3 for itself; the command has extra files")
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("this harness's binary, to run as the shim: %w", err)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socketpair for the listener: %w", err)
	}
	ours := os.NewFile(uintptr(pair[0]), "slow-sync harness end")
	theirs := os.NewFile(uintptr(pair[1]), "slow-sync shim end")
	if mode == shimExec {
		cmd.Args = shimArgs(self, cmd.Path, cmd.Args)
	} else {
		cmd.Args = []string{self, shimFlag}
	}
	cmd.Path = self
	cmd.Env = append(cmd.Environ(), shimEnv+"="+mode)
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	err = cmd.Start()
	// Closed here, the shim's end is held by the shim alone, so its exit
	// ends the read below at once.
	theirs.Close()
	if err != nil {
		ours.Close()
		return nil, err
	}
	exited := make(chan struct{})
	supervisor := make(chan *notifier, 1)
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
		if n := <-supervisor; n != nil {
			n.stop()
		}
		close(done)
	}()
	listener, err := receiveListener(ours, exited)
	if err != nil {
		supervisor <- nil
		cmd.Process.Kill()
		<-done
		return nil, fmt.Errorf("the shim (pid %d, %v) gave no seccomp listener: %w", cmd.Process.Pid, cmd.ProcessState, err)
	}
	n, err := newNotifier(listener, s.Delay)
	if err != nil {
		supervisor <- nil
		cmd.Process.Kill()
		<-done
		return nil, err
	}
	go n.run(cmd.Process.Pid)
	supervisor <- n
	return done, nil
}

// newNotifier is a notifier for listener, which it closes on an error.
func newNotifier(listener int, delay time.Duration) (*notifier, error) {
	n := &notifier{listener: listener, timer: -1, delay: delay, ended: make(chan struct{})}
	var err error
	if n.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC); err != nil {
		unix.Close(listener)
		return nil, fmt.Errorf("eventfd for the supervisor: %w", err)
	}
	if delay > 0 {
		if n.timer, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC|unix.TFD_NONBLOCK); err != nil {
			unix.Close(listener)
			unix.Close(n.wake)
			return nil, fmt.Errorf("timerfd for the supervisor: %w", err)
		}
	}
	return n, nil
}

// receiveListener reads the listener fd the shim sends on ours (which it
// closes), waiting at most 5s.
func receiveListener(ours *os.File, exited <-chan struct{}) (int, error) {
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return -1, err
	}
	defer c.Close()
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1, fmt.Errorf("the socket is a %T, not a unix socket", c)
	}
	uc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var b [1]byte
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := uc.ReadMsgUnix(b[:], oob)
	if err != nil && !errors.Is(err, io.EOF) {
		return -1, fmt.Errorf("receiving it: %w", err)
	}
	if n == 0 && oobn == 0 {
		<-exited // a shim that closes its end has failed; its status says how
		return -1, errors.New("the shim exited without sending it (does this binary's main call bench.MaybeRunSlowSyncShim first?)")
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("%d control messages (%v), not one", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil {
		return -1, err
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("%d fds, not one", len(fds))
	}
	return fds[0], nil
}

// notifier answers the notifications of one member's filter, each delay
// after it arrived and independently of the others, since a member syncs
// from several threads at once. The delay being the same for all, they
// fall due in the order they arrive: a FIFO and one timerfd serve them
// all. Not Go timers: with the process idle, the runtime sleeps in
// epoll_wait, whose timeout is whole milliseconds, so a 100µs timer fires
// about 1ms late. The timerfd is an hrtimer with no slack.
type notifier struct {
	listener int
	// timer, a timerfd, is armed for the head of the queue; -1 without a
	// delay, when each notification is answered at once (poll ignores a
	// negative fd).
	timer int
	// wake, an eventfd, ends run when written: the member has exited, and
	// a process it forked that still holds the filter is no business of
	// the harness's.
	wake  int
	delay time.Duration
	// ended closes when run has returned and closed the listener and
	// timer.
	ended chan struct{}
}

// due is a notification waiting for its delay to pass.
type due struct {
	id uint64
	at time.Time
}

// run receives and answers notifications until the filter has no task
// left (POLLHUP) or stop. It alone uses the listener and timer, and
// closes them. pid names the member in the rare message on stderr.
func (n *notifier) run(pid int) {
	defer close(n.ended)
	defer func() {
		// A call still waiting fails with ENOSYS: only one of a member
		// that is gone, or of a process it forked, outliving it.
		unix.Close(n.listener)
		if n.timer >= 0 {
			unix.Close(n.timer)
		}
	}()
	fds := []unix.PollFd{
		{Fd: int32(n.listener), Events: unix.POLLIN},
		{Fd: int32(n.timer), Events: unix.POLLIN},
		{Fd: int32(n.wake), Events: unix.POLLIN},
	}
	var (
		req     seccompNotif
		queue   []due
		armed   time.Time // the deadline the timer is set for; zero: none
		expired [8]byte
	)
	for {
		for i := range fds {
			fds[i].Revents = 0
		}
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			n.fail(pid, "poll", err)
			return
		}
		if fds[2].Revents != 0 || fds[0].Revents&(unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0 {
			return
		}
		if fds[1].Revents != 0 {
			unix.Read(n.timer, expired[:]) // nonblocking; only clears readiness
			armed = time.Time{}
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			req = seccompNotif{} // the kernel refuses a struct not zeroed
			_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(n.listener), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&req)))
			switch {
			case errno == 0 && n.delay == 0:
				n.send(pid, req.ID)
			case errno == 0:
				queue = append(queue, due{req.ID, time.Now().Add(n.delay)})
			// ENOENT: the call was withdrawn (its thread was signalled,
			// and will make it again) between poll and receive.
			case errno != unix.ENOENT && errno != unix.EINTR:
				n.fail(pid, "SECCOMP_IOCTL_NOTIF_RECV", errno)
				return
			}
		}
		if len(queue) == 0 {
			continue
		}
		now := time.Now()
		for len(queue) > 0 && !queue[0].at.After(now) {
			n.send(pid, queue[0].id)
			queue = queue[1:]
		}
		if len(queue) == 0 {
			queue = queue[:0:0] // let go of a backing array the slicing has walked along
			continue
		}
		if !armed.Equal(queue[0].at) {
			wait := unix.ItimerSpec{Value: unix.NsecToTimespec(max(1, int64(queue[0].at.Sub(now))))}
			if err := unix.TimerfdSettime(n.timer, 0, &wait, nil); err != nil {
				n.fail(pid, "timerfd_settime", err)
				return
			}
			armed = queue[0].at
		}
	}
}

// send has the kernel run notification id's call in the member, as if
// there had been no filter.
func (n *notifier) send(pid int, id uint64) {
	resp := seccompNotifResp{ID: id, Flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(n.listener), unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&resp)))
	// ENOENT: the call is no longer waiting; its thread was signalled
	// (it makes the call again, a new notification, when it goes on:
	// a SIGSTOP'd member's sync starts its delay over) or has died.
	if errno != 0 && errno != unix.ENOENT {
		n.fail(pid, "SECCOMP_IOCTL_NOTIF_SEND", errno)
	}
}

// fail reports what the supervisor cannot recover from. The member's
// syncs then fail (ENOSYS once the listener is closed) or hang, and its
// log or its exit will show it; this says why.
func (n *notifier) fail(pid int, what string, err error) {
	fmt.Fprintf(os.Stderr, "slow-sync supervisor of pid %d: %s: %v\n", pid, what, err)
}

// stop ends run and returns once it has ended; called once, after the
// member has exited.
func (n *notifier) stop() {
	one := [8]byte{1}
	if _, err := unix.Write(n.wake, one[:]); err != nil {
		n.fail(0, "wake the supervisor", err)
	}
	<-n.ended
	unix.Close(n.wake)
}
