package bench

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The process cluster `make bench` runs: three real cxkv server processes
// with --pprof, driven through the harness, then stopped, every process gone.
func TestCxkvProcessCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the cxkv binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "cxkv-bin") // not "cxkv": the data dirs live under dir/cxkv
	build := exec.Command("go", "build", "-o", bin, "./cmd/cxkv")
	build.Dir = ".." // the server's own module, as `make build` builds it
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build cxkv: %v\n%s", err, out)
	}
	pprof, err := FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	cl, err := StartCxkv(ctx, bin, dir, CxkvOptions{PprofPorts: pprof, TraceWrites: true})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			cl.Stop()
		}
	}()
	for _, p := range pprof {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/cmdline", p))
		if err != nil {
			t.Fatalf("--pprof: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("--pprof: %s", resp.Status)
		}
	}
	cpu0 := cl.CPUTime()
	res, err := Run(ctx, Cxkv{Endpoints: cl.Endpoints}, CASSeq, Config{Duration: 300 * time.Millisecond, Prefix: "t/proc", ServerCPU: cl.CPUTime})
	if err != nil || !res.OK() || res.Ops == 0 {
		t.Fatalf("cas-seq on the process cluster: %+v, %v", res, err)
	}
	if cl.CPUTime() <= cpu0 {
		t.Errorf("members' CPU time did not grow over a run (%v)", cpu0)
	}
	// --trace-writes: the run's writes (and the workload's setup writes)
	// show at every stage, in order. Only writes a leader received are
	// traced (one a follower forwards is not), so the run talks to the
	// leader alone: with every endpoint, the SDK may send some writes to a
	// follower and the count falls short (168 traced of 170 in one run).
	leader, err := cl.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before, err := cl.ScrapeStages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err = Run(ctx, Cxkv{Endpoints: cl.Endpoints[leader : leader+1]}, CASSeq, Config{Duration: 300 * time.Millisecond, Prefix: "t/proc2"})
	if err != nil || !res.OK() {
		t.Fatalf("cas-seq: %+v, %v", res, err)
	}
	after, err := cl.ScrapeStages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stages := StageDelta(before, after, res.Mean)
	if len(stages) != 8 || stages[7].Name != "client" {
		t.Fatalf("stages: %+v", stages)
	}
	for i, s := range stages[:7] {
		if s.Count < res.Ops || (i > 0 && s.Mean < stages[i-1].Mean) {
			t.Errorf("stage %s: %+v (cas-seq did %d writes; previous stage %+v)", s.Name, s, res.Ops, stages[max(0, i-1)])
		}
	}
	cl.Stop()
	stopped = true
	for _, p := range cl.procs {
		if err := p.cmd.Process.Signal(syscall.Signal(0)); err == nil {
			t.Errorf("%s (pid %d) still running after Stop", p.name, p.cmd.Process.Pid)
		}
		if !p.cmd.ProcessState.Exited() || p.cmd.ProcessState.ExitCode() != 0 {
			t.Errorf("%s did not exit cleanly on SIGTERM: %v", p.name, p.cmd.ProcessState)
		}
	}
	if err := cl.exited(); err == nil {
		t.Error("exited() reports no stopped member after Stop")
	}
}
