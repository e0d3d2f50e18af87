package chaos

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeMemberEnv makes the test binary stand in for `cxkv server` (see
// TestMain): its first start exits with status 3, as a member whose
// assertion failed (a panic) does; a later start runs until SIGTERM.
const fakeMemberEnv = "CHAOS_FAKE_MEMBER"

func TestMain(m *testing.M) {
	if os.Getenv(fakeMemberEnv) != "" {
		fakeMember(os.Args[1:])
		return
	}
	os.Exit(m.Run())
}

func fakeMember(args []string) {
	dir := ""
	for i, a := range args {
		if a == "--data-dir" && i+1 < len(args) {
			dir = args[i+1]
		}
	}
	if _, err := os.Stat(dir + ".ran"); err != nil {
		os.WriteFile(dir+".ran", nil, 0o644)
		os.Exit(3)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	os.WriteFile(dir+".up", nil, 0o644)
	select {
	case <-term:
	case <-time.After(time.Minute):
	}
	os.Exit(0)
}

// A member that exits by itself (a failed assertion under -tags invariants
// panics it) is an anomaly, even when a kill fault picks it afterwards and
// the harness starts it again.
func TestMemberThatExitsByItselfIsReported(t *testing.T) {
	host, _ := os.Hostname()
	if err := checkHost(host); err != nil {
		t.Skip(err)
	}
	t.Setenv(fakeMemberEnv, "1")
	c, err := newCluster(os.Args[0], t.TempDir(), host, 50*time.Millisecond, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range c.ids {
		c.mu.Lock()
		done := c.exited[id]
		c.mu.Unlock()
		<-done
	}
	c.kill(1)
	if err := c.heal(); err != nil {
		t.Fatal(err)
	}
	// Started again, m1 must be stopped by shutdown's SIGTERM, which it
	// catches once it is up.
	for _, err := os.Stat(filepath.Join(c.dir, "data1.up")); err != nil; _, err = os.Stat(filepath.Join(c.dir, "data1.up")) {
		time.Sleep(10 * time.Millisecond)
	}
	err = c.shutdown()
	for _, id := range c.ids {
		if want := fmt.Sprintf("m%d exited by itself", id); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("shutdown's error %v does not say %q", err, want)
		}
	}
}
