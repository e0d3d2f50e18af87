package demo

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// proc is one child process of the demo. Children run in their own process
// group, so a Ctrl-C in the terminal reaches only the demo, which then stops
// them in order; and they get SIGKILL if the demo itself dies, so nothing
// outlives it.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and its output is drained
	err  error         // Wait's error, set before done closes
	// killed is set when the demo crashed it on purpose, so its exit
	// status is no news.
	killed atomic.Bool
}

func (p *proc) markKilled()      { p.killed.Store(true) }
func (p *proc) killedByUs() bool { return p.killed.Load() }

// startProc runs bin with args. Every line it prints on stdout or stderr goes
// to out prefixed with "[name] " (nil: discarded), or, if onLine is set,
// stdout lines go to onLine instead.
func startProc(name, bin string, args []string, out io.Writer, onLine func(string)) (*proc, error) {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = childAttrs()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	var wg sync.WaitGroup
	copyLines := func(r io.Reader, toLine func(string)) {
		defer wg.Done()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			if toLine != nil {
				toLine(sc.Text())
			} else if out != nil {
				fmt.Fprintf(out, "[%s] %s\n", name, sc.Text())
			}
		}
		io.Copy(io.Discard, r) // a line too long for the scanner must not block the child
	}
	wg.Add(2)
	go copyLines(stdout, onLine)
	go copyLines(stderr, nil)
	go func() {
		wg.Wait() // Wait closes the pipes: drain them first
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the exit: a crash, with no chance to
// release anything.
func (p *proc) kill() {
	p.markKilled()
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop asks the process to shut down cleanly (SIGTERM) and kills it if it
// has not exited within grace.
func (p *proc) stop(grace time.Duration) error {
	if p.exited() {
		return p.err
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	return p.err
}

// selfBinary is the binary the demo starts its children from: the running
// cxkv itself.
func selfBinary() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("cannot find the cxkv binary to start children from: %w", err)
	}
	return exe, nil
}
