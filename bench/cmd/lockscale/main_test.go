package main

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cxkv/cxkv/bench"
)

func TestMain(m *testing.M) {
	bench.MaybeRunSlowSyncShim() // a member started on the slowed disk
	holderMain()                 // a holder process: this test binary run again
	m.Run()
}

// lockscale runs end to end, small: two holder processes, a 2 s SIGSTOP of
// the leader of a real 3-process cluster, no lock lost, no second holder.
func TestLockScaleShort(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the cxkv binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "cxkv-bin")
	build := exec.Command("go", "build", "-o", bin, "./cmd/cxkv")
	build.Dir = "../../.." // the server's own module
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build cxkv: %v\n%s", err, out)
	}
	if err := run(bin, dir, 2, 200, 10*time.Second, "2s"); err != nil {
		t.Fatal(err)
	}
	// A stop longer than the TTL: the renewals must leave the stopped
	// leader for the new one within the lease (each renewal attempt gets
	// TTL/6), not wait out the SDK's 5 s per attempt and lose every lock.
	if err := run(bin, dir, 2, 200, 3*time.Second, "4s"); err != nil {
		t.Fatal(err)
	}
}
