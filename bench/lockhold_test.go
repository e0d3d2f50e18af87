package bench

import (
	"testing"
	"time"

	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// lock-hold runs end to end, short, on an in-process cluster: the locks
// stay held through the hold, and the holder's renewals are counted, one
// session's worth (a renewal per lock would be hundreds).
func testLockHold(t *testing.T, cl *raftnodetest.Cluster) {
	cfg := LockHoldConfig{
		Prefix: "t/lock-hold", Locks: 300, TTL: 3 * time.Second, Duration: 2 * time.Second, Acquirers: 8,
		Load: Config{Workers: 8, Conns: 2},
	}
	res, err := RunLockHold(t.Context(), Cxkv{Endpoints: cl.Endpoints()}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Check != "ok" {
		t.Fatalf("check: %s", res.Check)
	}
	// One renewal per TTL/3 over the hold, and one more for a renewal
	// due at either edge.
	most := int64(res.HoldSeconds/(cfg.TTL/3).Seconds()) + 1
	if res.Renewals < 1 || res.Renewals > most {
		t.Fatalf("%d renewals over a %.1f s hold of %d locks (TTL %v); want 1..%d: one session renewed every TTL/3", res.Renewals, res.HoldSeconds, res.Locks, cfg.TTL, most)
	}
	if res.AcquireSeconds <= 0 || res.BaselineOpsPerSec <= 0 || res.HeldOpsPerSec <= 0 || res.HoldSeconds < cfg.Duration.Seconds() {
		t.Fatalf("implausible figures: %+v", res)
	}
}
