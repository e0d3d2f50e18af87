package bench

import (
	"context"
	"testing"
	"time"

	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// lock-contended runs through leader kills on an in-process cluster: the
// kills happen, workers keep acquiring (retrying on fresh sessions) and the
// counter check, which only mutual exclusion passes, holds.
func TestLockChaos(t *testing.T) {
	cl := raftnodetest.Start(t, 3)
	r, err := RunLockChaos(context.Background(), Cxkv{Endpoints: cl.Endpoints()}, inProcess{cl}, LockContended, LockChaosConfig{
		Prefix: "lockchaos", Duration: 5 * time.Second, Interval: 1500 * time.Millisecond, RestartAfter: 300 * time.Millisecond, Workers: 4,
		Retry: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d kills; undisturbed %.0f acq/s max %.0fms; under kills %.0f acq/s max %.0fms, %d errors; ratio %.2f",
		r.Kills, r.Undisturbed.OpsPerSec, r.Undisturbed.Max, r.Chaos.OpsPerSec, r.Chaos.Max, r.Chaos.Errors, r.Throughput)
	if r.CallLimit != 2000 {
		t.Errorf("call limit %vms reported, want the configured 2000ms", r.CallLimit)
	}
	if r.Kills < 2 {
		t.Errorf("%d leader kills in 5s every 1.5s, want at least 2", r.Kills)
	}
	if !r.Undisturbed.OK() || !r.Chaos.OK() {
		t.Errorf("counter check: undisturbed %q, under kills %q", r.Undisturbed.Check, r.Chaos.Check)
	}
	if r.Chaos.Ops == 0 {
		t.Errorf("no acquisition under kills")
	}
}
