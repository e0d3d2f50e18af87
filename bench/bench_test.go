package bench

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/cxkv/cxkv/client/lock"
	"github.com/cxkv/cxkv/raftnode/raftnodetest"
)

// The harness runs every workload against an in-process cxkv cluster for
// about a second, so it cannot rot between `make bench` runs. etcd is never
// needed here.
//
// One cluster serves every subtest: starting one costs more than a subtest.
func TestHarness(t *testing.T) {
	cl := raftnodetest.Start(t, 3)
	t.Run("workloads", func(t *testing.T) { testWorkloads(t, cl) })
	t.Run("broken-lock", func(t *testing.T) { testLockChecksCatchBrokenLock(t, cl) })
	t.Run("wrong-reads", func(t *testing.T) { testChecksCatchWrongReads(t, cl) })
	t.Run("delete-if", func(t *testing.T) { testDeleteIf(t, Cxkv{Endpoints: cl.Endpoints()}) })
	t.Run("lock-hold", func(t *testing.T) { testLockHold(t, cl) })
}

// TestRedisBackend runs every workload and the compare semantics against
// miniredis, an in-process Redis that runs the same Lua scripts, so the
// Redis column's code is exercised without a redis-server (make bench
// installs one for the real figures).
func TestRedisBackend(t *testing.T) {
	srv := miniredis.RunT(t)
	b := Redis{Addr: srv.Addr()}
	t.Run("delete-if", func(t *testing.T) { testDeleteIf(t, b) })
	for _, wl := range Workloads {
		t.Run(wl, func(t *testing.T) {
			res, err := Run(t.Context(), b, wl, Config{Duration: 300 * time.Millisecond, Prefix: "t/redis/" + wl})
			if err != nil {
				t.Fatal(err)
			}
			if !res.OK() || res.Ops == 0 {
				t.Fatalf("invariant: %s (%+v)", res.Check, res)
			}
		})
	}
	t.Run("broken-lock", func(t *testing.T) {
		res, err := Run(t.Context(), brokenLocks{b}, LockContended, Config{Duration: 300 * time.Millisecond, Prefix: "t/redis/broken"})
		if err != nil {
			t.Fatal(err)
		}
		if res.OK() {
			t.Fatalf("check passed a lock that excludes nothing: %+v", res)
		}
	})
}

func testWorkloads(t *testing.T, cl *raftnodetest.Cluster) {
	backends := []Backend{
		Cxkv{Endpoints: cl.Endpoints()},
		Cxkv{Endpoints: cl.Endpoints(), Mode: lock.Plain, Label: "cxkv-plain"},
	}
	for _, b := range backends {
		for _, wl := range Workloads {
			if b.Name() == "cxkv-plain" && wl != LockContended {
				continue
			}
			t.Run(b.Name()+"/"+wl, func(t *testing.T) {
				res, err := Run(t.Context(), b, wl, Config{Duration: time.Second, Prefix: "t/" + b.Name() + "/" + wl})
				if err != nil {
					t.Fatal(err)
				}
				if !res.OK() {
					t.Fatalf("invariant: %s", res.Check)
				}
				if res.Ops == 0 || res.OpsPerSec <= 0 || res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 {
					t.Fatalf("implausible figures: %+v", res)
				}
				if runtime.GOOS == "linux" && res.ClientCPUPerOp <= 0 {
					t.Fatalf("no client CPU measured: %+v", res)
				}
				if runtime.GOOS == "linux" && (res.MachineBusy <= 0 || res.MachineBusy > 100) {
					t.Fatalf("machine busy share %v%%, want in (0, 100]: %+v", res.MachineBusy, res)
				}
				if isLock := wl == LockContended || wl == LockMany; isLock != (res.HoldP50 > 0) || isLock != (res.HoldReadP50 > 0) || res.HoldReadP50 > res.HoldP50 {
					t.Fatalf("hold and read-in-hold times are for lock workloads only, the read within the hold: %+v", res)
				}
				t.Logf("%s %s: %.0f ops/s p50 %.2fms p99 %.2fms workers %d..%d ops", b.Name(), wl, res.OpsPerSec, res.P50, res.P99, res.MinWorkerOps, res.MaxWorkerOps)
			})
		}
	}
}

