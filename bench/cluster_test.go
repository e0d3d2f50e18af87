package bench

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cxkv/cxkv/client"
	"github.com/cxkv/cxkv/internal/loopback"
	"github.com/cxkv/cxkv/raftnode"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The process cluster `make bench` runs: three real cxkv server processes
// with --pprof, driven through the harness, then stopped, every process gone.
func TestCxkvProcessCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the cxkv binary")
	}
	dir := t.TempDir()
	bin := buildCxkv(t, dir)
	pprof, err := loopback.FreePorts(3)
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
	byName := map[string]Stage{}
	for _, s := range stages[:7] {
		byName[s.Name] = s
		if s.Count < res.Ops {
			t.Errorf("stage %s: %+v (cas-seq did %d writes)", s.Name, s, res.Ops)
		}
	}
	for stage, prior := range raftnode.WriteStageWaitsOn() {
		for _, p := range prior {
			if byName[stage].Mean < byName[p].Mean {
				t.Errorf("stage %s: %+v comes before %s: %+v", stage, byName[stage], p, byName[p])
			}
		}
	}
	// One write at a time: every member syncs each write's entry (the
	// leader and both followers), and the leader's append and each
	// follower's acknowledgement cross between members at least.
	costs := CostDelta(before, after, res.Ops)
	if costs.FsyncsPerOp < 2 || costs.EntriesPerFsync < 0.5 || costs.PeerMessagesPerOp < 3 {
		t.Errorf("costs of %d sequential writes: %+v; want at least 2 fsyncs, half an entry per fsync and 3 peer messages per write", res.Ops, costs)
	}
	t.Logf("costs of %d sequential writes: %+v", res.Ops, costs)
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

// buildCxkv builds the cxkv binary into dir, as `make build` builds it.
func buildCxkv(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "cxkv-bin") // not "cxkv": the data dirs live under dir/cxkv
	build := exec.Command("go", "build", "-o", bin, "./cmd/cxkv")
	build.Dir = ".." // the server's own module
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build cxkv: %v\n%s", err, out)
	}
	return bin
}

// The clusters of make bench's TLS rows: cxkv and etcd with both ports
// secured by the run's throwaway certificates. The workloads run through
// them, and a plaintext client is refused, so the rows do measure TLS.
func TestTLSClusters(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the cxkv binary")
	}
	dir := t.TempDir()
	bin := buildCxkv(t, dir)
	pki, err := NewPKI(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	cx, err := StartCxkv(ctx, bin, dir, CxkvOptions{TLS: pki})
	if err != nil {
		t.Fatal(err)
	}
	defer cx.Stop()
	res, err := Run(ctx, Cxkv{Endpoints: cx.Endpoints, TLS: cx.TLS}, CASSeq, Config{Duration: 300 * time.Millisecond, Prefix: "t/tls"})
	if err != nil || !res.OK() || res.Ops == 0 {
		t.Fatalf("cas-seq on cxkv with TLS: %+v, %v", res, err)
	}
	plain, err := client.New(client.Config{Endpoints: cx.Endpoints, RequestTimeout: time.Second, RetryTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Get(ctx, "t/tls"); err == nil {
		t.Fatal("a plaintext client read from cxkv with TLS on")
	}

	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skipf("no etcd binary (make bench installs etcd-server): %v", err)
	}
	et, err := StartEtcdTLS(ctx, etcdBin, filepath.Join(dir, "etcd-tls"), pki)
	if err != nil {
		t.Fatal(err)
	}
	defer et.Stop()
	res, err = Run(ctx, Etcd{Endpoints: et.Endpoints, TLS: et.TLS, Label: "etcd-tls"}, CASSeq, Config{Duration: 300 * time.Millisecond, Prefix: "t/tls"})
	if err != nil || !res.OK() || res.Ops == 0 {
		t.Fatalf("cas-seq on etcd with TLS: %+v, %v", res, err)
	}
	pe, err := clientv3.New(clientv3.Config{Endpoints: et.Endpoints, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer pe.Close()
	gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := pe.Get(gctx, "t/tls"); err == nil {
		t.Fatal("a plaintext client read from etcd with TLS on")
	}
}
