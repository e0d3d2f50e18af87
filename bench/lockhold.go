package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// LockHold is the lock-hold workload (issue 17): one process holds many
// locks on one lock session (TTL 10 s) while cas-parallel runs beside it.
// What holding costs: the renewals the holder sends, the members' CPU, and
// the cas-parallel throughput lost against the same load with no lock held.
const LockHold = "lock-hold"

// RenewalCounter is a Conn that counts the lease renewals it has sent
// (cxkv: a monitor's session renewal writes; etcd: LeaseKeepAlive
// requests), whatever the number of locks they keep.
type RenewalCounter interface {
	Renewals() int64
}

// LockHoldConfig shapes one lock-hold run; zero fields take the defaults.
type LockHoldConfig struct {
	// Prefix scopes every key of the run.
	Prefix string
	// Locks is how many locks the holder takes (10000).
	Locks int
	// TTL is the holder's session TTL (10 s).
	TTL time.Duration
	// Duration is the hold beside cas-parallel, and the length of the
	// cas-parallel run without locks measured before it (60 s).
	Duration time.Duration
	// Acquirers is how many goroutines take the locks, all on the one
	// session (64).
	Acquirers int
	// Load is the cas-parallel load's configuration (its Duration and
	// Prefix are set here).
	Load Config
	// ServerCPU, if set, reads the CPU time the cluster's processes have
	// used.
	ServerCPU func() time.Duration
}

func (c LockHoldConfig) withDefaults() LockHoldConfig {
	if c.Locks <= 0 {
		c.Locks = 10000
	}
	if c.TTL <= 0 {
		c.TTL = 10 * time.Second
	}
	if c.Duration <= 0 {
		c.Duration = 60 * time.Second
	}
	if c.Acquirers <= 0 {
		c.Acquirers = 64
	}
	return c
}

// LockHoldResult is one lock-hold run against one backend.
type LockHoldResult struct {
	Backend string  `json:"backend"`
	Locks   int     `json:"locks"`
	TTL     float64 `json:"ttl_s"`
	// AcquireSeconds is how long taking every lock took.
	AcquireSeconds float64 `json:"acquire_s"`
	// HoldSeconds is the hold measured (beside the cas-parallel load).
	HoldSeconds float64 `json:"hold_s"`
	// Renewals the holder sent during the hold, per second; RenewalTarget
	// is one per session per TTL/3.
	Renewals       int64   `json:"renewals"`
	RenewalsPerSec float64 `json:"renewals_per_sec"`
	RenewalTarget  float64 `json:"renewal_target_per_sec"`
	// BaselineOpsPerSec is cas-parallel with no lock held, HeldOpsPerSec
	// beside the held locks, ThroughputLost 1 - held/baseline.
	BaselineOpsPerSec float64 `json:"baseline_ops_per_sec"`
	HeldOpsPerSec     float64 `json:"held_ops_per_sec"`
	ThroughputLost    float64 `json:"throughput_lost"`
	// ServerCores* are the members' CPU seconds per second, summed over
	// members, during each cas-parallel run (with ServerCPU set).
	ServerCoresBaseline float64 `json:"server_cores_baseline,omitempty"`
	ServerCoresHeld     float64 `json:"server_cores_held,omitempty"`
	// Check is "ok", or what went wrong with the held locks (lost before
	// the end of the hold).
	Check string `json:"check"`
}