// brokenLocks hands out locks that are never held: Lock returns at once.
// The lock workloads' checks must catch the lost increments this causes.
type brokenLocks struct{ Backend }

func (b brokenLocks) Connect(ctx context.Context) (Conn, error) {
	c, err := b.Backend.Connect(ctx)
	return brokenConn{c}, err
}

type brokenConn struct{ Conn }

func (brokenConn) Session(context.Context, time.Duration) (LockSession, error) {
	return noLock{}, nil
}

type noLock struct{}

func (noLock) Lock(context.Context, string) (Held, error) { return noLock{}, nil }
func (noLock) Unlock(context.Context) error               { return nil }
func (noLock) Close() error                               { return nil }

func testLockChecksCatchBrokenLock(t *testing.T, cl *raftnodetest.Cluster) {
	b := brokenLocks{Cxkv{Endpoints: cl.Endpoints()}}
	// lock-many over a handful of keys, so the unlocked workers collide
	// within the second.
	for _, c := range []struct {
		wl   string
		keys int
	}{{LockContended, 0}, {LockMany, 4}} {
		t.Run(c.wl, func(t *testing.T) {
			res, err := Run(t.Context(), b, c.wl, Config{Duration: time.Second, Prefix: "t/broken/" + c.wl, Keys: c.keys})
			if err != nil {
				t.Fatal(err)
			}
			if res.OK() || !strings.Contains(res.Check, "mutual exclusion broken") {
				t.Fatalf("check passed a lock that excludes nothing: %+v", res)
			}
			t.Logf("caught: %s", res.Check)
		})
	}
}

// staleReads serves every read from a key that was never written.
type staleReads struct{ Backend }

func (b staleReads) Connect(ctx context.Context) (Conn, error) {
	c, err := b.Backend.Connect(ctx)
	return staleConn{c}, err
}

type staleConn struct{ Conn }

func (c staleConn) Get(ctx context.Context, key string) ([]byte, uint64, error) {
	return c.Conn.Get(ctx, key+"/never-written")
}

func testChecksCatchWrongReads(t *testing.T, cl *raftnodetest.Cluster) {
	b := staleReads{Cxkv{Endpoints: cl.Endpoints()}}
	for _, wl := range []string{GetRead, CASSeq} {
		t.Run(wl, func(t *testing.T) {
			res, err := Run(t.Context(), b, wl, Config{Duration: 200 * time.Millisecond, Prefix: "t/stale/" + wl, Keys: 10})
			if err != nil {
				t.Fatal(err)
			}
			if res.OK() {
				t.Fatalf("check passed reads of the wrong key: %+v", res)
			}
			t.Logf("caught: %s", res.Check)
		})
	}
}

func testDeleteIf(t *testing.T, b Backend) {
	ctx := t.Context()
	c, err := b.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ok, rev, err := c.CAS(ctx, "d", []byte("x"), 0)
	if err != nil || !ok {
		t.Fatalf("create: %v %v", ok, err)
	}
	if ok, _, err := c.CAS(ctx, "d", []byte("y"), 0); err != nil || ok {
		t.Fatalf("create over an existing key succeeded: %v %v", ok, err)
	}
	if ok, err := c.DeleteIf(ctx, "d", rev+1); err != nil || ok {
		t.Fatalf("delete at a wrong revision succeeded: %v %v", ok, err)
	}
	if ok, err := c.DeleteIf(ctx, "d", rev); err != nil || !ok {
		t.Fatalf("delete at the right revision failed: %v %v", ok, err)
	}
	if _, got, err := c.Get(ctx, "d"); err != nil || got != 0 {
		t.Fatalf("deleted key reads revision %d, %v", got, err)
	}
	// A key written again never takes a revision it had before, so a
	// compare against the old one fails.
	if ok, rev2, err := c.CAS(ctx, "d", []byte("z"), 0); err != nil || !ok || rev2 == rev {
		t.Fatalf("recreate: %v rev %d (was %d) %v", ok, rev2, rev, err)
	}
	if v, got, err := c.Get(ctx, "d"); err != nil || string(v) != "z" {
		t.Fatalf("recreated key reads %q at %d, %v", v, got, err)
	}
}
