package demo

import (
	"bytes"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type interactiveWorker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *syncBuffer
}

func startInteractive(t *testing.T, endpoints, id string) *interactiveWorker {
	t.Helper()
	w := &interactiveWorker{out: &syncBuffer{}}
	w.cmd = exec.Command(testBin, "demo", "worker", "--endpoints", endpoints, "--scenario", "interactive", "--id", id, "--lock-ttl", "1s")
	w.cmd.Stdout, w.cmd.Stderr = w.out, w.out
	var err error
	if w.stdin, err = w.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.cmd.Process.Kill()
		w.cmd.Wait()
		t.Logf("%s's terminal:\n%s", id, w.out.String())
	})
	return w
}

func (w *interactiveWorker) enter(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(w.stdin, "\n"); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls the worker's output until it shows want.
func (w *interactiveWorker) waitFor(t *testing.T, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(w.out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("after %s the terminal does not show %q", within, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The crashed-holder scenario of the README: alice takes the lock, bob
// waits and both terminals show it; alice is killed with SIGKILL; bob gets
// the lock once alice's TTL has run out, with a larger fencing token.
func TestInteractiveCrashedHolder(t *testing.T) {
	cl, _, _ := startCluster(t, t.TempDir())

	alice := startInteractive(t, cl.EndpointsFlag(), "alice")
	alice.waitFor(t, "--- lock is free", 10*time.Second)
	alice.enter(t)
	alice.waitFor(t, "YOU HOLD THE LOCK", 10*time.Second)

	bob := startInteractive(t, cl.EndpointsFlag(), "bob")
	bob.waitFor(t, "held by alice", 10*time.Second)
	bob.enter(t)
	bob.waitFor(t, "waiting for the lock", 5*time.Second)
	alice.waitFor(t, "waiting: bob", 5*time.Second)
	bob.waitFor(t, "waiting: bob", 5*time.Second)

	alice.cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	bob.waitFor(t, "YOU HOLD THE LOCK", 15*time.Second)
	t.Logf("bob took the lock %s after alice was killed (TTL 1s)", time.Since(killed).Round(10*time.Millisecond))
	bob.waitFor(t, "held by bob", 5*time.Second)

	bob.enter(t)
	bob.waitFor(t, "released the lock", 5*time.Second)
	bob.waitFor(t, "--- lock is free", 5*time.Second)
}