// RunLockHold runs lock-hold against b: cas-parallel alone for
// cfg.Duration, then the holder takes cfg.Locks locks on one session and
// holds them while cas-parallel runs again for cfg.Duration, then releases
// them by closing the session. The holder's Conn must count its renewals
// (RenewalCounter).
func RunLockHold(ctx context.Context, b Backend, cfg LockHoldConfig) (LockHoldResult, error) {
	cfg = cfg.withDefaults()
	if cfg.Prefix == "" {
		return LockHoldResult{}, errors.New("bench: LockHoldConfig.Prefix is required")
	}
	res := LockHoldResult{Backend: b.Name(), Locks: cfg.Locks, TTL: cfg.TTL.Seconds(), RenewalTarget: 3 / cfg.TTL.Seconds()}
	load := cfg.Load
	load.Duration, load.ServerCPU = cfg.Duration, cfg.ServerCPU

	load.Prefix = cfg.Prefix + "/baseline"
	base, err := Run(ctx, b, CASParallel, load)
	if err != nil {
		return res, fmt.Errorf("lock-hold baseline: %w", err)
	}
	res.BaselineOpsPerSec, res.ServerCoresBaseline = base.OpsPerSec, serverCores(base)

	conn, err := b.Connect(ctx)
	if err != nil {
		return res, err
	}
	defer conn.Close()
	counter, ok := conn.(RenewalCounter)
	if !ok {
		return res, fmt.Errorf("bench: %s does not count its renewals", b.Name())
	}
	sess, err := conn.Session(ctx, cfg.TTL)
	if err != nil {
		return res, err
	}
	closed := false
	defer func() {
		if !closed {
			sess.Close()
		}
	}()
	start := time.Now()
	if err := acquireAll(ctx, sess, cfg); err != nil {
		return res, fmt.Errorf("lock-hold acquire: %w", err)
	}
	res.AcquireSeconds = time.Since(start).Seconds()

	r0, t0 := counter.Renewals(), time.Now()
	load.Prefix = cfg.Prefix + "/held"
	held, err := Run(ctx, b, CASParallel, load)
	r1, t1 := counter.Renewals(), time.Now()
	if err != nil {
		return res, fmt.Errorf("lock-hold load: %w", err)
	}
	res.HoldSeconds = t1.Sub(t0).Seconds()
	res.Renewals = r1 - r0
	res.RenewalsPerSec = float64(res.Renewals) / res.HoldSeconds
	res.HeldOpsPerSec, res.ServerCoresHeld = held.OpsPerSec, serverCores(held)
	if res.BaselineOpsPerSec > 0 {
		res.ThroughputLost = 1 - res.HeldOpsPerSec/res.BaselineOpsPerSec
	}
	res.Check = "ok"
	if !base.OK() || !held.OK() {
		res.Check = fmt.Sprintf("cas-parallel check: baseline %s, held %s", base.Check, held.Check)
	}
	// Closing the session releases every lock at once, and reports the
	// ones lost before (cxkv: ErrLost per lock; etcd: the lease ended).
	closed = true
	if err := sess.Close(); err != nil {
		res.Check = fmt.Sprintf("locks lost during the hold: %v", firstLine(err))
	}
	return res, nil
}

// acquireAll takes cfg.Locks locks on sess with cfg.Acquirers goroutines.
func acquireAll(ctx context.Context, sess LockSession, cfg LockHoldConfig) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, cfg.Acquirers)
	for g := range cfg.Acquirers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= cfg.Locks || ctx.Err() != nil {
					return
				}
				lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_, err := sess.Lock(lctx, fmt.Sprintf("%s/lock/%d", cfg.Prefix, i))
				cancel()
				if err != nil {
					errs[g] = fmt.Errorf("lock %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// serverCores is the members' CPU seconds per second over a run's timed
// part.
func serverCores(r Result) float64 {
	if r.Seconds <= 0 {
		return 0
	}
	return r.ServerCPUPerOp * float64(r.Ops) / 1000 / r.Seconds
}

func firstLine(err error) string {
	s := err.Error()
	for i, c := range s {
		if c == '\n' {
			return s[:i] + " ..."
		}
	}
	return s
}

// WriteLockHold prints the lock-hold runs, one line per backend.
func WriteLockHold(w io.Writer, runs []LockHoldResult, markdown bool) {
	head := []string{"backend", "locks", "TTL s", "acquire s", "hold s", "renewals/s", "target/s", "cas-parallel alone", "beside the locks", "lost", "members' cores alone", "beside", "check"}
	var lines [][]string
	for _, r := range runs {
		lines = append(lines, []string{
			r.Backend, fmt.Sprint(r.Locks), num(r.TTL), num(r.AcquireSeconds), num(r.HoldSeconds),
			num(r.RenewalsPerSec), num(r.RenewalTarget), num(r.BaselineOpsPerSec), num(r.HeldOpsPerSec),
			fmt.Sprintf("%.1f%%", 100*r.ThroughputLost), num(r.ServerCoresBaseline), num(r.ServerCoresHeld), r.Check,
		})
	}
	writeGrid(w, head, lines, markdown)
}
